// Reports one job GitHub gave this runner, from acquisition to completion (Forgejo's TaskReporter for
// GitHub): the first renewal, the JobRequest on the bus, the renewal loop, the job's events into its
// JobReport and onto GitHub (steps and logs in one loop, live lines in another, so neither waits for
// the other), and the completion with last words. Every way out (finished, cancelled, lock lost,
// its orchestrator fell silent, a stop) completes the job on GitHub, renewing its lock until GitHub
// accepted that, and publishes a Cancel when the orchestrator may still be running it.
import type { Cancel } from "../../contract/cancel.js";
import type { JobEvent } from "../../contract/job-event.js";
import type { JobRequest } from "../../contract/job-request.js";
import { pause } from "../../lifecycle/abort.js";
import { retry } from "../../lifecycle/retry.js";
import { toError } from "../../lifecycle/to-error.js";
import type { JobBus } from "../../queue/bus.js";
import type { Logger } from "../../telemetry/log.js";
import type { Reporter } from "../held-jobs.js";
import type { LogMasker } from "../log-masker.js";
import { OrchestratorSilence, silenceReason } from "../orchestrator-silence.js";
import { Outage } from "../outage.js";
import { unservedNotice } from "../unserved-labels.js";
import { type CompletionTimings, completeOnGitHub, REPORTING_OUTAGE } from "./completion.js";
import { JobGoneError } from "./errors.js";
import type { ChannelTimings, JobChannel } from "./job-channel.js";
import { JobReport, type RecordProgress } from "./job-report.js";
import { firstRenewal, type RenewLoop, type RenewTimings, startRenewing } from "./renewer.js";
import type { GitHubJob, ToJobRequestResult } from "./to-job-request.js";

export interface JobReporterTimings extends CompletionTimings {
  readonly renew: RenewTimings;
  readonly channel: ChannelTimings;
  /** How often changed steps and new lines are sent (official: at most every 500 ms). */
  readonly reportIntervalMs: number;
  /** The least time a cancelled job gets to end on its own before it is completed as cancelled. */
  readonly cancelTimeoutMs: number;
  /** A job whose orchestrator sent nothing this long (orchestratorSilence) is completed as failed. */
  readonly orchestratorSilenceMs: number;
}

/** How often a reporter checks that its job's orchestrator still speaks. */
const SILENCE_CHECK_MS = 1_000;

export interface JobReporterOptions {
  readonly job: GitHubJob;
  readonly channel: JobChannel;
  readonly bus: JobBus;
  /** Builds the JobRequest; called once, after the first renewal succeeded. */
  readonly toRequest: () => ToJobRequestResult;
  readonly masker: LogMasker;
  readonly log: Logger;
  readonly timings: JobReporterTimings;
  /** Called whenever the job's steps stand differently (what a successor process needs to end the job). */
  readonly onProgress?: (progress: readonly RecordProgress[]) => void;
  readonly now?: () => number;
}

/**
 * How the job ended for this process. `cut-short`: the runner had to stop before GitHub accepted
 * the completion while the job's lock still held, so the next process should complete it; `left`:
 * the first renewal failed and GitHub gives the job to another runner.
 */
export type JobReporterEnd = "completed" | "gone" | "gave-up" | "cut-short" | "left";

type Ending =
  | { readonly t: "finished" }
  | { readonly t: "cancel-timeout" }
  | { readonly t: "lost"; readonly error: Error }
  | { readonly t: "silent"; readonly reason: string }
  | { readonly t: "abandoned"; readonly reason: string };

/** Wakes the loops that wait for news; a wait leaves no listener behind, however long the job. */
class Doorbell {
  readonly #waiters = new Set<() => void>();

  ring(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves at the next ring, or when `signal` aborts. */
  wait(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.#waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

export class JobReporter implements Reporter<JobReporterEnd> {
  readonly job: GitHubJob;
  readonly report: JobReport;
  /** Settles when nothing more will be sent for the job: how it ended for this process. Never rejects. */
  readonly done: Promise<JobReporterEnd>;
  readonly #o: JobReporterOptions;
  readonly #now: () => number;
  readonly #ended: { promise: Promise<Ending>; resolve: (e: Ending) => void };
  readonly #news = new Doorbell();
  /** Steps or logs changed since the last sync. */
  #syncNews = false;
  /** Lines arrived since the last live send. */
  #liveNews = false;
  /** The job's reporting outage, shared by the report loop and the completion: logged once. */
  readonly #reporting: Outage;
  #progressStamp = "";
  #renewLoop: RenewLoop | undefined;
  #published = false;
  #cancelRequested = false;
  /** When the runner is stopping: no completion attempt starts after this. */
  #hurryUntil = Number.POSITIVE_INFINITY;
  #cancelReason: string | undefined;
  readonly #silence: OrchestratorSilence;

  /** Starts reporting at once: the first renewal, then the JobRequest (see `toRequest`). */
  constructor(opts: JobReporterOptions) {
    this.#o = opts;
    this.job = opts.job;
    this.#now = opts.now ?? Date.now;
    this.report = new JobReport(opts.job, { masker: opts.masker });
    this.#reporting = new Outage(opts.log, REPORTING_OUTAGE, this.#now);
    this.#silence = new OrchestratorSilence(opts.timings.orchestratorSilenceMs);
    let resolve!: (e: Ending) => void;
    const promise = new Promise<Ending>((r) => {
      resolve = r;
    });
    let settled = false;
    this.#ended = {
      promise,
      resolve: (e) => {
        if (settled) return;
        settled = true;
        resolve(e);
      },
    };
    this.done = this.#run().catch((err): JobReporterEnd => {
      this.#o.log.error({ err: toError(err) }, "github job handling failed");
      return "gave-up";
    });
  }

