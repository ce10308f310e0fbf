// Job rows and their state changes. Every change is one guarded UPDATE (`where id = $1 and state =
// any($n)`) whose allowed states come from job-state.ts; zero rows means the change was illegal and
// becomes a typed error. Never read a state and then write it in two statements: that races. The
// ledger's hot path has two compound statements that also write the job's lease (insertJobLeased,
// finishJobReleasing), each all or nothing.
import type { JobResult } from "../contract/job-event.js";
import type { JobRequest, JobSource } from "../contract/job-request.js";
import type { Queryable } from "./db.js";
import { IllegalTransitionError, JobIdConflictError, JobNotFoundError } from "./errors.js";
import { type JobState, sourcesOf, stateForResult } from "./job-state.js";

export interface Job {
  readonly id: string;
  readonly runsOn: string;
  readonly forge: JobSource["forge"];
  readonly instance: string;
  readonly runner: string;
  readonly sourceRef: Readonly<Record<string, string | number>>;
  readonly replyTo: string;
  readonly state: JobState;
  /** Set exactly when the job has ended. */
  readonly result: JobResult | null;
  readonly outputs: Readonly<Record<string, string>>;
  readonly failureReason: string | null;
  /** How many times an orchestrator was assigned the job (requeues add one each). */
  readonly attempts: number;
  /** The orchestrator of the latest assignment; cleared by a requeue. */
  readonly assignedTo: string | null;
  readonly queuedAt: Date;
  readonly startBy: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly assignedAt: Date | null;
  /** When the job became running (its VM was ready). */
  readonly startedAt: Date | null;
  /** When its first step started: from then on a lost job fails instead of being requeued. */
  readonly firstStepAt: Date | null;
  readonly finishedAt: Date | null;
  /** The next JobEvent seq its owner will use, as last recorded (0 before any). */
  readonly eventSeq: number;
}

const JOB = `id, runs_on as "runsOn", forge, instance, runner, source_ref as "sourceRef", reply_to as "replyTo",
  state, result, outputs, failure_reason as "failureReason", attempts, assigned_to as "assignedTo",
  queued_at as "queuedAt", start_by as "startBy", created_at as "createdAt", updated_at as "updatedAt",
  assigned_at as "assignedAt", started_at as "startedAt", first_step_at as "firstStepAt", finished_at as "finishedAt",
  event_seq as "eventSeq"`;

export interface Inserted {
  readonly job: Job;
  /** False when the job was already there: a redelivery of the same JobRequest. */
  readonly created: boolean;
}

/** Records a job as queued. Idempotent: the same id again returns the existing row untouched. */
export async function insertJob(q: Queryable, request: JobRequest): Promise<Inserted> {
  const r = await q.query<Job>(
    `insert into jobs (id, runs_on, forge, instance, runner, source_ref, reply_to, queued_at, start_by)
     values ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)
     on conflict (id) do nothing
     returning ${JOB}`,
    insertParams(request),
  );
  const created = r.rows[0];
  if (created) return { job: created, created: true };
  const existing = await getJob(q, request.id);
  if (!existing) throw new JobNotFoundError(request.id); // deleted between the two statements
  const was = `${existing.forge} ${existing.instance} runs-on "${existing.runsOn}"`;
  const now = `${request.source.forge} ${request.source.instance} runs-on "${request.runsOn}"`;
  if (was !== now) throw new JobIdConflictError(request.id, was, now);
  return { job: existing, created: false };
}

export interface Taken {
  /** The job, queued, as this statement recorded it. */
  readonly job: Job;
  /** The reason of a Cancel recorded for it while it waited in the queue, if one was. */
  readonly cancelReason: string | null;
}

/**
 * The first delivery of a job in one statement: records it as queued, takes its lease for `owner`
 * for `ttlMs`, and reads a Cancel recorded for it meanwhile. Undefined when the job was recorded
 * before (a redelivery): then nothing changed, and the caller takes the long way (insertJob, then
 * acquireLease). A job this statement created had no lease and no owner, so the lease is ours and
 * the job queued: nothing else needs reading. Of two deliveries racing, the second waits for the
 * first's row and then finds it (undefined).
 */
