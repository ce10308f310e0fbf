-- Debug SSH sessions: every login of a job's actor into its held VM through gnomon's SSH endpoint
-- (src/debug-ssh), kept as an audit trail: who (the actor, the key's fingerprint), from where, when,
-- and how many bytes went each way. A row is written when the login succeeds and completed when it
-- ends; `ended_at` stays null for a session whose orchestrator died mid-session.
create table debug_sessions (
  id uuid primary key,
  job_id uuid not null,
  orchestrator text not null,
  actor text not null,
  key_fingerprint text not null,
  source text not null,
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  bytes_in bigint not null default 0 check (bytes_in >= 0),
  bytes_out bigint not null default 0 check (bytes_out >= 0),
  end_reason text
);

create index debug_sessions_by_job on debug_sessions (job_id);
create index debug_sessions_by_start on debug_sessions (started_at);
