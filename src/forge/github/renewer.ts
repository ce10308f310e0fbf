// Keeps a held job's lock alive from the daemon (never from the VM), as the official runner does
// (spec 6.4, 8.1): the first renewal must succeed before the job starts; then every 60 s, sooner when
// the lock is shorter than two intervals; failures are retried with backoff until the lock has been
// expired for a grace period, then the job is lost.
import { setTimeout as sleep } from "node:timers/promises";
import { randomBetween } from "../../lifecycle/backoff.js";
import { retry } from "../../lifecycle/retry.js";
import { JobGoneError, LockLostError } from "./errors.js";
import type { JobChannel } from "./job-channel.js";

export interface RenewTimings {
  readonly intervalMs: number;
  readonly firstAttempts: number;
  /** Random wait between first attempts. */
  readonly firstRetryMs: readonly [number, number];
  /** Random wait after a failed renewal, and after five in a row. */
  readonly retryMs: readonly [number, number];
  readonly retryLongMs: readonly [number, number];
  /** How long past `lockedUntil` renewals are still tried before the job counts as lost. */
  readonly graceMs: number;
}

export const DEFAULT_RENEW_TIMINGS: RenewTimings = {
  intervalMs: 60_000,
  firstAttempts: 5,
  firstRetryMs: [1_000, 10_000],
  retryMs: [5_000, 15_000],
  retryLongMs: [15_000, 30_000],
  graceMs: 5 * 60_000,
};

/** The shortest wait between renewals while they succeed, whatever the lock (clock skew cannot make it spin). */
export const MIN_RENEW_WAIT_MS = 1_000;

/**
 * How long to wait before the next renewal after one succeeded: the interval, or half of the lock
 * that is left when that comes sooner. GitHub's lock is ~10 min, so that is every 60 s as the
 * official runner does; a shorter lock (a server may grant one) is renewed well before it runs out.
 */
export function nextRenewalInMs(lockedUntilMs: number, nowMs: number, intervalMs: number): number {
  return Math.min(intervalMs, Math.max(MIN_RENEW_WAIT_MS, Math.floor((lockedUntilMs - nowMs) / 2)));
}

/** The renewal before the job is handed on; rejects with the last error when all attempts fail. */
export async function firstRenewal(channel: JobChannel, t: RenewTimings, signal: AbortSignal): Promise<Date> {
  return retry(() => channel.renew(signal), {
    attempts: t.firstAttempts,
    backoff: () => randomBetween(...t.firstRetryMs),
    retryable: (err) => !(err instanceof JobGoneError),
    signal,
  });
}

export interface RenewLoop {
  /** Renewals that succeeded after the first. */
  readonly renewals: number;
  readonly lockedUntil: Date;
  /** Stops renewing; idempotent. */
  stop(): void;
  /** Settles when the loop ends: undefined after stop(), the reason when the job was lost. */
  readonly done: Promise<JobGoneError | LockLostError | undefined>;
}

export function startRenewing(
  channel: JobChannel,
  jobId: string,
  lockedUntil: Date,
  t: RenewTimings,
  now: () => number = Date.now,
): RenewLoop {
  const ctl = new AbortController();
  const state = { renewals: 0, lockedUntil };
  const run = async (): Promise<JobGoneError | LockLostError | undefined> => {
    let failures = 0;
    let lastError: unknown;
    while (!ctl.signal.aborted) {
      const deadline = state.lockedUntil.getTime() + t.graceMs;
      let wait =
        failures === 0
          ? nextRenewalInMs(state.lockedUntil.getTime(), now(), t.intervalMs)
          : randomBetween(...(failures > 5 ? t.retryLongMs : t.retryMs));
      // Never sleep past the point where one more try could still save the job.
      if (failures > 0) wait = Math.min(wait, Math.max(0, deadline - now()));
      try {
        await sleep(wait, undefined, { signal: ctl.signal });
      } catch {
        return undefined;
      }
      try {
        state.lockedUntil = await channel.renew(ctl.signal);
        state.renewals += 1;
        failures = 0;
      } catch (err) {
        if (ctl.signal.aborted) return undefined;
        if (err instanceof JobGoneError) return err;
        failures += 1;
        lastError = err;
        if (now() >= deadline) return new LockLostError(jobId, state.lockedUntil, { cause: lastError });
      }
    }
    return undefined;
  };
  const done = run();
  return {
    get renewals() {
      return state.renewals;
    },
    get lockedUntil() {
      return state.lockedUntil;
    },
    stop: () => ctl.abort(),
    done,
  };
}
