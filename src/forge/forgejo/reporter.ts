// Reports one task to Forgejo from the moment it is fetched: every reportInterval the new log rows
// (UpdateLog) and then the full state (UpdateTask, also the heartbeat that keeps Forgejo's zombie
// reaper away while the VM boots); in between, new rows go on their own shortly after they arrive
// (report-schedule.ts: a brief wait for company, a least time between UpdateLog calls). It learns
// forge-side cancellation from UpdateTask answers and asks for a Cancel; at the end it sends the
// last rows with no_more until acknowledged and only then the final UpdateTask. Calls for one task
// are never in flight together. A job whose orchestrator falls silent (orchestrator-silence.ts) is
// ended here as failed, saying so, and a Cancel goes out.
import { Code } from "@connectrpc/connect";
import type { JobEvent, JobResult } from "../../contract/job-event.js";
import { pause, withTimeout } from "../../lifecycle/abort.js";
import type { Intervals } from "../../lifecycle/backoff.js";
import { retry } from "../../lifecycle/retry.js";
import { toError } from "../../lifecycle/to-error.js";
import type { Logger } from "../../telemetry/log.js";
import type { Reporter } from "../held-jobs.js";
import { OrchestratorSilence, silenceReason } from "../orchestrator-silence.js";
import type { ForgejoClient, TaskResult } from "./client.js";
import { codeOf, isTransient, LogsLostError, type RegisterAgain, RunnerUnregisteredError } from "./errors.js";
import { LogsIncompleteError, shipLog } from "./log-shipper.js";
import { nextReportStep, type ReportTimings } from "./report-schedule.js";
import type { TaskRecord } from "./task-record.js";

export interface ReporterOptions {
  readonly client: ForgejoClient;
  readonly record: TaskRecord;
  readonly jobId: string;
  /** For the "registration lost" message. */
  readonly runnerName: string;
  /** For the same message: how to register a new runner in its place. */
  readonly registerAgain: RegisterAgain;
  /** forgejo-runner's report_interval: 1 s. */
  readonly reportIntervalMs: number;
  /** How long a new row waits for more before it goes on its own (default LOG_DELAY_MS). */
  readonly logDelayMs?: number;
  /** The least time between two UpdateLog calls (default LOG_INTERVAL_MS). */
  readonly logIntervalMs?: number;
  /** Deadline of each periodic call. */
  readonly callTimeoutMs: number;
  /** Backoff of the final report's retries. */
  readonly retryIntervals: Intervals;
  /** How long the final report is retried before gnomon gives up on it. */
  readonly finalTimeoutMs: number;
  /** After Forgejo ended the task, how long to wait for the job's own result before ending it here (until setLimits). */
  readonly cancelGraceMs: number;
  /** Publishes a Cancel for the job on the bus; failures are logged by the caller. */
  readonly requestCancel: (reason: string) => Promise<void>;
  /** How long the orchestrator that accepted the job may send nothing before the task is ended as failed. */
  readonly orchestratorSilenceMs: number;
  /** False while the runner's own queue connection is down: silence does not count then. */
  readonly busConnected: () => boolean;
  /** Forgejo stopped accepting the runner's credentials: the runner must stop. */
  readonly onFatal: (err: Error) => void;
  readonly log: Logger;
  readonly now?: () => number;
}

/** How long the last report of a task abandoned by a stop may take. */
const ABANDONED_FINAL_TIMEOUT_MS = 15_000;

/** A row waits this long for others of its burst, so a burst goes in one call. */
export const LOG_DELAY_MS = 50;
/** At most one UpdateLog per this long, so a chatty job makes at most 10 a second (and 1 UpdateTask). */
export const LOG_INTERVAL_MS = 100;

type Remote = { readonly result: TaskResult; readonly atMs: number } | undefined;

export class TaskReporter implements Reporter<void> {
  readonly done: Promise<void>;
  readonly #o: ReporterOptions;
  readonly #now: () => number;
  #wake = new AbortController();
  #remote: Remote;
  #cancelReason: string | undefined;
  #failures = 0;
  #finalTimeoutMs: number;
  #fatal = false;
  #watchdogAtMs: number | undefined;
  #cancelGraceMs: number;
  #logClosed = false;
  /** Cuts the final report short when a stop (endHere with a limit) gives it less time than it took. */
  readonly #finalCut = new AbortController();
  readonly #silence: OrchestratorSilence;
  readonly #timings: ReportTimings;
  /** When the oldest row not sent yet was added; undefined while none waits. */
  #rowsWaitingSinceMs: number | undefined;
  /** The row count up to which rows were handed to an UpdateLog. */
  #sentEnd = 0;
  #lastLogMs: number | undefined;

