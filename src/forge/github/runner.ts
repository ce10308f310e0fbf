// The github-runner role as a Service: one registration, its message session (broker on github.com,
// classic queue on GHES), the capacity-gated poll (poller.ts) that acquires jobs, and one
// JobReporter per job, held in the shared skeleton (../held-jobs.ts) that brings their JobEvents back.
// It never holds a job it cannot start. Stopping takes no new jobs but polls on while jobs are held
// (GitHub sends their cancellations as messages), lets them finish until the deadline, then cancels
// them and still completes them on GitHub.
import { deferred, type Service, type ServiceStatus } from "../../lifecycle/service.js";
import type { Slot } from "../../lifecycle/slots.js";
import { toError } from "../../lifecycle/to-error.js";
import type { JobBus } from "../../queue/bus.js";
import type { Logger } from "../../telemetry/log.js";
import { HeldJobs } from "../held-jobs.js";
import { LogMasker } from "../log-masker.js";
import { warnUnservedLabels } from "../unserved-labels.js";
import { RunnerTokens } from "./auth.js";
import { ClassicChannel } from "./classic-channel.js";
import { describeRunner, oauthCredentials, type Registration, usesBroker } from "./credentials.js";
import { RegistrationLostError, RunnerVersionDeprecatedError } from "./errors.js";
import { HttpClient } from "./http.js";
import { completeLostJob, type InFlightJob, inFlightJob, inFlightJobsFile, jobOfInFlight } from "./in-flight-jobs.js";
import { DEFAULT_CHANNEL_TIMINGS, type JobChannel } from "./job-channel.js";
import { Locations } from "./locations.js";
import { type CapacityGate, Poller, type PollerState, type PollTimings } from "./poller.js";
import { osDescription } from "./registration.js";
import { DEFAULT_RENEW_TIMINGS } from "./renewer.js";
import { JobReporter, type JobReporterTimings } from "./reporter.js";
import { RunServiceChannel } from "./run-service-channel.js";
import { BrokerSession, ClassicSession, type MessageSource, type SessionIdentity } from "./session.js";
import { describeJob, type GitHubJob, type JobFlow, toJobRequest } from "./to-job-request.js";
import type { AgentJobRequestMessage } from "./wire.js";

export interface GitHubRunnerTimings extends JobReporterTimings, PollTimings {
  /** Client timeout of one long poll; GitHub holds it ~50 s. */
  readonly pollTimeoutMs: number;
}

export const DEFAULT_TIMINGS: GitHubRunnerTimings = {
  renew: DEFAULT_RENEW_TIMINGS,
  channel: DEFAULT_CHANNEL_TIMINGS,
  reportIntervalMs: 500,
  cancelTimeoutMs: 60_000,
  finalFlushMs: 120_000,
  completeRetry: { baseMs: 5_000, maxMs: 30_000 },
  orchestratorSilenceMs: 50_000,
  pollErrors: { baseMs: 5_000, maxMs: 10_000 },
  acquireThrottle: { baseMs: 2_000, maxMs: 60_000 },
  sessionConflictRetryMs: 30_000,
  sessionConflictGiveUpMs: 4 * 60_000,
  pollTimeoutMs: 75_000,
};

export interface GitHubRunnerOptions {
  readonly registration: Registration;
  readonly bus: JobBus;
  /** Seals job secrets on the queue (the same key on every host). */
  readonly clusterKey: Buffer;
  readonly capacity: CapacityGate;
  /** The runner version advertised to GitHub (config github.runnerVersion). */
  readonly runnerVersion: string;
  /** gnomon's own version, for the User-Agent. */
  readonly gnomonVersion: string;
  readonly log: Logger;
  readonly timings?: Partial<GitHubRunnerTimings>;
  readonly fetch?: typeof fetch;
  /**
   * Where the jobs held right now are kept, so that the next process completes them on GitHub if
   * this one dies mid-job. Default: none.
   */
  readonly inFlightFile?: string;
  readonly onPollerState?: (s: PollerState) => void;
}

export function platformLabels(): { os: string; arch: string } {
  const os = process.platform === "darwin" ? "macOS" : process.platform === "win32" ? "Windows" : "Linux";
  const arch = { x64: "X64", arm64: "ARM64", arm: "ARM", ia32: "X86" }[process.arch as string] ?? "X64";
  return { os, arch };
}