export async function insertJobLeased(
  q: Queryable,
  request: JobRequest,
  owner: string,
  ttlMs: number,
): Promise<Taken | undefined> {
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new RangeError(`ttlMs must be a whole number ≥ 1, got ${ttlMs}`);
  const r = await q.query<Job & { cancelReason: string | null }>(
    `with job as (
       insert into jobs (id, runs_on, forge, instance, runner, source_ref, reply_to, queued_at, start_by)
       values ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)
       on conflict (id) do nothing
       returning *
     ), lease as (
       insert into leases (job_id, owner, expires_at)
       select id, $10, now() + $11::integer * interval '1 millisecond' from job
       returning job_id
     )
     select ${JOB}, (select c.reason from cancellations c where c.job_id = $1) as "cancelReason"
     from job join lease on lease.job_id = job.id`,
    [...insertParams(request), owner, ttlMs],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  const { cancelReason, ...job } = row;
  return { job, cancelReason };
}

function insertParams(request: JobRequest): unknown[] {
  return [
    request.id,
    request.runsOn,
    request.source.forge,
    request.source.instance,
    request.source.runner,
    JSON.stringify(request.source.ref),
    request.replyTo,
    request.queuedAt,
    request.startBy ?? null,
  ];
}

export async function getJob(q: Queryable, id: string): Promise<Job | undefined> {
  const r = await q.query<Job>(`select ${JOB} from jobs where id = $1`, [id]);
  return r.rows[0];
}

/** queued → assigned to `orchestrator`; counts an attempt. */
export async function assignJob(q: Queryable, id: string, orchestrator: string): Promise<Job> {
  const r = await q.query<Job>(
    `update jobs set state = 'assigned', attempts = attempts + 1, assigned_to = $3, assigned_at = now(), updated_at = now()
     where id = $1 and state = any($2::text[])
     returning ${JOB}`,
    [id, sourcesOf("assigned"), orchestrator],
  );
  return r.rows[0] ?? refuse(q, id, "assigned");
}

/** assigned → provisioning: its VM is being created. */
export async function markProvisioning(q: Queryable, id: string): Promise<Job> {
  const r = await q.query<Job>(
    `update jobs set state = 'provisioning', updated_at = now()
     where id = $1 and state = any($2::text[])
     returning ${JOB}`,
    [id, sourcesOf("provisioning")],
  );
  return r.rows[0] ?? refuse(q, id, "provisioning");
}

/** provisioning → running: its VM is ready and the engine starts. */
export async function markRunning(q: Queryable, id: string): Promise<Job> {
  const r = await q.query<Job>(
    `update jobs set state = 'running', started_at = now(), updated_at = now()
     where id = $1 and state = any($2::text[])
     returning ${JOB}`,
    [id, sourcesOf("running")],
  );
  return r.rows[0] ?? refuse(q, id, "running");
}

/**
 * Records that the job's first step started (only while running; idempotent). From here on the
 * reaper fails the job instead of requeueing it, because a step may have had effects.
 */
export async function markFirstStepStarted(q: Queryable, id: string): Promise<Job> {
  const r = await q.query<Job>(
    `update jobs set first_step_at = coalesce(first_step_at, now()), updated_at = now()
     where id = $1 and state = 'running'
     returning ${JOB}`,
    [id],
  );
  return r.rows[0] ?? refuse(q, id, "running");
}

export interface Finish {
  readonly result: JobResult;
  readonly outputs?: Readonly<Record<string, string>>;
  /** Why it failed or was cancelled, as a sentence for the user. */
  readonly reason?: string;
}

/**
 * Ends the job: success only from running; failure and cancellation from any state that has not
 * ended. An ended job never changes again.
 */
export async function finishJob(q: Queryable, id: string, finish: Finish): Promise<Job> {
  const to = stateForResult(finish.result);
  const r = await q.query<Job>(
    `update jobs set state = $3, result = $4, outputs = $5::jsonb, failure_reason = $6, finished_at = now(), updated_at = now()
     where id = $1 and state = any($2::text[])
     returning ${JOB}`,
    [id, sourcesOf(to), to, finish.result, JSON.stringify(finish.outputs ?? {}), finish.reason ?? null],
  );
  return r.rows[0] ?? refuse(q, id, to);
}

/**
 * The end of a job its owner ran, in one statement: finishJob's guarded change, its next event seq
 * recorded (it only grows), and the lease `owner` holds on it released. When the change is illegal
 * nothing happens at all (IllegalTransitionError, as finishJob): the lease stays held.
 * `leaseReleased` is false when `owner` no longer held it (taken over meanwhile).
 */
export async function finishJobReleasing(
  q: Queryable,
  id: string,
  finish: Finish,
  owner: string,
  nextSeq: number,
): Promise<{ readonly job: Job; readonly leaseReleased: boolean }> {
  const to = stateForResult(finish.result);
  const r = await q.query<Job & { leaseReleased: boolean }>(
    `with job as (
       update jobs set state = $3, result = $4, outputs = $5::jsonb, failure_reason = $6, finished_at = now(),
         updated_at = now(), event_seq = greatest(event_seq, $7)
       where id = $1 and state = any($2::text[])
       returning *
     ), released as (
       delete from leases where job_id = $1 and owner = $8 and exists (select 1 from job)
       returning job_id
     )
     select ${JOB}, exists (select 1 from released) as "leaseReleased" from job`,
    [id, sourcesOf(to), to, finish.result, JSON.stringify(finish.outputs ?? {}), finish.reason ?? null, nextSeq, owner],
  );
  const row = r.rows[0];
  if (!row) return refuse(q, id, to);
  const { leaseReleased, ...job } = row;
  return { job, leaseReleased };
}

/**
 * assigned | provisioning → queued, after its orchestrator was lost before any step ran. The
 * caller must hold (have taken over) the job's lease, so that only one reaper requeues it.
 */
export async function requeueJob(q: Queryable, id: string): Promise<Job> {
  const r = await q.query<Job>(
    `update jobs set state = 'queued', assigned_to = null, updated_at = now()
     where id = $1 and state = any($2::text[])
     returning ${JOB}`,
    [id, sourcesOf("queued")],
  );
  return r.rows[0] ?? refuse(q, id, "queued");
}

/** Records the job's next event seq; it only ever grows. False when the job is not recorded. */
export async function recordEventSeq(q: Queryable, id: string, nextSeq: number): Promise<boolean> {
  const r = await q.query("update jobs set event_seq = greatest(event_seq, $2) where id = $1", [id, nextSeq]);
  return r.rowCount > 0;
}

/** Builds the error for a guarded update that changed nothing: the job is missing or in the wrong state. */
async function refuse(q: Queryable, id: string, attempted: JobState): Promise<never> {
  const r = await q.query<{ state: JobState }>("select state from jobs where id = $1", [id]);
  const current = r.rows[0]?.state;
  if (current === undefined) throw new JobNotFoundError(id);
  throw new IllegalTransitionError(id, current, attempted);
}
