// The github-runner role as a Service: one registration, its message session (broker on github.com,
// classic queue on GHES), a capacity-gated poll loop that acquires jobs and hands them to HeldJobs,
// and the bus subscription that brings their JobEvents back. It never holds a job it cannot start.
import { setTimeout as sleep } from "node:timers/promises";
import { issuesText } from "../../contract/codec.js";
import { pause } from "../../lifecycle/abort.js";
import { type Intervals, nextDelayMs } from "../../lifecycle/backoff.js";
import { deferred, type Service } from "../../lifecycle/service.js";
import type { Slot } from "../../lifecycle/slots.js";
import { toError } from "../../lifecycle/to-error.js";
import type { JobBus, Subscription } from "../../queue/bus.js";
import type { Logger } from "../../telemetry/log.js";
import { redactUrl } from "../../telemetry/redact.js";
import type { InFlightFile } from "../in-flight-file.js";
import { LogMasker } from "../log-masker.js";
import { OrphanJobs } from "../orphan-jobs.js";
import { warnUnservedLabels } from "../unserved-labels.js";
import { RunnerTokens, sendAuthed } from "./auth.js";
import { ClassicChannel } from "./classic-channel.js";
import { describeRunner, oauthCredentials, type Registration, usesBroker } from "./credentials.js";
import { GitHubApiError, RegistrationLostError, RunnerVersionDeprecatedError, SessionConflictError } from "./errors.js";
import { HeldJob, type HeldJobTimings } from "./held-job.js";
import { completeLostJob, type HeldJobRecord, heldJobRecord, heldJobsFile, jobOfRecord } from "./held-jobs.js";
import { apiError, type HttpCall, HttpClient } from "./http.js";
import { DEFAULT_CHANNEL_TIMINGS, type JobChannel } from "./job-channel.js";
import { Locations } from "./locations.js";
import { osDescription } from "./registration.js";
import { DEFAULT_RENEW_TIMINGS } from "./renewer.js";
import { RunServiceChannel } from "./run-service-channel.js";
import {
  BrokerSession,
  ClassicSession,
  type MessageSource,
  type ReceivedMessage,
  type RunnerStatus,
  SessionExpiredError,
  type SessionIdentity,
} from "./session.js";
import { describeJob, type GitHubJob, type JobFlow, toJobRequest } from "./to-job-request.js";
import { joinUrl } from "./urls.js";
import { AgentJobRequestMessage, BrokerMigrationMessage, JobCancelMessage, RunnerJobRequestRef } from "./wire.js";

/** Where capacity comes from: the runner's own slot pool now, the fleet's free VMs for its label later. */
export interface CapacityGate {
  /** Waits for capacity; rejects with the signal's reason when it aborts first. */
  acquire(signal: AbortSignal): Promise<Slot>;
  /** Capacity now, or undefined. */
  tryAcquire(): Slot | undefined;
}

export interface GitHubRunnerTimings extends HeldJobTimings {
  /**
   * Backoff after failed polls. The official runner waits 15–30 s, then 30–60 s; capped at 10 s
   * here so that a GitHub that is back is polled again, and queued jobs start, within seconds.
   */
  readonly pollErrors: Intervals;
  /** Backoff after an acquire GitHub refused with 404/409/422. */
  readonly acquireThrottle: Intervals;
  /** Retry interval and give-up time while another process holds the session (official: 30 s, 4 min). */
  readonly sessionConflictRetryMs: number;
  readonly sessionConflictGiveUpMs: number;
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
  readonly #orphans: OrphanJobs;
  readonly #heldJobs: InFlightFile<HeldJobRecord> | undefined;
  readonly #http: HttpClient;
  readonly #identity: SessionIdentity;
  readonly #tokens: RunnerTokens;
  readonly #brokerTokens: RunnerTokens;
  #source!: MessageSource;
  readonly #held = new Map<string, HeldJob>();
  readonly #polling = new AbortController();
  readonly #done = deferred<Error | undefined>();
  #currentPoll: AbortController | undefined;
  #events: Subscription | undefined;
  #started = false;
  #stopping = false;
  #jobsTaken = 0;
  /** How an ephemeral (or JIT) registration was used up; GitHub does not give it another job. */
  #ephemeralEnd: EphemeralEnd | undefined;
  /** Completing the jobs a previous process left; awaited before the runner counts as stopped. */
  #leftovers: Promise<void> = Promise.resolve();
  #locations: Locations | undefined;

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
    this.#orphans = new OrphanJobs(opts.bus, this.#log);
    this.#heldJobs = opts.inFlightFile ? heldJobsFile(opts.inFlightFile, this.#log) : undefined;
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

