// The capacity-gated message poll of a GitHub runner, Forgejo's poller.ts for GitHub: an Online poll
// (the one that may bring a job) only after taking room for a job, a Busy poll while jobs are held
// (it brings their cancellations), each message handled (a job acquired and handed off at once,
// never one it cannot start). The session is reopened when it expires or is taken over, errors back
// off with jitter, an outage is logged when it starts and when it ends, and fatal errors end the
// loop. What happens to a job once handed off is the runner's.
import { setTimeout as sleep } from "node:timers/promises";
import { issuesText } from "../../contract/codec.js";
import { pause } from "../../lifecycle/abort.js";
import { type Intervals, nextDelayMs } from "../../lifecycle/backoff.js";
import type { Slot } from "../../lifecycle/slots.js";
import { toError } from "../../lifecycle/to-error.js";
import type { Logger } from "../../telemetry/log.js";
import { redactUrl } from "../../telemetry/redact.js";
import { Outage } from "../outage.js";
import { type RunnerTokens, sendAuthed } from "./auth.js";
import { GitHubApiError, RegistrationLostError, RunnerVersionDeprecatedError, SessionConflictError } from "./errors.js";
import { apiError, type HttpCall, type HttpClient } from "./http.js";
import { type MessageSource, type ReceivedMessage, type RunnerStatus, SessionExpiredError } from "./session.js";
import type { JobFlow } from "./to-job-request.js";
import { joinUrl } from "./urls.js";
import { AgentJobRequestMessage, BrokerMigrationMessage, JobCancelMessage, RunnerJobRequestRef } from "./wire.js";

/** Where capacity comes from: the runner's own slot pool now, the fleet's free VMs for its label later. */
export interface CapacityGate {
  /** Waits for capacity; rejects with the signal's reason when it aborts first. */
  acquire(signal: AbortSignal): Promise<Slot>;
  /** Capacity now, or undefined. */
  tryAcquire(): Slot | undefined;
}

export interface PollTimings {
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
}

export type PollerState = "opening-session" | "waiting-for-slot" | "polling" | "waiting" | "stopped";

export interface PollerOptions {
  readonly source: MessageSource;
  readonly capacity: CapacityGate;
  readonly timings: PollTimings;
  /** Acquires jobs on the run service with the broker's token. */
  readonly http: HttpClient;
  readonly brokerTokens: RunnerTokens;
  /** The runner's OS as acquirejob wants it (`Linux`). */
  readonly runnerOS: string;
  /** An ephemeral (or JIT) registration: GitHub hands it one job in its life. */
  readonly ephemeral: boolean;
  /** Jobs the runner holds now: Busy while there are any. */
  readonly holding: () => number;
  /**
   * Called once per job, with the slot it holds; the slot must be released when the job is done.
   * False: the runner could not take the job (and released the slot).
   */
  readonly handOff: (message: AgentJobRequestMessage, flow: JobFlow, slot: Slot) => boolean;
  /** GitHub cancelled the job with this GitHub job id (JobCancellation), with the timeout it gives. */
  readonly cancel: (githubJobId: string, timeoutMs: number | undefined) => void;
  /** GitHub asked for fresh tokens (ForceTokenRefresh). */
  readonly invalidateTokens: () => void;
  /** GitHub gave an ephemeral runner's one job to another runner: the registration is used up. */
  readonly onJobLost: () => void;
  readonly log: Logger;
  readonly onState?: (s: PollerState) => void;
  readonly random?: () => number;
}

/** What one poll brought. */
type Outcome =
  | { readonly kind: "message"; readonly message: ReceivedMessage }
  | { readonly kind: "empty" }
  /** The held jobs changed while the poll waited: poll again with the new status. */
  | { readonly kind: "look-again" }
  /** The session expired or another process took it over: open a new one. */
  | { readonly kind: "session-lost" }
  | { readonly kind: "transient"; readonly error: Error }
  | { readonly kind: "fatal"; readonly error: Error }
  | { readonly kind: "stopped" };

/** What handling a message leads to. */
type Handled = "job" | "throttle" | "shutdown" | "other";

