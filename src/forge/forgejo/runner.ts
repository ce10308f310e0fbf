// The forgejo-runner role as a Service: declares its labels, polls for tasks while there is room
// (poller.ts), turns each task into a JobRequest on the bus, and reports the job's events back
// through one TaskReporter per task, held in the shared skeleton (../held-jobs.ts). Stopping takes
// no new tasks, lets running ones finish until the deadline, then cancels them and still sends
// their last words.
import type { JobRequest } from "../../contract/job-request.js";
import { retry } from "../../lifecycle/retry.js";
import { deferred, type Service, type ServiceStatus } from "../../lifecycle/service.js";
import type { Slot } from "../../lifecycle/slots.js";
import { toError } from "../../lifecycle/to-error.js";
import type { JobBus } from "../../queue/bus.js";
import type { Logger } from "../../telemetry/log.js";
import { HeldJobs } from "../held-jobs.js";
import { LogMasker } from "../log-masker.js";
import { unservedNotice, warnUnservedLabels } from "../unserved-labels.js";
import type { TaskCapacity } from "./capacity.js";
import { type ForgejoClient, type ForgejoTask, forgejoClient } from "./client.js";
import type { RunnerCredentials } from "./credentials-file.js";
import { isTransient, JobSkippedError, type RegisterAgain } from "./errors.js";
import { failLostTask, type InFlightTask, inFlightTasksFile } from "./in-flight-tasks.js";
import type { RunnerLabel } from "./labels.js";
import { Poller, type PollerState } from "./poller.js";
import { declareRunner } from "./registration.js";
import { TaskReporter } from "./reporter.js";
import { TaskRecord } from "./task-record.js";
import { jobIdForTask, payloadStepCount, taskMaskValues, toJobRequest } from "./to-job-request.js";

export interface ForgejoRunnerOptions {
  readonly credentials: RunnerCredentials;
  /** The effective labels (configuration over the credentials file). */
  readonly labels: readonly RunnerLabel[];
  readonly bus: JobBus;
  readonly capacity: TaskCapacity;
  readonly clusterKey: Buffer;
  /** gnomon's version, sent to Forgejo and in the User-Agent. */
  readonly version: string;
  readonly log: Logger;
  readonly fetchIntervalMs: number;
  readonly fetchIntervalMaxMs: number;
  readonly fetchTimeoutMs: number;
  readonly reportIntervalMs: number;
  /** How long a new log row waits for more before its UpdateLog (default: the reporter's LOG_DELAY_MS). */
  readonly logDelayMs?: number;
  /** The least time between two UpdateLog calls of a task (default: the reporter's LOG_INTERVAL_MS). */
  readonly logIntervalMs?: number;
  /** A job whose orchestrator sent nothing this long (orchestratorSilence) is ended as failed. */
  readonly orchestratorSilenceMs: number;
  /** Default: a client for credentials.address. */
  readonly client?: ForgejoClient;
  /** How long the last report of a task is retried (default 10 min). */
  readonly finalTimeoutMs?: number;
  /** After Forgejo cancelled a task, how long the job has to confirm (default: its cancel-timeout-minutes + 1). */
  readonly cancelGraceMs?: number;
  readonly onPollerState?: (s: PollerState) => void;
  /** The credentials file it was read from, for the "runner deleted" message's register command. */
  readonly credentialsFile?: string;
  /**
   * Where the tasks held right now are kept, so that the next process ends them on Forgejo if
   * this one dies mid-job. Default: none (nothing survives a crash).
   */
  readonly inFlightFile?: string;
}

/** The event stream of a runner instance: one per registered runner. */
export const replyToFor = (uuid: string): string => `forgejo-${uuid}`;

/** codeberg.org throttles polling; forgejo-runner never polls it more often than every 30 s. */
export function effectiveFetchIntervalMs(instance: string, configuredMs: number): number {
  let host = "";
  try {
    host = new URL(instance).hostname;
  } catch {
    return configuredMs;
  }
  return host === "codeberg.org" ? Math.max(configuredMs, 30_000) : configuredMs;
}

