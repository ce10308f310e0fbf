// VM rows: each VM an orchestrator created and has not torn down, recorded before its process is
// spawned, so that a reaper can kill it and delete its files after the orchestrator died. This
// module only records and finds VMs; it never touches a process or a file.
import type { Queryable } from "./db.js";

export interface VmRecord {
  readonly id: string;
  /** Empty while the VM waits in a warm pool, before any job has it. */
  readonly jobId: string;
  /** The orchestrator id that created it (and holds, or held, the job's lease). */
  readonly owner: string;
  /** The machine it runs on: only a reaper on that host can kill it. */
  readonly host: string;
  /** Null until the QEMU process is spawned. */
  readonly pid: number | null;
  readonly overlayPath: string;
  readonly seedPath: string | null;
  readonly sshPort: number | null;
  readonly qmpSocket: string | null;
  readonly createdAt: Date;
}

export type NewVm = Omit<VmRecord, "createdAt" | "pid" | "seedPath" | "sshPort" | "qmpSocket"> &
  Partial<Pick<VmRecord, "pid" | "seedPath" | "sshPort" | "qmpSocket">>;

const VM = `id, coalesce(job_id::text, '') as "jobId", owner, host, pid, overlay_path as "overlayPath", seed_path as "seedPath",
  ssh_port as "sshPort", qmp_socket as "qmpSocket", created_at as "createdAt"`;

export function recordVm(q: Queryable, vm: NewVm): Promise<VmRecord> {
  return insertVm(q, vm, vm.jobId, null);
}

/** Records a warm pool's VM before it has a job; its owner renews `ttlMs` (renewPooledVms) while it lives. */
export function recordPooledVm(q: Queryable, vm: Omit<NewVm, "jobId">, ttlMs: number): Promise<VmRecord> {
  return insertVm(q, vm, null, ttlMs);
}

async function insertVm(
  q: Queryable,
  vm: Omit<NewVm, "jobId">,
  jobId: string | null,
  poolTtlMs: number | null,
): Promise<VmRecord> {
  const r = await q.query<VmRecord>(
    `insert into vms (id, job_id, owner, host, pid, overlay_path, seed_path, ssh_port, qmp_socket, pool_expires_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + $10 * interval '1 millisecond')
     returning ${VM}`,
    [
      vm.id,
      jobId,
      vm.owner,
      vm.host,
      vm.pid ?? null,
      vm.overlayPath,
      vm.seedPath ?? null,
      vm.sshPort ?? null,
      vm.qmpSocket ?? null,
      poolTtlMs,
    ],
  );
  return r.rows[0]!;
}

/** Records the QEMU process once spawned. False when the VM is not recorded (already torn down). */
export async function setVmPid(q: Queryable, id: string, pid: number): Promise<boolean> {
  const r = await q.query("update vms set pid = $2 where id = $1", [id, pid]);
  return r.rowCount > 0;
}

/** Forgets a VM after its teardown. False when it was not recorded. */
export async function deleteVm(q: Queryable, id: string): Promise<boolean> {
  const r = await q.query("delete from vms where id = $1", [id]);
  return r.rowCount > 0;
}

export async function getVm(q: Queryable, id: string): Promise<VmRecord | undefined> {
  const r = await q.query<VmRecord>(`select ${VM} from vms where id = $1`, [id]);
  return r.rows[0];
}

export async function listVmsOnHost(q: Queryable, host: string): Promise<VmRecord[]> {
  const r = await q.query<VmRecord>(`select ${VM} from vms where host = $1 order by created_at`, [host]);
  return r.rows;
}

/** Pushes the expiry of `owner`'s pooled VMs `ids` (still without a job) `ttlMs` ahead; how many it moved. */
export async function renewPooledVms(
  q: Queryable,
  owner: string,
  ids: readonly string[],
  ttlMs: number,
): Promise<number> {
  const r = await q.query(
    `update vms set pool_expires_at = now() + $3 * interval '1 millisecond'
     where owner = $1 and id = any($2::text[]) and job_id is null`,
    [owner, ids, ttlMs],
  );
  return r.rowCount;
}

/** A pooled VM is handed to a job: from now on the job's lease decides whether it is an orphan. */
export async function assignPooledVm(q: Queryable, id: string, jobId: string): Promise<boolean> {
  const r = await q.query("update vms set job_id = $2, pool_expires_at = null where id = $1 and job_id is null", [
    id,
    jobId,
  ]);
  return r.rowCount > 0;
}

/**
 * VMs on `host` whose owner no longer holds a live lease on their job: the owner died (lease
 * expired), gave the job up, or lost it to a takeover; and pooled VMs (no job) whose pool stopped
 * renewing them. The reaper on `host` kills and deletes them.
 */
export async function listOrphanVms(q: Queryable, host: string): Promise<VmRecord[]> {
  const r = await q.query<VmRecord>(
    `select v.id, coalesce(v.job_id::text, '') as "jobId", v.owner, v.host, v.pid, v.overlay_path as "overlayPath",
            v.seed_path as "seedPath", v.ssh_port as "sshPort", v.qmp_socket as "qmpSocket", v.created_at as "createdAt"
     from vms v
     where v.host = $1
       and case
         when v.job_id is null then v.pool_expires_at <= now()
         else not exists (
           select 1 from leases l where l.job_id = v.job_id and l.owner = v.owner and l.expires_at > now()
         )
       end
     order by v.created_at`,
    [host],
  );
  return r.rows;
}