type ParsedJob = { ok: true; message: AgentJobRequestMessage; flow: JobFlow } | { ok: false; reason: string };

export class Poller {
  readonly #o: PollerOptions;
  /** Ends the loop from inside: a drain with no job left. */
  readonly #quit = new AbortController();
  #currentPoll: AbortController | undefined;
  #draining = false;
  #jobsTaken = 0;
  #jobLost = false;
  readonly #outage: Outage;
  /** Opening the message session failing since, with the latest error; undefined while it works. */
  #sessionOutage: { readonly since: number; readonly error: Error } | undefined;

  constructor(options: PollerOptions) {
    this.#o = options;
    this.#outage = new Outage(options.log, {
      failing: "polling GitHub for jobs failed; retrying with backoff",
      back: "polling GitHub works again",
    });
  }

  /** What fails right now, for the runner's status(): opening the session, or polling; undefined while both work. */
  get outage(): { readonly what: string; readonly since: number; readonly error: Error } | undefined {
    if (this.#sessionOutage) return { what: "opening the message session", ...this.#sessionOutage };
    const polling = this.#outage.current;
    return polling ? { what: "polling for jobs", ...polling } : undefined;
  }

  /** The runner's own first attempt to open the session failed (this poller opens it again). */
  sessionFailed(err: unknown): void {
    this.#sessionOutage ??= { since: Date.now(), error: toError(err) };
  }

  /** The held jobs changed: poll again at once with the new status, so GitHub learns the runner is free. */
  lookAgain(): void {
    if (this.#draining && this.#o.holding() === 0) this.#quit.abort();
    else this.#currentPoll?.abort();
  }

  /**
   * Takes no new job from now on, and ends once no job is held: until then it polls on, because
   * GitHub sends the cancellations of held jobs as messages.
   */
  drain(): void {
    this.#draining = true;
    this.lookAgain();
  }

  /**
   * Runs until `signal` aborts, a drain ends, GitHub asks the runner to shut down or an ephemeral
   * registration is used up (resolves), or a fatal error (rejects with it). `sessionOpen`: the
   * caller opened the session already.
   */
  async run(signal: AbortSignal, sessionOpen: boolean): Promise<void> {
    const stop = AbortSignal.any([signal, this.#quit.signal]);
    let open = sessionOpen;
    let acquireStreak = 0;
    try {
      while (this.#keepPolling(stop)) {
        if (!open) {
          this.#o.onState?.("opening-session");
          await this.#ensureSession(stop);
          open = true;
        }
        const status: RunnerStatus = this.#o.holding() > 0 ? "Busy" : "Online";
        let slot: Slot | undefined;
        if (status === "Online") {
          if (this.#draining || this.#usedUp()) break;
          this.#o.onState?.("waiting-for-slot");
          slot = await this.#o.capacity.acquire(stop);
        }
        this.#o.onState?.("polling");
        const got = await this.#pollOnce(status, stop);
        if (got.kind !== "message") slot?.release();
        switch (got.kind) {
          case "stopped":
            return;
          case "fatal":
            throw got.error;
          case "look-again":
            continue;
          case "session-lost":
            open = false;
            continue;
          case "transient":
            this.#outage.failed(got.error);
            this.#o.onState?.("waiting");
            await pause(nextDelayMs(this.#o.timings.pollErrors, this.#outage.streak, this.#o.random), stop);
            continue;
          case "empty":
            this.#outage.recovered();
            continue;
          case "message": {
            this.#outage.recovered();
            const handled = await this.#handle(got.message, status, slot, stop);
            if (handled === "shutdown") return;
            if (handled === "job") acquireStreak = 0;
            else if (handled === "throttle") {
              acquireStreak += 1;
              this.#o.onState?.("waiting");
              await pause(nextDelayMs(this.#o.timings.acquireThrottle, acquireStreak, this.#o.random), stop);
            }
          }
        }
      }
    } catch (err) {
      if (err instanceof RegistrationLostError && this.#usedUp()) {
        // GitHub deletes an ephemeral registration when its job completes, and may answer a poll
        // with that before this process has seen the completion's answer: the expected end, not a
        // lost registration. A job still held completes with its own token.
        this.#o.log.info(
          { held: this.#o.holding() },
          "github removed the ephemeral registration after its job; no more polling",
        );
        return;
      }
      if (stop.aborted && !(err instanceof RegistrationLostError)) return;
      throw err;
    } finally {
      this.#o.onState?.("stopped");
    }
  }

  /** True while the loop should go on: not stopped, or draining with jobs still held (cancellations may come). */
  #keepPolling(stop: AbortSignal): boolean {
    if (stop.aborted || this.#jobLost) return false;
    return !(this.#draining && this.#o.holding() === 0);
  }

  /** An ephemeral registration that has been handed its one job: GitHub deletes it once that job ends. */
  #usedUp(): boolean {
    return this.#o.ephemeral && (this.#jobsTaken > 0 || this.#jobLost);
  }

  /** Opens the session, riding out conflicts (another process's stale session) for a while. */
  async #ensureSession(stop: AbortSignal): Promise<void> {
    const { source, timings, log } = this.#o;
    const conflictSince = Date.now();
    let streak = 0;
    for (;;) {
      try {
        await source.open(stop);
        this.#sessionOutage = undefined;
        log.info({ sessionId: source.sessionId }, "message session opened");
        return;
      } catch (err) {
        stop.throwIfAborted();
        if (err instanceof RegistrationLostError || err instanceof RunnerVersionDeprecatedError) throw err;
        if (err instanceof SessionConflictError) {
          if (Date.now() - conflictSince > timings.sessionConflictGiveUpMs) throw err;
          log.warn("another session is open for this runner; retrying");
          await sleep(timings.sessionConflictRetryMs, undefined, { signal: stop });
          continue;
        }
        streak += 1;
        this.#sessionOutage = { since: this.#sessionOutage?.since ?? Date.now(), error: toError(err) };
        if (streak === 1) log.warn({ err: toError(err) }, "could not open the message session; retrying");
        await sleep(nextDelayMs(timings.pollErrors, streak, this.#o.random), undefined, { signal: stop });
      }
    }
  }

  /** One long poll; lookAgain() cuts it short. */
  async #pollOnce(status: RunnerStatus, stop: AbortSignal): Promise<Outcome> {
    const poll = new AbortController();
    this.#currentPoll = poll;
    try {
      const message = await this.#o.source.poll(status, AbortSignal.any([stop, poll.signal]));
      return message ? { kind: "message", message } : { kind: "empty" };
    } catch (err) {
      if (stop.aborted) return { kind: "stopped" };
      if (poll.signal.aborted) return { kind: "look-again" };
      if (err instanceof SessionExpiredError) {
        this.#o.log.info("the message session expired; opening a new one");
        return { kind: "session-lost" };
      }
      if (err instanceof RegistrationLostError || err instanceof RunnerVersionDeprecatedError)
        return { kind: "fatal", error: err };
      if (err instanceof SessionConflictError) return { kind: "session-lost" };
      return { kind: "transient", error: toError(err) };
    } finally {
      this.#currentPoll = undefined;
    }
  }

  /** Handles one message; the slot (if any) is consumed by a job handed off, or released. */
  async #handle(
    msg: ReceivedMessage,
    status: RunnerStatus,
    slot: Slot | undefined,
    stop: AbortSignal,
  ): Promise<Handled> {
    const o = this.#o;
    const type = msg.messageType.toLowerCase();
    let keepMessage = false;
    let consumed = false;
    try {
      switch (type) {
        case "runnerjobrequest":
        case "pipelineagentjobrequest": {
          const canTake = !this.#draining && !this.#usedUp();
          const take = canTake ? (slot ?? o.capacity.tryAcquire()) : undefined;
          if (!take) {
            // Leave the job to GitHub, which gives it to another runner (official: the message is not deleted).
            keepMessage = true;
            o.log.info("a job arrived while this runner has no free capacity; leaving it to GitHub");
            return "other";
          }
          const result =
            type === "runnerjobrequest"
              ? await this.#acquireJob(msg, status, stop)
              : parseJobMessage(msg.body, "classic");
          if (result === "gone" && o.ephemeral) {
            // GitHub used the registration up with this assignment (actions/runner#4617): it never
            // gives this runner another job, so polling on would only keep a runner nobody can use.
            if (take !== slot) take.release();
            this.#jobLost = true;
            o.onJobLost();
            o.log.warn(
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
            o.log.error({ reason: result.reason }, "could not read a job message from GitHub; skipping it");
            return "other";
          }
          consumed = true;
          if (take !== slot) slot?.release();
          if (o.handOff(result.message, result.flow, take)) this.#jobsTaken += 1;
          return "job";
        }
        case "jobcancellation": {
          const parsed = JobCancelMessage.safeParse(safeJson(msg.body));
          if (!parsed.success) return "other";
          o.cancel(parsed.data.jobId.toLowerCase(), parsed.data.timeout ?? undefined);
          return "other";
        }
        case "brokermigration": {
          keepMessage = true; // replaced by what the broker returns (spec 5.4)
          const parsed = BrokerMigrationMessage.safeParse(safeJson(msg.body));
          if (!parsed.success || !o.source.pollBroker) return "other";
          const next = await o.source.pollBroker(parsed.data.brokerBaseUrl, status, stop);
          if (!next || next.messageType.toLowerCase() === "brokermigration") return "other";
          consumed = true;
          return await this.#handle(next, status, slot, stop);
        }
        case "forcetokenrefresh":
          o.invalidateTokens();
          return "other";
        case "runnershutdown":
          keepMessage = true;
          o.log.info("github asked this runner to shut down");
          return "shutdown";
        case "agentrefresh":
        case "runnerrefresh":
          o.log.info(
            "github offered a runner update; gnomon does not update itself, so keep github.runnerVersion current instead",
          );
          return "other";
        default:
          o.log.debug({ messageType: msg.messageType }, "ignoring a message type gnomon does not handle");
          return "other";
      }
    } finally {
      if (!consumed) slot?.release();
      if (!keepMessage)
        await o.source.done(msg, AbortSignal.timeout(30_000)).catch((err: unknown) => {
          o.log.warn({ err: toError(err) }, "could not delete a handled message");
        });
    }
  }

  /** The job message, "gone" when GitHub says the assignment is no longer this runner's (404/409), or "skip". */
  async #acquireJob(
    msg: ReceivedMessage,
    status: RunnerStatus,
    stop: AbortSignal,
  ): Promise<ParsedJob | "gone" | "skip"> {
    const o = this.#o;
    const ref = RunnerJobRequestRef.safeParse(safeJson(msg.body));
    if (!ref.success) return { ok: false, reason: "the job reference is not readable" };
    const r = ref.data;
    if (r.should_acknowledge) {
      try {
        await o.source.acknowledge(r.runner_request_id, status, stop);
      } catch (err) {
        o.log.debug({ err: toError(err) }, "best-effort acknowledge of the job request failed");
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
        runnerOS: o.runnerOS,
        ...(r.billing_owner_id ? { billingOwnerId: r.billing_owner_id } : {}),
      },
      timeoutMs: 60_000,
      signal: stop,
    };
    try {
      const res = await sendAuthed(o.http, o.brokerTokens, call);
      if (res.status === 404 || res.status === 409 || res.status === 422) {
        o.log.debug({ status: res.status, url: redactUrl(res.url) }, "job already taken or gone; skipping it");
        return res.status === 422 ? "skip" : "gone";
      }
      if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
      return parseJobMessage(res.text, "run-service");
    } catch (err) {
      if (err instanceof GitHubApiError || !stop.aborted)
        o.log.warn({ err: toError(err) }, "could not acquire a job; skipping it");
      return "skip";
    }
  }
}

function parseJobMessage(body: string, flow: JobFlow): ParsedJob {
  const parsed = AgentJobRequestMessage.safeParse(safeJson(body));
  if (!parsed.success) return { ok: false, reason: issuesText(parsed.error, 1) };
  return { ok: true, message: parsed.data, flow };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch {
    return undefined;
  }
}
