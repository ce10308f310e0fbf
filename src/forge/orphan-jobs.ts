// Events can arrive for a job this runner process does not hold: the process that queued it died
// (a crash, a kill, a power cut) and this one started in its place on the same event queue. Nobody
// reports such a job to the forge any more, so it is stopped instead of occupying a VM until it
// ends by itself; the forge fails the job on its own (Forgejo: at once, see in-flight-tasks.ts;
// GitHub: when the job's lock expires).
import type { JobEvent } from "../contract/job-event.js";
import type { JobBus } from "../queue/bus.js";
import type { Logger } from "../telemetry/log.js";

const REMEMBERED = 10_000;

export const ORPHAN_REASON =
  "the gnomon runner that took this job from the forge stopped unexpectedly and its successor does not hold the job, so nobody reports it to the forge any more; the job was stopped";

export class OrphanJobs {
  readonly #bus: Pick<JobBus, "publishCancel">;
  readonly #log: Logger;
  /** Jobs already cancelled (oldest first), so a stream of their events sends one Cancel each. */
  readonly #cancelled = new Set<string>();

  constructor(bus: Pick<JobBus, "publishCancel">, log: Logger) {
    this.#bus = bus;
    this.#log = log;
  }

  /** Jobs this process reported to their end: late or repeated events of theirs are no orphans. */
  readonly #ended = new Set<string>();

  /** Remembers that this process saw `jobId` through to its end. */
  ended(jobId: string): void {
    this.#ended.add(jobId);
    if (this.#ended.size > REMEMBERED) this.#ended.delete(this.#ended.values().next().value as string);
  }

  /** An event of a job this process does not hold: stop the job, once, unless it has ended. */
  onEvent(event: JobEvent): void {
    if (this.#ended.has(event.jobId)) return;
    if (event.kind === "job-finished") {
      this.#cancelled.delete(event.jobId);
      return;
    }
    this.stop(event.jobId);
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