  constructor(options: ReporterOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#timings = {
      reportIntervalMs: options.reportIntervalMs,
      logDelayMs: options.logDelayMs ?? LOG_DELAY_MS,
      logIntervalMs: options.logIntervalMs ?? LOG_INTERVAL_MS,
    };
    this.#finalTimeoutMs = options.finalTimeoutMs;
    this.#cancelGraceMs = options.cancelGraceMs;
    this.#silence = new OrchestratorSilence(options.orchestratorSilenceMs);
    this.done = this.#run().catch((err) => {
      this.#o.log.error({ err }, "task reporter failed");
    });
  }

  get taskId(): bigint {
    return this.#o.record.taskId;
  }

  /** The JobRequest id: the key of the job's events on the bus. */
  get jobId(): string {
    return this.#o.jobId;
  }

  /** Why the job was asked to stop, once it was (Forgejo ended the task, a stop, the watchdog). */
  get cancelReason(): string | undefined {
    return this.#cancelReason;
  }

  /** Applies a job event (duplicates are ignored); a result starts the final report at once, new rows the wait for their UpdateLog. */
  apply(event: JobEvent): void {
    const fresh = this.#o.record.apply(event);
    if (fresh) this.#silence.heard(event, this.#now());
    if (fresh && this.#o.record.finished) this.#wakeUp();
    else if (fresh && this.#noteWaitingRows()) this.#wakeUp();
  }

  /**
   * Ends the task here, without waiting for the job: a task that cannot run, or a stop whose
   * deadline passed. The reason becomes the last log line; `finalTimeoutMs` bounds the last report.
   */
  endHere(result: JobResult | "skipped", reason: string, finalTimeoutMs?: number): void {
    if (finalTimeoutMs !== undefined) {
      this.#finalTimeoutMs = Math.min(this.#finalTimeoutMs, finalTimeoutMs);
      // The final report may be retrying already, on its own deadline: bound it from now too.
      const cut = setTimeout(() => this.#finalCut.abort(), finalTimeoutMs);
      cut.unref();
      void this.done.finally(() => clearTimeout(cut));
    }
    this.#o.record.finish(result, this.#now(), { reason });
    this.#wakeUp();
  }

  /**
   * Limits from the job once it is known: the task ends as failed when no result arrived by
   * `watchdogAtMs`; after Forgejo ended the task, the job has `cancelGraceMs` to confirm.
   */
  setLimits(limits: { watchdogAtMs: number; cancelGraceMs: number }): void {
    this.#watchdogAtMs = limits.watchdogAtMs;
    this.#cancelGraceMs = limits.cancelGraceMs;
  }

  /**
   * Cancels the job on the bus and ends the task here as cancelled (a stop whose deadline passed);
   * its last report gets `finalTimeoutMs` at most.
   */
  abandon(reason: string, finalTimeoutMs = ABANDONED_FINAL_TIMEOUT_MS): void {
    this.#cancel(reason);
    this.endHere("cancelled", reason, finalTimeoutMs);
  }

  #wakeUp(): void {
    this.#wake.abort();
  }

  /**
   * True when rows wait that were not handed to an UpdateLog and no earlier row waits already:
   * the wait for their own UpdateLog starts now.
   */
  #noteWaitingRows(): boolean {
    if (this.#rowsWaitingSinceMs !== undefined || this.#o.record.rowCount <= this.#sentEnd) return false;
    this.#rowsWaitingSinceMs = this.#now();
    return true;
  }

  async #run(): Promise<void> {
    const { record } = this.#o;
    let reportDueMs = this.#now();
    while (!record.finished && !this.#fatal) {
      this.#noteWaitingRows(); // rows the runner logged itself
      const step = nextReportStep(
        {
          nowMs: this.#now(),
          reportDueMs,
          rowsWaitingSinceMs: this.#rowsWaitingSinceMs,
          lastLogMs: this.#lastLogMs,
          failing: this.#failures > 0,
        },
        this.#timings,
      );
      if (step.t === "report") {
        await this.#tick();
        if (this.#fatal) return;
        this.#checkDeadlines();
        reportDueMs = this.#now() + this.#timings.reportIntervalMs;
      } else if (step.t === "log") {
        await this.#shipRows();
        if (this.#fatal) return;
      } else {
        if (this.#wake.signal.aborted) this.#wake = new AbortController();
        await pause(step.ms, this.#wake.signal);
      }
    }
    if (!this.#fatal) await this.#final();
  }

  /** New rows, alone (between two full reports). A failure leaves them to the next full report. */
  async #shipRows(): Promise<void> {
    try {
      await this.#ship(AbortSignal.timeout(this.#o.callTimeoutMs));
    } catch (err) {
      this.#failed(err, "log upload");
    }
  }

  /** UpdateLog of the rows not acknowledged yet; rows added meanwhile wait for the next. */
  async #ship(signal: AbortSignal): Promise<void> {
    const { record, client } = this.#o;
    if (record.rowCount > record.ackedRows) this.#lastLogMs = this.#now();
    this.#sentEnd = record.rowCount;
    this.#rowsWaitingSinceMs = undefined;
    try {
      const shipped = await shipLog(record, client, { noMore: false, signal });
      if (shipped === "archived" && !this.#logClosed) {
        this.#logClosed = true;
        this.#o.log.info({ taskId: String(record.taskId) }, "forgejo closed the task's log; later lines are dropped");
      }
    } finally {
      // Rows added meanwhile started their wait in apply(); rows the server did not take wait on
      // (for the next full report, when the call failed).
      this.#sentEnd = record.ackedRows;
      this.#noteWaitingRows();
    }
  }

  /** One periodic report: new rows, then the state. Failures wait for the next tick. */
  async #tick(): Promise<void> {
    const { record, client } = this.#o;
    const report = record.report(); // taken first: a result that arrives meanwhile waits for #final
    const signal = AbortSignal.timeout(this.#o.callTimeoutMs);
    try {
      await this.#ship(signal);
      const res = await client.updateTask(report, record.unsentOutputs(), { signal });
      record.outputsAccepted(res.sentOutputs);
      this.#recovered();
      if (res.result !== "unspecified") this.#remoteEnded(res.result);
    } catch (err) {
      this.#failed(err, "periodic report");
    }
  }

  /** Forgejo finished the task itself (cancelled by a user, a newer push, or a reaper). */
  #remoteEnded(result: TaskResult): void {
    if (this.#remote) return;
    this.#remote = { result, atMs: this.#now() };
    const reason =
      result === "cancelled"
        ? "cancelled on Forgejo"
        : `ended on Forgejo with result ${result} (for example by its stale-task reaper)`;
    this.#o.log.info({ taskId: String(this.#o.record.taskId), result }, "forgejo ended the task; cancelling the job");
    this.#cancel(reason);
  }

  #cancel(reason: string): void {
    if (this.#cancelReason !== undefined) return;
    this.#cancelReason = reason;
    this.#o.requestCancel(reason).catch((err) => {
      this.#o.log.warn({ err, jobId: this.#o.jobId }, "could not publish the cancellation of the job");
    });
  }

  #checkDeadlines(): void {
    const { record } = this.#o;
    if (record.finished) return;
    const now = this.#now();
    if (this.#remote && now - this.#remote.atMs >= this.#cancelGraceMs) {
      record.finish(this.#remote.result === "cancelled" ? "cancelled" : "failure", now, {
        reason: `Forgejo ended the task; the job did not confirm that it stopped within ${Math.round(this.#cancelGraceMs / 1000)} s, so gnomon closed it here.`,
      });
      return;
    }
    // Once Forgejo ended the task, the grace above bounds the wait for the job instead.
    if (!this.#remote && this.#endIfSilent(now)) return;
    if (this.#watchdogAtMs !== undefined && now >= this.#watchdogAtMs) {
      this.#cancel("no result in time");
      record.finish("failure", now, {
        reason:
          "No orchestrator reported a result for this job in time (it waited in the queue or its host went away); gnomon gave up on it. " +
          "Check that an orchestrator serves this job's runs-on label.",
      });
    }
  }

  /** Ends the task as failed when the job's orchestrator fell silent; true when it did. */
  #endIfSilent(now: number): boolean {
    if (!this.#o.busConnected()) {
      this.#silence.deaf(now);
      return false;
    }
    const silence = this.#silence.check(now);
    if (!silence) return false;
    const reason = silenceReason(silence);
    this.#o.log.warn(
      {
        taskId: String(this.#o.record.taskId),
        orchestrator: silence.orchestrator,
        lastHeard: new Date(silence.lastHeardMs).toISOString(),
      },
      "the job's orchestrator stopped reporting; ending the task as failed",
    );
    this.#cancel(reason);
    this.#o.record.finish("failure", now, { reason });
    return true;
  }

  /** Last words: rows with no_more until all are acknowledged, then the final state. */
  async #final(): Promise<void> {
    const { record, client, log } = this.#o;
    const taskId = String(record.taskId);
    const signal = withTimeout(this.#finalTimeoutMs, this.#finalCut.signal);
    const retryable = (err: unknown) =>
      err instanceof LogsIncompleteError || (isTransient(err) && codeOf(err) !== Code.Unauthenticated);
    const onRetry = (err: unknown) => this.#failed(err, "final report");
    const callTimeoutMs = this.#o.callTimeoutMs;
    try {
      await retry(
        () =>
          shipLog(record, client, {
            noMore: true,
            signal: withTimeout(callTimeoutMs, signal),
          }),
        { backoff: this.#o.retryIntervals, signal, retryable, onRetry },
      );
    } catch (err) {
      if (this.#fatalIf(err)) return;
      if (err instanceof LogsLostError) log.error({ err, taskId }, "forgejo lost log rows of the task");
      else log.error({ err: toError(err), taskId }, "the task's last log rows could not be sent to forgejo");
    }
    try {
      let rounds = 0;
      await retry(
        async () => {
          const res = await client.updateTask(record.report(), record.unsentOutputs(), {
            signal: withTimeout(callTimeoutMs, signal),
          });
          record.outputsAccepted(res.sentOutputs);
          rounds += 1;
          const missing = Object.keys(record.unsentOutputs());
          if (missing.length > 0 && rounds < 3) throw new OutputsPendingError(missing);
          if (missing.length > 0) log.warn({ taskId, missing }, "forgejo did not accept some job outputs");
        },
        {
          backoff: this.#o.retryIntervals,
          signal,
          retryable: (e) => e instanceof OutputsPendingError || retryable(e),
          onRetry,
        },
      );
      this.#recovered();
      log.info({ taskId, result: record.result, rows: record.rowCount }, "task reported to forgejo");
    } catch (err) {
      if (this.#fatalIf(err)) return;
      log.error(
        { err: toError(err), taskId },
        "the task's final state could not be sent to forgejo; it will show as failed there",
      );
    }
  }

  #fatalIf(err: unknown): boolean {
    if (codeOf(err) !== Code.Unauthenticated) return false;
    this.#fatal = true;
    const o = this.#o;
    o.onFatal(new RunnerUnregisteredError(o.client.instance, o.runnerName, o.registerAgain, { cause: err }));
    return true;
  }

  /** Logs the first failure of a streak (not every one), and stops on a lost registration. */
  #failed(err: unknown, what: string): void {
    if (this.#fatalIf(err)) return;
    if (err instanceof LogsLostError) {
      this.#o.log.error(
        { err, taskId: String(this.#o.record.taskId) },
        "forgejo lost log rows of the task; later rows are dropped",
      );
      this.#o.record.dropPendingRows();
      return;
    }
    this.#failures += 1;
    if (this.#failures === 1)
      this.#o.log.warn(
        { err: toError(err), taskId: String(this.#o.record.taskId), what },
        "reporting to forgejo failed; retrying",
      );
  }

  #recovered(): void {
    if (this.#failures > 0)
      this.#o.log.info(
        { taskId: String(this.#o.record.taskId), failures: this.#failures },
        "reporting to forgejo works again",
      );
    this.#failures = 0;
  }
}

/** Forgejo has not confirmed every output yet: send them again. */
class OutputsPendingError extends Error {
  override readonly name = "OutputsPendingError";
  constructor(readonly keys: readonly string[]) {
    super(`forgejo has not confirmed the outputs ${keys.join(", ")}`);
  }
}