/** The event stream name of a registration: stable across restarts, distinct per GitHub instance. */
export function replyToFor(reg: Registration): string {
  let host = "github";
  try {
    host = new URL(reg.settings.gitHubUrl || reg.settings.serverUrlV2 || reg.settings.serverUrl).host;
  } catch {
    // keep the generic name
  }
  return `github-${host}-${reg.settings.agentId}`;
}

export class GitHubRunner implements Service {
  readonly name = "github-runner";
  /** The bus stream this runner's job events come back on. */
  readonly replyTo: string;
  readonly #o: GitHubRunnerOptions;
  readonly #t: GitHubRunnerTimings;
  readonly #log: Logger;
  readonly #held: HeldJobs<JobReporter, InFlightJob>;
  readonly #http: HttpClient;
  readonly #identity: SessionIdentity;
  readonly #tokens: RunnerTokens;
  readonly #brokerTokens: RunnerTokens;
  #source!: MessageSource;
  #poller: Poller | undefined;
  /** Aborts when the runner takes no more work: polling, and ending what a previous process left. */
  readonly #polling = new AbortController();
  readonly #done = deferred<Error | undefined>();
  #started = false;
  #stopping = false;
  /** How an ephemeral (or JIT) registration was used up; GitHub does not give it another job. */
  #ephemeralEnd: EphemeralEnd | undefined;
  #locations: Locations | undefined;
  /** Set once `done` settled: how the runner ended. */
  #ended: { readonly error: Error | undefined } | undefined;

