-- What the orchestrator needs beyond the first three tables:
-- * jobs.event_seq: the next JobEvent seq its owner will use, recorded with each lease renewal, so
--   that an orchestrator taking a job over continues above every seq its predecessor published
--   (forge runners dedupe events by (job id, seq)).
-- * vms.id becomes text: the VM layer names machines with short hex ids, not uuids.
-- * cancellations: a Cancel may arrive while its job still waits in the queue, before any
--   orchestrator has recorded it; whoever consumes the job later finds the request here.
alter table jobs add column event_seq integer not null default 0 check (event_seq >= 0);

alter table vms alter column id type text;

create table cancellations (
  job_id uuid primary key,
  reason text not null,
  requested_at timestamptz not null default now()
);