export class ForgejoRunner implements Service {
  readonly name: string;
  readonly done: Promise<Error | undefined>;
  readonly replyTo: string;

  /** The queues (runs-on of the JobRequests) this runner publishes to: one per declared label. */
  get queues(): readonly string[] {
    return [...new Set(this.#o.labels.map((l) => l.runsOn))];
  }
  readonly #o: ForgejoRunnerOptions;
  readonly #client: ForgejoClient;
  readonly #poller: Poller;
  readonly #polling = new AbortController();
  readonly #held: HeldJobs<TaskReporter, InFlightTask>;
  readonly #ended = deferred<Error | undefined>();
  #loop: Promise<void> = Promise.resolve();
  #declared = false;
  #started = false;
  #over = false;
  #stopping: Promise<void> | undefined;
  #fatal: Error | undefined;
  #leftovers: InFlightTask[] = [];

  constructor(options: ForgejoRunnerOptions) {
    this.#o = options;
    this.#held = new HeldJobs({
      bus: options.bus,
      log: options.log,
      inFlight: options.inFlightFile ? inFlightTasksFile(options.inFlightFile, options.log) : undefined,
      jobIdOf: (task) => task.jobId,
    });
    const c = options.credentials;
    this.name = `forgejo-runner ${c.name} (${c.address})`;
    this.replyTo = replyToFor(c.uuid);
    this.done = this.#ended.promise;
    void this.done.then(() => {
      this.#over = true;
    });
    this.#client =
      options.client ??
      forgejoClient({
        instance: c.address,
        credentials: { uuid: c.uuid, token: c.token },
        userAgent: `gnomon/${options.version}`,
      });
    this.#poller = new Poller({
      client: this.#client,
      capacity: options.capacity,
      labels: options.labels.map((l) => l.name),
      runnerName: this.#runnerName(),
      registerAgain: this.#registerAgain(),
      fetchIntervalMs: effectiveFetchIntervalMs(c.address, options.fetchIntervalMs),
      fetchIntervalMaxMs: options.fetchIntervalMaxMs,
      fetchTimeoutMs: options.fetchTimeoutMs,
      handOff: (task, slot) => this.#handOff(task, slot),
      log: options.log,
      onState: options.onPollerState,
    });
  }

  /** Tasks being reported right now. */
  get activeTasks(): number {
    return this.#held.size;
  }

  status(): ServiceStatus {
    const where = this.#o.credentials.address;
    const tasks = `${this.#held.size} task${this.#held.size === 1 ? "" : "s"}`;
    // A fatal error first: a runner deleted on the server says to register again, until it ends.
    if (this.#fatal) return { state: "stopped", detail: this.#fatal.message };
    if (this.#over) return { state: "stopped", detail: "stopped" };
    if (this.#stopping) return { state: "stopping", detail: `taking no tasks; ${tasks} still running` };
    if (!this.#started) return { state: "starting", detail: `declaring its labels to forgejo at ${where}` };
    if (!this.#declared)
      return { state: "degraded", detail: `forgejo at ${where} is not answering; declaring its labels again` };
    const outage = this.#poller.outage;
    if (outage)
      return {
        state: "degraded",
        detail: `cannot fetch tasks from forgejo at ${where} since ${new Date(outage.since).toISOString()}: ${outage.error.message}`,
      };
    return { state: "ready", detail: `polling forgejo at ${where}; ${tasks} running` };
  }

  async start(): Promise<void> {
    // What a process that died left; dealt with once Forgejo answers (see #endLeftovers).
    this.#leftovers = await this.#held.leftovers();
    await this.#held.listen(this.replyTo);
    try {
      await this.#declare(this.#polling.signal);
    } catch (err) {
      if (!isTransient(err)) {
        await this.#held.close();
        throw err;
      }
      this.#o.log.warn({ err: toError(err) }, "forgejo is not answering yet; declaring again before the first fetch");
    }
    await warnUnservedLabels(this.#o.bus, this.queues, this.#o.log);
    this.#started = true;
    this.#loop = this.#runLoop();
  }

  async #declare(signal: AbortSignal): Promise<void> {
    const names = this.#o.labels.map((l) => l.name);
    const runner = { ...this.#o.credentials, registerAgain: this.#registerAgain() };
    const how = await declareRunner(this.#client, runner, names, this.#o.version, this.#o.log, signal);
    this.#declared = true;
    this.#o.log.info({ labels: names, declare: how, instance: this.#o.credentials.address }, "forgejo runner ready");
  }

  async #runLoop(): Promise<void> {
    const signal = this.#polling.signal;
    try {
      if (!this.#declared)
        await retry(() => this.#declare(signal), {
          backoff: { baseMs: this.#o.fetchIntervalMs, maxMs: this.#o.fetchIntervalMaxMs },
          signal,
          retryable: isTransient,
        });
      await this.#endLeftovers(signal);
      await this.#poller.run(signal);
    } catch (err) {
      if (signal.aborted) return; // a stop (or #end itself) ended the loop
      this.#end(toError(err));
    }
  }

  /** Ends the tasks a previous process held when it died, and stops their jobs, before taking new ones. */
  async #endLeftovers(signal: AbortSignal): Promise<void> {
    const leftovers = this.#leftovers;
    this.#leftovers = [];
    await this.#held.endLeftovers(leftovers, async (task) => {
      await failLostTask(this.#client, task, signal, this.#o.log);
      return "ended"; // or left to Forgejo's stale-task reaper: either way no later process can do more
    });
  }

  /** A fatal error: stop polling, cancel what runs (its reports cannot reach Forgejo), end. */
  #end(err: Error): void {
    if (this.#fatal) return;
    this.#fatal = err;
    this.#o.log.error({ err }, "forgejo runner stopped");
    this.#polling.abort(err);
    for (const r of this.#held.reporters()) r.abandon(err.message, 1_000);
    void this.#held.settled().then(async () => {
      await this.#held.close();
      this.#ended.resolve(err);
    });
  }

  #runnerName(): string {
    const c = this.#o.credentials;
    return `${c.name} (${c.uuid})`;
  }

  #registerAgain(): RegisterAgain {
    const o = this.#o;
    return { name: o.credentials.name, labels: o.labels.map((l) => l.text), credentialsFile: o.credentialsFile };
  }

  #handOff(task: ForgejoTask, slot: Slot): void {
    const o = this.#o;
    const jobId = jobIdForTask(o.credentials.address, task.id);
    if (this.#held.holds(jobId)) {
      slot.release(); // Forgejo replayed a task we already hold (a repeated request key)
      return;
    }
    const now = Date.now();
    const record = new TaskRecord(task.id, payloadStepCount(task), new LogMasker(taskMaskValues(task)));
    record.log(`gnomon ${o.version}, runner ${o.credentials.name}, took task ${task.id}`, now);
    const log = o.log.child({ taskId: String(task.id), jobId });

    const reporter = new TaskReporter({
      client: this.#client,
      record,
      jobId,
      runnerName: this.#runnerName(),
      registerAgain: this.#registerAgain(),
      reportIntervalMs: o.reportIntervalMs,
      logDelayMs: o.logDelayMs,
      logIntervalMs: o.logIntervalMs,
      callTimeoutMs: 30_000,
      // The last report is retried at most ~3 s apart: a Forgejo that is back learns the job's end within seconds.
      retryIntervals: { baseMs: 100, maxMs: 3_200 },
      finalTimeoutMs: o.finalTimeoutMs ?? 10 * 60_000,
      cancelGraceMs: o.cancelGraceMs ?? 6 * 60_000,
      orchestratorSilenceMs: o.orchestratorSilenceMs,
      busConnected: () => o.bus.connected,
      requestCancel: (reason) => o.bus.publishCancel({ v: 1, jobId, reason, t: Date.now() }),
      onFatal: (err) => this.#end(err),
      log,
    });
    // Once the task is reported: a new task may be waiting, so the next FetchTask looks at the queue.
    this.#held.hold(reporter, {
      entry: { taskId: String(task.id), jobId },
      slot,
      ended: () => this.#poller.lookAgain(),
    });
    void this.#queue(task, reporter, record, log, now);
  }

  /** Converts the task and puts the job on the bus; a task that cannot run is failed on Forgejo. */
  async #queue(task: ForgejoTask, reporter: TaskReporter, record: TaskRecord, log: Logger, now: number): Promise<void> {
    const o = this.#o;
    const jobId = jobIdForTask(o.credentials.address, task.id);
    let request: JobRequest;
    try {
      request = await toJobRequest(task, {
        instance: o.credentials.address,
        runnerUuid: o.credentials.uuid,
        replyTo: this.replyTo,
        labels: o.labels,
        clusterKey: o.clusterKey,
        nowMs: now,
      });
    } catch (err) {
      if (err instanceof JobSkippedError) {
        log.info("the job's if: is false; skipping the task");
        reporter.endHere("skipped", err.message);
        return;
      }
      log.warn({ err }, "task cannot run; failing it on forgejo");
      reporter.endHere("failure", toError(err).message);
      return;
    }
    const { timeoutMinutes, cancelTimeoutMinutes } = request.spec;
    reporter.setLimits({
      // startBy bounds the wait in the queue; then the job's own timeouts, and some slack for teardown.
      watchdogAtMs:
        Date.parse(request.startBy ?? request.queuedAt) + (timeoutMinutes + cancelTimeoutMinutes + 10) * 60_000,
      cancelGraceMs: o.cancelGraceMs ?? (cancelTimeoutMinutes + 1) * 60_000,
    });
    if (reporter.cancelReason !== undefined) {
      // Forgejo ended the task while it was being converted: nothing to queue.
      reporter.endHere("cancelled", `The job was not started: it was ${reporter.cancelReason}.`);
      return;
    }
    record.log(`Waiting for a VM for runs-on "${request.runsOn}"`, Date.now());
    try {
      await o.bus.publishJob(request);
    } catch (err) {
      log.error({ err }, "could not queue the job");
      reporter.endHere("failure", `gnomon could not queue the job: ${toError(err).message}`);
      return;
    }
    log.info({ runsOn: request.runsOn }, "task taken; job queued");
    const unserved = await unservedNotice(o.bus, request.runsOn);
    if (unserved) {
      log.warn({ runsOn: request.runsOn }, "no orchestrator serves the job's label right now");
      record.log(unserved, Date.now());
    }
    const late = reporter.cancelReason;
    // A Cancel broadcast before the job was on the queue reached no orchestrator holding it: repeat it.
    if (late !== undefined)
      await o.bus
        .publishCancel({ v: 1, jobId, reason: late, t: Date.now() })
        .catch((err) => log.warn({ err }, "could not publish the cancellation of the job"));
  }

  stop(deadline: AbortSignal): Promise<void> {
    this.#stopping ??= this.#stop(deadline);
    return this.#stopping;
  }

  /** The two-phase stop: no new task at once (Forgejo cancels a task through UpdateTask answers), then the drain. */
  async #stop(deadline: AbortSignal): Promise<void> {
    this.#polling.abort();
    await this.#loop;
    await this.#held.drain(deadline, "gnomon was stopped before the job finished, so the job was cancelled.");
    await this.#held.settled();
    await this.#held.close();
    this.#ended.resolve(this.#fatal);
  }
}