  /** The queue (runs-on of the JobRequests) this runner publishes to: its first label. */
  get queues(): readonly string[] {
    return [this.#o.registration.settings.labels[0] ?? "self-hosted"];
  }

  constructor(opts: GitHubRunnerOptions) {
    this.#o = opts;
    this.#t = { ...DEFAULT_TIMINGS, ...opts.timings };
    const reg = opts.registration;
    this.replyTo = replyToFor(reg);
    this.#log = opts.log.child({ forge: "github", runner: describeRunner(reg) });
    this.#held = new HeldJobs({
      bus: opts.bus,
      log: this.#log,
      inFlight: opts.inFlightFile ? inFlightJobsFile(opts.inFlightFile, this.#log) : undefined,
      jobIdOf: (job) => job.contractId,
    });
    const { os, arch } = platformLabels();
    this.#http = new HttpClient({
      userAgent: `GitHubActionsRunner-${os.toLowerCase()}-${arch.toLowerCase()}/${opts.runnerVersion} gnomon/${opts.gnomonVersion}`,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
    });
    this.#identity = {
      agentId: reg.settings.agentId,
      agentName: reg.settings.agentName,
      runnerVersion: opts.runnerVersion,
      osDescription: osDescription(),
      disableUpdate: true,
      os,
      arch,
      describe: describeRunner(reg),
    };
    this.#tokens = new RunnerTokens({
      creds: oauthCredentials(reg, false),
      key: reg.key,
      http: this.#http,
      runner: describeRunner(reg),
    });
    const v2 = oauthCredentials(reg, true);
    this.#brokerTokens =
      v2.authorizationUrl === oauthCredentials(reg, false).authorizationUrl
        ? this.#tokens
        : new RunnerTokens({ creds: v2, key: reg.key, http: this.#http, runner: describeRunner(reg) });
    void this.#done.promise.then((error) => {
      this.#ended = { error };
    });
  }

  #createSource(): MessageSource {
    const reg = this.#o.registration;
    const sessionOpts = { http: this.#http, identity: this.#identity, pollTimeoutMs: this.#t.pollTimeoutMs };
    return usesBroker(reg)
      ? new BrokerSession({ ...sessionOpts, tokens: this.#brokerTokens, brokerUrl: reg.settings.serverUrlV2 })
      : new ClassicSession({
          ...sessionOpts,
          tokens: this.#tokens,
          brokerTokens: this.#brokerTokens,
          locations: this.#tenantLocations(),
          poolId: reg.settings.poolId,
          key: reg.key,
        });
  }

  #createPoller(): Poller {
    return new Poller({
      source: this.#source,
      capacity: this.#o.capacity,
      timings: this.#t,
      http: this.#http,
      brokerTokens: this.#brokerTokens,
      runnerOS: this.#identity.os,
      ephemeral: this.#o.registration.settings.ephemeral,
      holding: () => this.#held.size,
      handOff: (message, flow, slot) => this.#handOff(message, flow, slot),
      cancel: (githubJobId, timeoutMs) => {
        const reporter = this.#held.reporters().find((r) => r.job.jobId === githubJobId);
        if (reporter) reporter.cancelFromGitHub(timeoutMs);
        else this.#log.debug({ jobId: githubJobId }, "cancellation for a job this runner does not hold");
      },
      invalidateTokens: () => {
        this.#tokens.invalidate();
        this.#brokerTokens.invalidate();
      },
      onJobLost: () => {
        this.#ephemeralEnd = "job-lost";
      },
      log: this.#log,
      onState: this.#o.onPollerState,
    });
  }

  get done(): Promise<Error | undefined> {
    return this.#done.promise;
  }

  status(): ServiceStatus {
    const reg = this.#o.registration;
    const where = reg.settings.gitHubUrl || reg.settings.serverUrl;
    const jobs = `${this.#held.size} job${this.#held.size === 1 ? "" : "s"}`;
    if (this.#ended) {
      const why =
        this.#ended.error?.message ?? (this.#ephemeralEnd ? "its ephemeral registration is used up" : "stopped");
      return { state: "stopped", detail: why };
    }
    if (this.#stopping) return { state: "stopping", detail: `taking no jobs; ${jobs} still running` };
    if (!this.#started) return { state: "starting", detail: `opening the message session of ${describeRunner(reg)}` };
    const outage = this.#poller?.outage;
    if (outage)
      return {
        state: "degraded",
        detail: `${outage.what} at ${where} fails since ${new Date(outage.since).toISOString()}: ${outage.error.message}`,
      };
    return { state: "ready", detail: `${describeRunner(reg)} listening for jobs at ${where}; ${jobs} running` };
  }

  /** Jobs held right now. */
  get heldJobs(): number {
    return this.#held.size;
  }

  /** True when an ephemeral (or JIT) runner has used up its registration: GitHub deletes it. */
  get finishedEphemeral(): boolean {
    return this.#ephemeralEnd !== undefined;
  }

  /** How the ephemeral registration was used up: its one job ran, or GitHub gave it to another runner. */
  get ephemeralEnd(): EphemeralEnd | undefined {
    return this.#ephemeralEnd;
  }

  /** The token exchanges made so far (each one a fresh JWT assertion). */
  get tokenExchanges(): number {
    return this.#tokens.exchanges + (this.#brokerTokens === this.#tokens ? 0 : this.#brokerTokens.exchanges);
  }

  #tenantLocations(): Locations {
    this.#locations ??= Locations.fallback(this.#o.registration.settings.serverUrl);
    return this.#locations;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const reg = this.#o.registration;
    if (!usesBroker(reg)) {
      this.#locations = await Locations.discover(this.#http, reg.settings.serverUrl, this.#polling.signal).catch(
        (err) => {
          this.#log.warn({ err: toError(err) }, "could not read the Actions service locations; using the known routes");
          return Locations.fallback(reg.settings.serverUrl);
        },
      );
    }
    const leftovers = await this.#held.leftovers();
    this.#source = this.#createSource();
    // A registration that is gone or a refused version should stop `run` at once, with its sentence.
    const first = await this.#source.open(this.#polling.signal).catch((err: unknown) => toError(err));
    if (first instanceof RegistrationLostError || first instanceof RunnerVersionDeprecatedError) {
      this.#done.resolve(first);
      throw first;
    }
    await this.#held.listen(this.replyTo);
    this.#log.info(
      { flow: usesBroker(reg) ? "broker" : "classic", labels: reg.settings.labels },
      first ? "github runner started; the session will be retried" : "github runner listening for jobs",
    );
    await warnUnservedLabels(this.#o.bus, this.queues, this.#log);
    if (leftovers.length > 0) void this.#endLeftovers(leftovers);
    this.#poller = this.#createPoller();
    if (first !== undefined) this.#poller.sessionFailed(first);
    if (this.#stopping) this.#poller.drain(); // stopped while starting
    void this.#poller.run(this.#polling.signal, first === undefined).then(
      () => this.#finish(undefined),
      (err: unknown) => this.#finish(toError(err)),
    );
  }

  /**
   * The two-phase stop: no new job at once, but the poll goes on while jobs are held (it brings
   * their cancellations); when the deadline aborts, the jobs still held are cancelled and completed.
   */
  async stop(deadline: AbortSignal): Promise<void> {
    if (!this.#started) {
      this.#done.resolve(undefined);
      return;
    }
    if (!this.#stopping) {
      this.#stopping = true;
      this.#log.info({ held: this.#held.size }, "github runner stopping: taking no new jobs");
      this.#poller?.drain();
      void this.#held.drain(deadline, "the gnomon runner was stopped before the job finished");
    }
    await this.#done.promise;
  }

  async #finish(err: Error | undefined): Promise<void> {
    this.#polling.abort();
    await this.#held.settled();
    const close = AbortSignal.timeout(30_000);
    await this.#source.close(close).catch((e: unknown) => {
      // An ephemeral runner's registration may already be gone (spec 5.5).
      if (!this.#o.registration.settings.ephemeral) this.#log.warn({ err: toError(e) }, "could not close the session");
    });
    await this.#held.close();
    if (err) this.#log.error({ err }, "github runner stopped");
    else this.#log.info("github runner stopped");
    this.#done.resolve(err);
  }

  #channelFor(job: GitHubJob): JobChannel {
    const reg = this.#o.registration;
    return job.flow === "run-service"
      ? new RunServiceChannel({ job, http: this.#http, timings: this.#t.channel, log: this.#log })
      : new ClassicChannel({
          job,
          http: this.#http,
          tokens: this.#tokens,
          locations: this.#tenantLocations(),
          hubLocations:
            job.serviceUrl.replace(/\/+$/, "") === reg.settings.serverUrl.replace(/\/+$/, "")
              ? this.#tenantLocations()
              : Locations.fallback(job.serviceUrl),
          poolId: reg.settings.poolId,
          workerName: reg.settings.agentName,
          timings: this.#t.channel,
        });
  }

  /**
   * Completes the jobs a previous process held when it stopped, and stops them in their VMs. A job
   * this process could not finish in time (it was stopped too) stays on disk for the next one.
   */
  #endLeftovers(leftovers: readonly InFlightJob[]): Promise<void> {
    return this.#held.endLeftovers(leftovers, async (entry) => {
      const job = jobOfInFlight(entry);
      const result = await completeLostJob(entry, {
        channel: this.#channelFor(job),
        signal: this.#polling.signal,
        log: this.#log,
        timings: this.#t,
      });
      return result === "aborted" ? "kept" : "ended";
    });
  }

  /** Starts reporting a job the poller acquired; false when it cannot be reported (the slot is released). */
  #handOff(message: AgentJobRequestMessage, flow: JobFlow, slot: Slot): boolean {
    const described = describeJob(message, flow);
    if (!described.ok) {
      this.#log.error({ reason: described.reason }, "cannot report on this job; leaving it to GitHub");
      slot.release();
      return false;
    }
    const job = described.job;
    const reg = this.#o.registration;
    const log = this.#log.child({ jobId: job.contractId, githubJobId: job.jobId, label: reg.settings.labels[0] });
    const reporter = new JobReporter({
      job,
      channel: this.#channelFor(job),
      bus: this.#o.bus,
      masker: new LogMasker(job.maskValues, job.maskPatterns),
      log,
      timings: this.#t,
      onProgress: (progress) => this.#held.remember(inFlightJob(job, progress)),
      toRequest: () =>
        toJobRequest(message, job, {
          instance: reg.settings.gitHubUrl || reg.settings.serverUrlV2 || reg.settings.serverUrl,
          runnerId: String(reg.settings.agentId),
          replyTo: this.replyTo,
          runsOn: reg.settings.labels[0] ?? "self-hosted",
          clusterKey: this.#o.clusterKey,
          now: new Date().toISOString(),
        }),
    });
    this.#held.hold(reporter, {
      entry: inFlightJob(job),
      slot,
      keep: (end) => {
        const outcome = reporter.report.outcome;
        if (end !== "cut-short" || !outcome) return undefined;
        // The lock still holds: the next process completes the job with the result it had.
        log.warn("the runner stopped before GitHub accepted the job's completion; the next start completes it");
        const { result, outputs, reason } = outcome;
        return inFlightJob(job, reporter.report.progress(), { result, outputs, reason });
      },
      ended: (end) => {
        log.info({ result: reporter.report.outcome?.result, end }, "github job done");
        if (reg.settings.ephemeral) {
          this.#ephemeralEnd = "job-done";
          this.#polling.abort();
        }
        // Poll again at once with the new status, so GitHub learns the runner is free (a drain ends here).
        else this.#poller?.lookAgain();
      },
    });
    log.info({ flow, name: job.displayName }, "github job acquired");
    return true;
  }
}

/** job-done: the runner's one job ran; job-lost: GitHub gave it to another runner (or dropped it) first. */
export type EphemeralEnd = "job-done" | "job-lost";

export function createGitHubRunner(opts: GitHubRunnerOptions): GitHubRunner {
  return new GitHubRunner(opts);
}
