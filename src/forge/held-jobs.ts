// The skeleton both forge runners share: the jobs a runner holds right now, each with its per-job
// reporter (Forgejo's TaskReporter, GitHub's JobReporter). It routes the bus's JobEvents to their
// reporter, or stops jobs nobody holds (orphan-jobs.ts); keeps what is held on disk for a successor
// process (in-flight-file.ts) and ends what a dead predecessor left; and drains: wait for the held
// jobs until the stop's deadline, then abandon the rest with last words. It never talks to a forge:
// how a job is reported, and how a leftover is ended, is the adapter's.
import type { JobEvent } from "../contract/job-event.js";
import type { Slot } from "../lifecycle/slots.js";
import type { EventDelivery, JobBus, Subscription } from "../queue/bus.js";
import type { Logger } from "../telemetry/log.js";
import type { InFlightFile } from "./in-flight-file.js";
import { OrphanJobs } from "./orphan-jobs.js";

/** What the skeleton needs of a per-job reporter. */
export interface Reporter<End = unknown> {
  /** The JobRequest id: the key of the job's events on the bus. */
  readonly jobId: string;
  /** Why the job was asked to stop, once it was: the job may still run after its end here. */
  readonly cancelReason: string | undefined;
  /** A JobEvent of the job: repeated or out-of-order ones included (the reporter dedupes). */
  apply(event: JobEvent): void;
  /** The stop's deadline passed: ask for the job to stop and end it on the forge with `reason`. */
  abandon(reason: string): void;
  /** Settles when nothing more will be sent for the job; never rejects. */
  readonly done: Promise<End>;
}

export interface HeldJobsOptions<E> {
  readonly bus: Pick<JobBus, "consumeEvents" | "publishCancel">;
  readonly log: Logger;
  /** What is held, on disk for a successor process (default: nothing survives a crash). */
  readonly inFlight?: InFlightFile<E>;
  /** The JobRequest id of an entry of the in-flight file. */
  readonly jobIdOf: (entry: E) => string;
}

export interface Hold<E, End> {
  /** The job's entry in the in-flight file while it is held. */
  readonly entry: E;
  /** The capacity the job takes; released once its reporter is done. */
  readonly slot: Slot;
  /** Once done: an entry to keep on disk for the next process (a job it must still end), or undefined. */
  readonly keep?: (end: End) => E | undefined;
  /** Once done, after everything above: what the adapter does next (poll again, end an ephemeral runner). */
  readonly ended?: (end: End) => void;
}

/** How a reporter says its job ended (GitHub: whether the completion was accepted). */
export type EndOf<R extends Reporter> = Awaited<R["done"]>;

export class HeldJobs<R extends Reporter, E> {
  readonly #o: HeldJobsOptions<E>;
  readonly #held = new Map<string, R>();
  readonly #orphans: OrphanJobs;
  #subscription: Subscription | undefined;
  #leftovers: Promise<void> = Promise.resolve();

  constructor(options: HeldJobsOptions<E>) {
    this.#o = options;
    this.#orphans = new OrphanJobs(options.bus, options.log);
  }

  get size(): number {
    return this.#held.size;
  }

  get(jobId: string): R | undefined {
    return this.#held.get(jobId);
  }

  reporters(): R[] {
    return [...this.#held.values()];
  }

  /** Takes the job events of `replyTo` from the bus; each goes to its reporter, or stops a job nobody holds. */
  async listen(replyTo: string): Promise<void> {
    this.#subscription = await this.#o.bus.consumeEvents(replyTo, (d) => this.#onEvent(d));
  }

  /** Stops taking job events (once no reporter needs them). */
  async close(): Promise<void> {
    await this.#subscription?.cancel().catch(() => {});
  }

  /** What a previous process held when it died (empty without an in-flight file). */
  async leftovers(): Promise<E[]> {
    return (await this.#o.inFlight?.leftovers()) ?? [];
  }

  /**
   * Ends what a previous process held, each job stopped in its VM first. Each entry stays on disk
   * until `end` says it was dealt with ("ended"), so what this process could not end (it was
   * stopped too) is still there for the next one. The jobs are ended side by side.
   */
  endLeftovers(leftovers: readonly E[], end: (entry: E) => Promise<"ended" | "kept">): Promise<void> {
    const inFlight = this.#o.inFlight;
    for (const entry of leftovers) void inFlight?.add(entry);
    const ending = Promise.all(
      leftovers.map(async (entry) => {
        const jobId = this.#o.jobIdOf(entry);
        this.#orphans.stop(jobId);
        if ((await end(entry)) === "ended") await inFlight?.remove(jobId);
      }),
    ).then(() => {});
    this.#leftovers = Promise.all([this.#leftovers, ending]).then(() => {});
    return ending;
  }

  /** Whether the job is held (a forge may hand out the same job twice: a replayed request). */
  holds(jobId: string): boolean {
    return this.#held.has(jobId);
  }

  /** Holds a job until its reporter is done: its events go there, its entry is on disk meanwhile. */
  hold(reporter: R, hold: Hold<E, EndOf<R>>): void {
    const { jobId } = reporter;
    this.#held.set(jobId, reporter);
    void this.#o.inFlight?.add(hold.entry);
    void (reporter.done as Promise<EndOf<R>>).then((end) => {
      this.#held.delete(jobId);
      // A job ended here without its result may run on: its later events stop it again.
      this.#orphans.ended(jobId, reporter.cancelReason);
      const kept = hold.keep?.(end);
      void (kept ? this.#o.inFlight?.add(kept) : this.#o.inFlight?.remove(jobId));
      hold.slot.release();
      hold.ended?.(end);
    });
  }

  /** The job's entry changed (how far it got): the next process should see this one. */
  remember(entry: E): void {
    void this.#o.inFlight?.add(entry);
  }

  /**
   * The second phase of a stop: waits for the held jobs until `deadline` aborts, then abandons
   * those still held with `reason`, and resolves once every reporter is done.
   */
  async drain(deadline: AbortSignal, reason: string): Promise<void> {
    if (this.#held.size > 0 && !deadline.aborted) {
      this.#o.log.info({ jobs: this.#held.size }, "waiting for running jobs to finish");
      await Promise.race([this.#allDone(), new Promise((r) => deadline.addEventListener("abort", r, { once: true }))]);
    }
    for (const r of this.#held.values()) r.abandon(reason);
    await this.#allDone();
  }

  /** Resolves once every held job's reporter is done (without abandoning any). */
  async #allDone(): Promise<void> {
    await Promise.allSettled(this.reporters().map((r) => r.done));
  }

  /** Settles when the jobs held now are done, the leftovers ended and the in-flight file written. */
  async settled(): Promise<void> {
    await this.#allDone();
    await this.#leftovers;
    await this.#o.inFlight?.settled();
  }

  #onEvent(delivery: EventDelivery): void {
    const reporter = this.#held.get(delivery.event.jobId);
    if (reporter) reporter.apply(delivery.event);
    // A job this process does not hold: the process that took it died. Stop it in its VM.
    else this.#orphans.onEvent(delivery.event);
    delivery.ack().catch((err: unknown) => this.#o.log.warn({ err }, "could not acknowledge a job event"));
  }
}
