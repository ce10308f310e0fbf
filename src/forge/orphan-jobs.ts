// Events can arrive for a job this runner process does not hold: the process that queued it died
// (a crash, a kill, a power cut) and this one started in its place on the same event queue. Nobody
// reports such a job to the forge any more, so it is stopped instead of occupying a VM until it
// ends by itself; the forge fails the job on its own (Forgejo: at once, see in-flight-tasks.ts;
// GitHub: when the job's lock expires). A job this process ended on the forge without its result
// (its orchestrator fell silent, a stop ran out of time) is stopped again when it turns out to run
// still: the Cancel sent then may have found no one listening, for instance an orchestrator that
// was cut off from the queue and comes back.
import type { JobEvent } from "../contract/job-event.js";
import type { JobBus } from "../queue/bus.js";
import type { Logger } from "../telemetry/log.js";

const REMEMBERED = 10_000;
/** A job that keeps sending events after its Cancel is sent one again at most this often. */
const CANCEL_REPEAT_MS = 30_000;

export const ORPHAN_REASON =
  "the gnomon runner that took this job from the forge stopped unexpectedly and its successor does not hold the job, so nobody reports it to the forge any more; the job was stopped";

export class OrphanJobs {
  readonly #bus: Pick<JobBus, "publishCancel">;
  readonly #log: Logger;
  /** Jobs already cancelled (oldest first), so a stream of their events sends one Cancel each. */
  readonly #cancelled = new Set<string>();

  readonly #now: () => number;

  constructor(bus: Pick<JobBus, "publishCancel">, log: Logger, now: () => number = Date.now) {
    this.#bus = bus;
    this.#log = log;
    this.#now = now;
  }

  /** Jobs this process reported to their end: late or repeated events of theirs are no orphans. */
  readonly #ended = new Set<string>();
  /** Jobs ended on the forge without their result: the reason of their Cancel, and when it was last repeated. */
  readonly #abandoned = new Map<string, { readonly reason: string; repeatedAtMs: number | undefined }>();

  /**
   * Remembers that this process saw `jobId` through to its end. `cancelReason`: it ended the job
   * on the forge without the job's result and asked for it to be stopped, with this reason.
   */
  ended(jobId: string, cancelReason?: string): void {
    this.#ended.add(jobId);
    if (this.#ended.size > REMEMBERED) this.#ended.delete(this.#ended.values().next().value as string);
    if (cancelReason === undefined) return;
    this.#abandoned.set(jobId, { reason: cancelReason, repeatedAtMs: undefined });
    if (this.#abandoned.size > REMEMBERED) this.#abandoned.delete(this.#abandoned.keys().next().value as string);
  }

  /** An event of a job this process does not hold: stop the job, once, unless it has ended. */
  onEvent(event: JobEvent): void {
    const abandoned = this.#abandoned.get(event.jobId);
    if (abandoned) {
      if (event.kind === "job-finished") this.#abandoned.delete(event.jobId);
      else this.#repeatCancel(event.jobId, abandoned);
      return;
    }
    if (this.#ended.has(event.jobId)) return;
    if (event.kind === "job-finished") {
      this.#cancelled.delete(event.jobId);
      return;
    }
    this.stop(event.jobId);
  }

  /** The job runs on although it was asked to stop: ask again (at once, then at most every 30 s). */
  #repeatCancel(jobId: string, abandoned: { readonly reason: string; repeatedAtMs: number | undefined }): void {
    const now = this.#now();
    if (abandoned.repeatedAtMs !== undefined && now - abandoned.repeatedAtMs < CANCEL_REPEAT_MS) return;
    abandoned.repeatedAtMs = now;
    this.#log.warn({ jobId }, "a job this runner ended on the forge still runs; asking again for it to be stopped");
    this.#bus
      .publishCancel({ v: 1, jobId, reason: abandoned.reason, t: now })
      .catch((err: unknown) => this.#log.warn({ err, jobId }, "could not send the Cancel for a job that still runs"));
  }

  /** Asks the orchestrators to stop `jobId` (once per job). */
  stop(jobId: string): void {
    if (this.#cancelled.has(jobId)) return;
    this.#cancelled.add(jobId);
    if (this.#cancelled.size > REMEMBERED) this.#cancelled.delete(this.#cancelled.values().next().value as string);
    this.#log.warn({ jobId }, "events for a job no one reports to the forge (its runner process died); stopping it");
    this.#bus
      .publishCancel({ v: 1, jobId, reason: ORPHAN_REASON, t: Date.now() })
      .catch((err: unknown) => this.#log.warn({ err, jobId }, "could not send the Cancel for an orphaned job"));
  }
}
