-- VMs: every VM an orchestrator created and has not torn down yet, recorded before it is spawned,
-- so that the reaper can kill it and delete its files after the orchestrator died.
create table vms (
  id uuid primary key,
  job_id uuid not null references jobs (id),
  owner text not null,
  host text not null,
  pid integer check (pid > 0),
  overlay_path text not null,
  seed_path text,
  ssh_port integer check (ssh_port between 1 and 65535),
  qmp_socket text,
  created_at timestamptz not null default now()
);

create index vms_by_host on vms (host);
create index vms_by_job on vms (job_id);
