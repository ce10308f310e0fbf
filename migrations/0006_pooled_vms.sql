-- Warm pools (docs/configuration.md, orchestrator.pool): a pre-booted VM waits for a job before it
-- has one. Its row has no job yet, and `pool_expires_at` stands in for the job's lease: the pool
-- renews it while its orchestrator lives, and a reaper on the host kills and deletes a pooled VM
-- whose expiry passed (its orchestrator died). At assignment the row gets its job and loses the
-- expiry: from then on the job's lease decides, as for any job VM.
alter table vms alter column job_id drop not null;
alter table vms add column pool_expires_at timestamptz;
alter table vms add constraint vms_pooled_or_job check ((job_id is null) = (pool_expires_at is not null));
