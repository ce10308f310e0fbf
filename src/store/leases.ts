// Lease rows: which orchestrator owns which job, until when. Each operation is one statement, so
// racing owners are decided by PostgreSQL's row lock, and every time is the database's now(), so
// host clocks never matter. Never act on a job whose lease you do not hold.
import type { Queryable } from "./db.js";
import { JobNotFoundError, LeaseLostError } from "./errors.js";
import type { JobState } from "./job-state.js";

export interface Lease {
  readonly jobId: string;
  /** The orchestrator id holding it. */
  readonly owner: string;
  readonly acquiredAt: Date;
  readonly renewedAt: Date;
  readonly expiresAt: Date;
}

const LEASE = `job_id as "jobId", owner, acquired_at as "acquiredAt", renewed_at as "renewedAt", expires_at as "expiresAt"`;

export type Acquisition =
  | { readonly acquired: true; readonly lease: Lease }
  /** Someone else holds an unexpired lease; `holder` is undefined if it was released meanwhile. */
  | { readonly acquired: false; readonly holder: Lease | undefined };

function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new RangeError(`ttlMs must be a whole number ≥ 1, got ${ttlMs}`);
}

/**
 * Takes the lease on a job for `ttlMs`: when nobody holds it, when its holder let it expire (a
 * takeover), or when `owner` holds it already (a redelivery to the same orchestrator). Of several
 * owners racing for one job exactly one gets `acquired: true`.
 */
export async function acquireLease(q: Queryable, jobId: string, owner: string, ttlMs: number): Promise<Acquisition> {
  checkTtl(ttlMs);
  let r: { rows: Lease[] };
  try {
    r = await q.query<Lease>(
      `insert into leases as l (job_id, owner, expires_at)
       values ($1, $2, now() + $3::integer * interval '1 millisecond')
       on conflict (job_id) do update
         set owner = excluded.owner, acquired_at = now(), renewed_at = now(), expires_at = excluded.expires_at
         where l.expires_at <= now() or l.owner = excluded.owner
       returning ${LEASE}`,
      [jobId, owner, ttlMs],
    );
  } catch (err) {
    if (isForeignKeyViolation(err)) throw new JobNotFoundError(jobId, { cause: err });
    throw err;
  }
  const lease = r.rows[0];
  if (lease) return { acquired: true, lease };
  return { acquired: false, holder: await getLease(q, jobId) };
}

/**
 * Extends the lease by `ttlMs` from now. Only its owner can, and only while nobody else took it
 * over or it was released: otherwise LeaseLostError, and the caller must stop working on the job.
 * A reaper takes a lease over before acting, so renewing late but before a takeover is safe.
 */
export async function renewLease(q: Queryable, jobId: string, owner: string, ttlMs: number): Promise<Lease> {
  checkTtl(ttlMs);
  const r = await q.query<Lease>(
    `update leases set renewed_at = now(), expires_at = now() + $3::integer * interval '1 millisecond'
     where job_id = $1 and owner = $2
     returning ${LEASE}`,
    [jobId, owner, ttlMs],
  );
  const lease = r.rows[0];
  if (lease) return lease;
  throw new LeaseLostError(jobId, owner, (await getLease(q, jobId))?.owner);
}

/** Gives the lease up. False when `owner` did not hold it (already released or taken over). */
export async function releaseLease(q: Queryable, jobId: string, owner: string): Promise<boolean> {
  const r = await q.query("delete from leases where job_id = $1 and owner = $2", [jobId, owner]);
  return r.rowCount > 0;
}

export async function getLease(q: Queryable, jobId: string): Promise<Lease | undefined> {
  const r = await q.query<Lease>(`select ${LEASE} from leases where job_id = $1`, [jobId]);
  return r.rows[0];
}

export interface ExpiredLease extends Lease {
  /** The job's state and whether a step started: what the reaper decides on (job-state.ts afterLostOwner). */
  readonly jobState: JobState;
  readonly firstStepStarted: boolean;
}

/** Leases whose owner let them expire, oldest first, with what the reaper needs to decide. */
export async function listExpiredLeases(q: Queryable, limit = 100): Promise<ExpiredLease[]> {
  const r = await q.query<ExpiredLease>(
    `select l.job_id as "jobId", l.owner, l.acquired_at as "acquiredAt", l.renewed_at as "renewedAt",
            l.expires_at as "expiresAt", j.state as "jobState", j.first_step_at is not null as "firstStepStarted"
     from leases l join jobs j on j.id = l.job_id
     where l.expires_at <= now()
     order by l.expires_at
     limit $1`,
    [limit],
  );
  return r.rows;
}

function isForeignKeyViolation(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "23503";
}
