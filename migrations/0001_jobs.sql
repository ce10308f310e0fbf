-- Jobs: one row per JobRequest id (the fleet-wide idempotency key). `state` follows the table in
-- src/store/job-state.ts; every change is a guarded UPDATE in src/store/jobs.ts.
create table jobs (
  id uuid primary key,
  runs_on text not null,
  forge text not null check (forge in ('forgejo', 'github', 'local')),
  instance text not null,
  runner text not null,
  source_ref jsonb not null default '{}',
  reply_to text not null,
  state text not null default 'queued'
    check (state in ('queued', 'assigned', 'provisioning', 'running', 'succeeded', 'failed', 'cancelled')),
  result text check (result in ('success', 'failure', 'cancelled')),
  outputs jsonb not null default '{}',
  failure_reason text,
  attempts integer not null default 0 check (attempts >= 0),
  assigned_to text,
  queued_at timestamptz not null,
  start_by timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  assigned_at timestamptz,
  started_at timestamptz,
  first_step_at timestamptz,
  finished_at timestamptz,
  constraint jobs_result_matches_state check (
    (state = 'succeeded' and result = 'success')
    or (state = 'failed' and result = 'failure')
    or (state = 'cancelled' and result = 'cancelled')
    or (state in ('queued', 'assigned', 'provisioning', 'running') and result is null)
  ),
  constraint jobs_finished_at_iff_ended check (
    (finished_at is not null) = (state in ('succeeded', 'failed', 'cancelled'))
  )
);

-- The jobs still in flight, per label: what dashboards and the reaper look at.
create index jobs_active on jobs (runs_on, state) where state in ('queued', 'assigned', 'provisioning', 'running');
