// Job rows and their state changes. Every change is one guarded UPDATE (`where id = $1 and state =
// any($n)`) whose allowed states come from job-state.ts; zero rows means the change was illegal and
// becomes a typed error. Never read a state and then write it in two statements: that races.
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
    [
      request.id,
      request.runsOn,
      request.source.forge,
      request.source.instance,
      request.source.runner,
      JSON.stringify(request.source.ref),
      request.replyTo,
      request.queuedAt,
      request.startBy ?? null,
    ],
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
