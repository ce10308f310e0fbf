-- Leases: which orchestrator owns which job, until when. Times are the database's clock (now()),
-- so the hosts' clocks never matter. A lease whose expires_at has passed may be taken over.
create table leases (
  job_id uuid primary key references jobs (id) on delete cascade,
  owner text not null,
  acquired_at timestamptz not null default now(),
  renewed_at timestamptz not null default now(),
  expires_at timestamptz not null
);

create index leases_by_expiry on leases (expires_at);
create index leases_by_owner on leases (owner);