  get done(): Promise<Error | undefined> {
    return this.#done.promise;
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

  /** An ephemeral registration that has been handed its one job: GitHub deletes it once that job ends. */
  #usedEphemeral(): boolean {
    return this.#o.registration.settings.ephemeral && (this.#jobsTaken > 0 || this.#ephemeralEnd !== undefined);
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
    const leftovers = (await this.#heldJobs?.leftovers()) ?? [];
    this.#source = this.#createSource();
    // A registration that is gone or a refused version should stop `run` at once, with its sentence.
    const first = await this.#openSession().catch((err: unknown) => toError(err));
    if (first instanceof RegistrationLostError || first instanceof RunnerVersionDeprecatedError) {
      this.#done.resolve(first);
      throw first;
    }
    this.#events = await this.#o.bus.consumeEvents(this.replyTo, (d) => {
      const job = this.#held.get(d.event.jobId);
      if (job) job.onEvent(d);
      else {
        // A job this process does not hold: the process that took it died. Stop it in its VM.
        this.#orphans.onEvent(d.event);
        void d.ack().catch(() => {});
      }
    });
    this.#log.info(
      { flow: usesBroker(reg) ? "broker" : "classic", labels: reg.settings.labels },
      first ? "github runner started; the session will be retried" : "github runner listening for jobs",
    );
    await warnUnservedLabels(this.#o.bus, this.queues, this.#log);
    if (leftovers.length > 0) this.#leftovers = this.#endLeftovers(leftovers);
    void this.#pollLoop(first === undefined).then(
      () => this.#finish(undefined),
      (err: unknown) => this.#finish(toError(err)),
    );
  }

  async stop(deadline: AbortSignal): Promise<void> {
    if (!this.#started) {
      this.#done.resolve(undefined);
      return;
    }
    if (!this.#stopping) {
      this.#stopping = true;
      this.#log.info({ held: this.#held.size }, "github runner stopping: taking no new jobs");
      if (this.#held.size === 0) this.#polling.abort();
      const onDeadline = () => {
        for (const job of this.#held.values()) job.shutdown("the gnomon runner was stopped before the job finished");
      };
      if (deadline.aborted) onDeadline();
      else deadline.addEventListener("abort", onDeadline, { once: true });
    }
    await this.#done.promise;
  }

  async #finish(err: Error | undefined): Promise<void> {
    this.#polling.abort();
    await Promise.all([...this.#held.values()].map((j) => j.run()));
    await this.#leftovers;
    await this.#heldJobs?.settled();
    const close = AbortSignal.timeout(30_000);
    await this.#source.close(close).catch((e: unknown) => {
      // An ephemeral runner's registration may already be gone (spec 5.5).
      if (!this.#o.registration.settings.ephemeral) this.#log.warn({ err: toError(e) }, "could not close the session");
    });
    await this.#events?.cancel().catch(() => {});
    if (err) this.#log.error({ err }, "github runner stopped");
    else this.#log.info("github runner stopped");
    this.#done.resolve(err);
  }

  async #openSession(): Promise<void> {
    await this.#source.open(this.#polling.signal);
  }

  /** Opens the session, riding out conflicts (another process's stale session) for a while. */
  async #ensureSession(): Promise<void> {
    const conflictSince = this.#now();
    let streak = 0;
    for (;;) {
      try {
        await this.#openSession();
        this.#log.info({ sessionId: this.#source.sessionId }, "message session opened");
        return;
      } catch (err) {
        this.#polling.signal.throwIfAborted();
        if (err instanceof RegistrationLostError || err instanceof RunnerVersionDeprecatedError) throw err;
        if (err instanceof SessionConflictError) {
          if (this.#now() - conflictSince > this.#t.sessionConflictGiveUpMs) throw err;
          this.#log.warn("another session is open for this runner; retrying");
          await sleep(this.#t.sessionConflictRetryMs, undefined, { signal: this.#polling.signal });
          continue;
        }
        streak += 1;
        if (streak === 1) this.#log.warn({ err: toError(err) }, "could not open the message session; retrying");
        await sleep(nextDelayMs(this.#t.pollErrors, streak), undefined, { signal: this.#polling.signal });
      }
    }
  }

  #now(): number {
    return Date.now();
  }

  /** True while the loop should go on: not stopped, or stopping with jobs still held (cancellations may come). */
  #keepPolling(): boolean {
    if (this.#polling.signal.aborted) return false;
    if (this.#ephemeralEnd !== undefined) return false;
    if (this.#stopping && this.#held.size === 0) return false;
    return true;
  }

  async #pollLoop(sessionOpen: boolean): Promise<void> {
    let open = sessionOpen;
    let streak = 0;
    let acquireStreak = 0;
    try {
      while (this.#keepPolling()) {
        if (!open) {
          await this.#ensureSession();
          open = true;
        }
        const status: RunnerStatus = this.#held.size > 0 ? "Busy" : "Online";
        let slot: Slot | undefined;
        if (status === "Online") {
          if (this.#stopping || this.#usedEphemeral()) break;
          slot = await this.#o.capacity.acquire(this.#polling.signal);
        }
        const poll = new AbortController();
        this.#currentPoll = poll;
        const signal = AbortSignal.any([this.#polling.signal, poll.signal]);
        let msg: ReceivedMessage | undefined;
        try {
          msg = await this.#source.poll(status, signal);
        } catch (err) {
          slot?.release();
          if (this.#polling.signal.aborted) break;
          if (poll.signal.aborted) continue; // status changed: poll again with the new one
          if (err instanceof SessionExpiredError) {
            this.#log.info("the message session expired; opening a new one");
            open = false;
            continue;
          }
          if (err instanceof RegistrationLostError || err instanceof RunnerVersionDeprecatedError) throw err;
          if (err instanceof SessionConflictError) {
            open = false;
            continue;
          }
          streak += 1;
          if (streak === 1)
            this.#log.warn({ err: toError(err) }, "polling GitHub for jobs failed; retrying with backoff");
          await pause(nextDelayMs(this.#t.pollErrors, streak), this.#polling.signal);
          continue;
        } finally {
          this.#currentPoll = undefined;
        }
        if (streak > 0) this.#log.info("polling GitHub works again");
        streak = 0;
        if (!msg) {
          slot?.release();
          continue;
        }
        const outcome = await this.#handle(msg, status, slot);
        if (outcome === "throttle") {
          acquireStreak += 1;
          await pause(nextDelayMs(this.#t.acquireThrottle, acquireStreak), this.#polling.signal);
        } else if (outcome === "job") acquireStreak = 0;
        else if (outcome === "shutdown") break;
      }
    } catch (err) {
      if (err instanceof RegistrationLostError && this.#usedEphemeral()) {
        // GitHub deletes an ephemeral registration when its job completes, and may answer a poll
        // with that before this process has seen the completion's answer: the expected end, not a
        // lost registration. A job still held completes with its own token.
        this.#log.info(
          { held: this.#held.size },
          "github removed the ephemeral registration after its job; no more polling",
        );
        return;
      }
      if (this.#polling.signal.aborted && !(err instanceof RegistrationLostError)) return;
      throw err;
    }
  }

  /** Handles one message; the slot (if any) is consumed by a started job or released. */
  async #handle(
    msg: ReceivedMessage,
    status: RunnerStatus,
    slot: Slot | undefined,
  ): Promise<"job" | "throttle" | "shutdown" | "other"> {
    const type = msg.messageType.toLowerCase();
    let keepMessage = false;
    let consumed = false;
    try {
      switch (type) {
        case "runnerjobrequest":
        case "pipelineagentjobrequest": {
          const canTake = !this.#stopping && !this.#usedEphemeral();
          const take = canTake ? (slot ?? this.#o.capacity.tryAcquire()) : undefined;
          if (!take) {
            // Leave the job to GitHub, which gives it to another runner (official: the message is not deleted).
            keepMessage = true;
            this.#log.info("a job arrived while this runner has no free capacity; leaving it to GitHub");
            return "other";
          }
          const result =
            type === "runnerjobrequest" ? await this.#acquireJob(msg, status) : parseJobMessage(msg.body, "classic");
          if (result === "gone" && this.#o.registration.settings.ephemeral) {
            // GitHub used the registration up with this assignment (actions/runner#4617): it never
            // gives this runner another job, so polling on would only keep a runner nobody can use.
            if (take !== slot) take.release();
            this.#ephemeralEnd = "job-lost";
            this.#log.warn(
              "github gave this ephemeral runner's one job to another runner or dropped it; the registration is used up, so the runner ends",
            );
            return "shutdown";
          }
          if (result === "skip" || result === "gone") {
            if (take !== slot) take.release();
            return "throttle";
          }
          if (!result.ok) {
            if (take !== slot) take.release();
            this.#log.error({ reason: result.reason }, "could not read a job message from GitHub; skipping it");
            return "other";
          }
          consumed = true;
          if (take !== slot) slot?.release();
          this.#startJob(result.message, result.flow, take);
          return "job";
        }
        case "jobcancellation": {
          const parsed = JobCancelMessage.safeParse(safeJson(msg.body));
          if (!parsed.success) return "other";
          const id = parsed.data.jobId.toLowerCase();
          const job = [...this.#held.values()].find((j) => j.job.jobId === id);
          if (job) job.cancelFromGitHub(parsed.data.timeout ?? undefined);
          else this.#log.debug({ jobId: id }, "cancellation for a job this runner does not hold");
          return "other";
        }
        case "brokermigration": {
          keepMessage = true; // replaced by what the broker returns (spec 5.4)
          const parsed = BrokerMigrationMessage.safeParse(safeJson(msg.body));
          if (!parsed.success || !this.#source.pollBroker) return "other";
          const next = await this.#source.pollBroker(parsed.data.brokerBaseUrl, status, this.#polling.signal);
          if (!next || next.messageType.toLowerCase() === "brokermigration") return "other";
          consumed = true;
          return await this.#handle(next, status, slot);
        }
        case "forcetokenrefresh":
          this.#tokens.invalidate();
          this.#brokerTokens.invalidate();
          return "other";
        case "runnershutdown":
          keepMessage = true;
          this.#log.info("github asked this runner to shut down");
          return "shutdown";
        case "agentrefresh":
        case "runnerrefresh":
          this.#log.info(
            "github offered a runner update; gnomon does not update itself, so keep github.runnerVersion current instead",
          );
          return "other";
        default:
          this.#log.debug({ messageType: msg.messageType }, "ignoring a message type gnomon does not handle");
          return "other";
      }
    } finally {
      if (!consumed) slot?.release();
      if (!keepMessage)
        await this.#source.done(msg, AbortSignal.timeout(30_000)).catch((err: unknown) => {
          this.#log.warn({ err: toError(err) }, "could not delete a handled message");
        });
    }
  }

  /** The job message, "gone" when GitHub says the assignment is no longer this runner's (404/409), or "skip". */
  async #acquireJob(msg: ReceivedMessage, status: RunnerStatus): Promise<ParsedJob | "gone" | "skip"> {
    const ref = RunnerJobRequestRef.safeParse(safeJson(msg.body));
    if (!ref.success) return { ok: false, reason: "the job reference is not readable" };
    const r = ref.data;
    if (r.should_acknowledge) {
      try {
        await this.#source.acknowledge(r.runner_request_id, status, this.#polling.signal);
      } catch (err) {
        this.#log.debug({ err: toError(err) }, "best-effort acknowledge of the job request failed");
      }
    }
    if (!r.run_service_url)
      return {
        ok: false,
        reason: "the job reference names no run service (an early GitHub rollout stage gnomon does not support)",
      };
    const call: HttpCall = {
      what: "acquire the job",
      method: "POST",
      url: joinUrl(r.run_service_url, "acquirejob"),
      json: {
        jobMessageId: r.runner_request_id,
        runnerOS: this.#identity.os,
        ...(r.billing_owner_id ? { billingOwnerId: r.billing_owner_id } : {}),
      },
      timeoutMs: 60_000,
      signal: this.#polling.signal,
    };
    try {
      const res = await sendAuthed(this.#http, this.#brokerTokens, call);
      if (res.status === 404 || res.status === 409 || res.status === 422) {
        this.#log.debug({ status: res.status, url: redactUrl(res.url) }, "job already taken or gone; skipping it");
        return res.status === 422 ? "skip" : "gone";
      }
      if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
      return parseJobMessage(res.text, "run-service");
    } catch (err) {
      if (err instanceof GitHubApiError || !this.#polling.signal.aborted)
        this.#log.warn({ err: toError(err) }, "could not acquire a job; skipping it");
      return "skip";
    }
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
   * Completes the jobs a previous process held when it stopped, and stops them in their VMs. Each
   * stays in the file until it is dealt with, so a job this process could not finish in time (it
   * was stopped too) is still there for the next one.
   */
  async #endLeftovers(leftovers: readonly HeldJobRecord[]): Promise<void> {
    for (const record of leftovers) void this.#heldJobs?.add(record);
    await Promise.all(
      leftovers.map(async (record) => {
        const job = jobOfRecord(record);
        this.#orphans.stop(job.contractId);
        const result = await completeLostJob(record, {
          channel: this.#channelFor(job),
          signal: this.#polling.signal,
          log: this.#log,
          timings: this.#t,
        });
        if (result !== "aborted") await this.#heldJobs?.remove(record.contractId);
      }),
    );
  }

  #startJob(message: AgentJobRequestMessage, flow: JobFlow, slot: Slot): void {
    const described = describeJob(message, flow);
    if (!described.ok) {
      this.#log.error({ reason: described.reason }, "cannot report on this job; leaving it to GitHub");
      slot.release();
      return;
    }
    const job = described.job;
    const reg = this.#o.registration;
    const log = this.#log.child({ jobId: job.contractId, githubJobId: job.jobId, label: reg.settings.labels[0] });
    const masker = new LogMasker(job.maskValues, job.maskPatterns);
    const channel = this.#channelFor(job);
    const held = new HeldJob({
      job,
      channel,
      bus: this.#o.bus,
      masker,
      log,
      timings: this.#t,
      onProgress: (progress) => void this.#heldJobs?.add(heldJobRecord(job, progress)),
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
    this.#held.set(held.id, held);
    void this.#heldJobs?.add(heldJobRecord(job));
    this.#jobsTaken += 1;
    log.info({ flow, name: job.displayName }, "github job acquired");
    void held.run().then((end) => {
      this.#held.delete(held.id);
      this.#orphans.ended(held.id, held.cancelReason);
      const outcome = held.report.outcome;
      if (end === "cut-short" && outcome) {
        // The lock still holds: the next process completes the job with the result it had.
        const { result, outputs, reason } = outcome;
        void this.#heldJobs?.add(heldJobRecord(job, held.report.progress(), { result, outputs, reason }));
        log.warn("the runner stopped before GitHub accepted the job's completion; the next start completes it");
      } else void this.#heldJobs?.remove(held.id);
      slot.release();
      log.info({ result: outcome?.result, end }, "github job done");
      if (reg.settings.ephemeral) {
        this.#ephemeralEnd = "job-done";
        this.#polling.abort();
      } else if (this.#stopping && this.#held.size === 0) this.#polling.abort();
      // Poll again at once with the new status, so GitHub learns the runner is free.
      this.#currentPoll?.abort();
    });
  }
}

type ParsedJob = { ok: true; message: AgentJobRequestMessage; flow: JobFlow } | { ok: false; reason: string };

/** job-done: the runner's one job ran; job-lost: GitHub gave it to another runner (or dropped it) first. */
export type EphemeralEnd = "job-done" | "job-lost";

function parseJobMessage(body: string, flow: JobFlow): ParsedJob {
  const parsed = AgentJobRequestMessage.safeParse(safeJson(body));
  if (!parsed.success) {
    return { ok: false, reason: issuesText(parsed.error, 1) };
  }
  return { ok: true, message: parsed.data, flow };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch {
    return undefined;
  }
}

export function createGitHubRunner(opts: GitHubRunnerOptions): GitHubRunner {
  return new GitHubRunner(opts);
}