  /** The JobRequest id: the key of this job's events on the bus. */
  get jobId(): string {
    return this.job.contractId;
  }

  /** The reason of the Cancel this job published, once it did (the job may run on after its end here). */
  get cancelReason(): string | undefined {
    return this.#cancelReason;
  }

  /** Successful renewals after the first. */
  get renewals(): number {
    return this.#renewLoop?.renewals ?? 0;
  }

  /** A JobEvent for this job from the orchestrator (repeated ones are ignored). */
  apply(event: JobEvent): void {
    if (!this.report.apply(event)) return;
    this.#silence.heard(event, this.#now());
    if (this.report.outcome) this.#ended.resolve({ t: "finished" });
    this.#changed();
  }

  /** GitHub asked to cancel the job (JobCancellation). */
  cancelFromGitHub(timeoutMs: number | undefined): void {
    if (this.#cancelRequested || this.report.outcome) return;
    this.#cancelRequested = true;
    this.#o.log.info("github cancelled the job");
    void this.#publishCancel("the job was cancelled on GitHub");
    const waitMs = Math.max(this.#o.timings.cancelTimeoutMs, timeoutMs ?? 0);
    const timer = setTimeout(() => this.#ended.resolve({ t: "cancel-timeout" }), waitMs);
    timer.unref();
    void this.#ended.promise.then(() => clearTimeout(timer));
  }

  /**
   * The runner is stopping and its deadline passed: cancel the job and complete it, or, if it is
   * completing already, give that no longer than `finalFlushMs` from now.
   */
  abandon(reason: string): void {
    this.#hurryUntil = Math.min(this.#hurryUntil, this.#now() + this.#o.timings.finalFlushMs);
    this.#ended.resolve({ t: "abandoned", reason });
  }

  #changed(): void {
    this.#syncNews = true;
    this.#liveNews = true;
    this.#news.ring();
    const { onProgress } = this.#o;
    if (!onProgress) return;
    const progress = this.report.progress();
    const stamp = JSON.stringify(progress);
    if (stamp === this.#progressStamp) return;
    this.#progressStamp = stamp;
    onProgress(progress);
  }

  async #run(): Promise<JobReporterEnd> {
    const { job, channel, log, timings } = this.#o;
    const setupSignal = new AbortController();
    void this.#ended.promise.then(() => setupSignal.abort());

    let lockedUntil: Date;
    try {
      lockedUntil = await firstRenewal(channel, timings.renew, setupSignal.signal);
    } catch (err) {
      log.error({ err: toError(err) }, "the first renewal of the job failed; leaving the job to GitHub");
      return "left";
    }
    const renewLoop = startRenewing(channel, job.jobId, lockedUntil, timings.renew, this.#now);
    this.#renewLoop = renewLoop;
    void renewLoop.done.then((lost) => {
      if (lost) this.#ended.resolve({ t: "lost", error: lost });
    });

    const built = this.#o.toRequest();
    try {
      await channel.begin(this.report, setupSignal.signal);
    } catch (err) {
      log.warn({ err: toError(err) }, "could not mark the job as started on GitHub");
    }
    if (!built.ok) {
      log.error({ reason: built.reason }, "the job cannot run");
      this.report.finish("failure", {}, `gnomon cannot run this job: ${built.reason}`, this.#now());
    } else {
      await this.#publish(built.request, lockedUntil, setupSignal.signal);
    }
    if (this.report.outcome) this.#ended.resolve({ t: "finished" });

    const reporting = new AbortController();
    void this.#ended.promise.then(() => reporting.abort());
    const syncing = this.#syncLoop(reporting.signal);
    const streaming = this.#liveLoop(reporting.signal);
    const watch = setInterval(() => this.#checkSilence(), SILENCE_CHECK_MS);
    watch.unref();
    void this.#ended.promise.then(() => clearInterval(watch));
    const ending = await this.#ended.promise;
    await syncing;

    if (!this.report.outcome) {
      const at = this.#now();
      switch (ending.t) {
        case "cancel-timeout":
          this.report.finish("cancelled", {}, "the job was cancelled on GitHub", at);
          break;
        case "lost":
          await this.#publishCancel(ending.error.message);
          this.report.finish("failure", {}, ending.error.message, at);
          break;
        case "silent":
          await this.#publishCancel(ending.reason);
          this.report.finish("failure", {}, ending.reason, at);
          break;
        case "abandoned":
          await this.#publishCancel(ending.reason);
          this.report.finish("cancelled", {}, ending.reason, at);
          break;
        case "finished":
          break;
      }
      this.#changed();
    }
    log.info({ result: this.report.outcome?.result, ending: ending.t }, "completing the github job");
    try {
      // GitHub dropped the job; nothing it would accept is left to send.
      if (ending.t === "lost" && ending.error instanceof JobGoneError) return "gone";
      // The lock GitHub granted last: renewals go on until the completion is accepted, but the
      // completion does not outlast the lock it had when the job ended.
      const lockEnd = renewLoop.lockedUntil.getTime() + timings.renew.graceMs;
      const dropped = new AbortController();
      void renewLoop.done.then((lost) => {
        if (lost) dropped.abort(lost);
      });
      const result = await completeOnGitHub({
        channel,
        report: this.report,
        log,
        timings,
        until: () => Math.min(lockEnd, this.#hurryUntil),
        signal: dropped.signal,
        reporting: this.#reporting,
        now: this.#now,
      });
      if (result === "completed" || result === "gone") return result;
      return this.#hurryUntil < lockEnd && this.#now() < lockEnd ? "cut-short" : "gave-up";
    } finally {
      channel.dispose?.();
      await streaming;
      renewLoop.stop();
      await renewLoop.done;
    }
  }

  async #publish(request: JobRequest, lockedUntil: Date, signal: AbortSignal): Promise<void> {
    const { bus, log, timings } = this.#o;
    const giveUpAt = lockedUntil.getTime() + timings.renew.graceMs;
    try {
      await retry(() => bus.publishJob(request), {
        backoff: (n) => Math.min(30_000, 1_000 * 2 ** Math.min(n, 5)),
        retryable: () => this.#now() < giveUpAt,
        signal,
        onRetry: (err, n) => {
          if (n === 1) log.warn({ err: toError(err) }, "could not queue the job; retrying");
        },
      });
      this.#published = true;
      log.info({ runsOn: request.runsOn }, "github job queued");
      const unserved = await unservedNotice(bus, request.runsOn);
      if (unserved) {
        log.warn({ runsOn: request.runsOn }, "no orchestrator serves the job's label right now");
        this.report.note(unserved, this.#now());
        this.#changed();
      }
      // A cancellation that came while the job was being queued could not be passed on yet.
      if (this.#cancelRequested) await this.#publishCancel("the job was cancelled on GitHub");
    } catch (err) {
      if (signal.aborted) return;
      this.report.finish("failure", {}, `gnomon could not queue the job: ${toError(err).message}`, this.#now());
    }
  }

  /** Ends the job when its orchestrator fell silent; while the runner's own queue connection is down, silence does not count. */
  #checkSilence(): void {
    const now = this.#now();
    if (!this.#o.bus.connected) {
      this.#silence.deaf(now);
      return;
    }
    const silence = this.#silence.check(now);
    if (!silence) return;
    this.#o.log.warn(
      { orchestrator: silence.orchestrator, lastHeard: new Date(silence.lastHeardMs).toISOString() },
      "the job's orchestrator stopped reporting; completing the job as failed",
    );
    this.#ended.resolve({ t: "silent", reason: silenceReason(silence) });
  }

  async #publishCancel(reason: string): Promise<void> {
    if (!this.#published) return;
    const cancel: Cancel = { v: 1, jobId: this.jobId, reason: this.report.mask(reason), t: this.#now() };
    this.#cancelReason = cancel.reason;
    try {
      await retry(() => this.#o.bus.publishCancel(cancel), { attempts: 5, backoff: (n) => 500 * n });
    } catch (err) {
      this.#o.log.error({ err: toError(err) }, "could not publish the job's cancellation");
    }
  }

  /** Sends changed steps and finished logs at most every reportIntervalMs until the job has an ending. */
  async #syncLoop(stop: AbortSignal): Promise<void> {
    const { channel, timings } = this.#o;
    while (!stop.aborted) {
      if (!this.#syncNews) await this.#news.wait(stop);
      if (stop.aborted) break;
      this.#syncNews = false;
      try {
        // Not aborted by the ending: a sync cut off midway could make the final one repeat lines.
        await channel.sync(this.report, AbortSignal.timeout(timings.channel.callTimeoutMs * 2));
        this.#reporting.recovered();
      } catch (err) {
        if (stop.aborted) break;
        this.#reporting.failed(err);
        this.#syncNews = true;
      }
      await pause(timings.reportIntervalMs, stop);
    }
  }

  /**
   * Sends new lines to the live console at most every reportIntervalMs, apart from the sync loop
   * so that lines never wait for a step update or log upload that GitHub is slow to take. Sends
   * what arrived last once more after the ending.
   */
  async #liveLoop(stop: AbortSignal): Promise<void> {
    for (;;) {
      if (!this.#liveNews && !stop.aborted) await this.#news.wait(stop);
      this.#liveNews = false;
      await this.#o.channel.live(this.report).catch(() => {}); // best effort by contract; never the job's end
      if (stop.aborted) return;
      await pause(this.#o.timings.reportIntervalMs, stop);
    }
  }
}
