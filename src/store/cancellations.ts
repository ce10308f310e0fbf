// Cancellation requests, kept so that a job cancelled while it still waits in the queue is dropped
// by whichever orchestrator consumes it later. Recording is idempotent: the first reason stays.
import type { Queryable } from "./db.js";

export interface Cancellation {
  readonly jobId: string;
  readonly reason: string;
  readonly requestedAt: Date;
}

export async function requestCancellation(q: Queryable, jobId: string, reason: string): Promise<void> {
  await q.query("insert into cancellations (job_id, reason) values ($1, $2) on conflict (job_id) do nothing", [
    jobId,
    reason,
  ]);
}

export async function getCancellation(q: Queryable, jobId: string): Promise<Cancellation | undefined> {
  const r = await q.query<Cancellation>(
    `select job_id as "jobId", reason, requested_at as "requestedAt" from cancellations where job_id = $1`,
    [jobId],
  );
  return r.rows[0];
}
