// The two retry loops every stage uses: `retry` until an attempt succeeds, fails for good, runs out
// of attempts or the signal ends it (a call, a declaration, a final report); `retryUntil` until a
// deadline, resolving with what happened (a job's last logs and its completion, which may ride out
// an outage as long as the job's lock lasts). Waits only through an AbortSignal, so a stop always
// interrupts it; never logs (callers say what failed, through onRetry and onFailure).
import { setTimeout as sleep } from "node:timers/promises";
import { withTimeout } from "./abort.js";
import { type Intervals, nextDelayMs } from "./backoff.js";
import { toError } from "./to-error.js";

export interface RetryOptions {
  /** The wait after attempt n (1-based) failed: a backoff with jitter (see nextDelayMs), or a function of n. */
  readonly backoff: Intervals | ((attempt: number) => number);
  /** No attempt after this many (default: no limit; the signal or `retryable` ends the loop). */
  readonly attempts?: number;
  /** False: give up at once and throw this error. Default: every error is worth another attempt. */
  readonly retryable?: (err: unknown) => boolean;
  /** Ends the waiting: an abort rejects with the signal's reason (or the AbortError of the wait). */
  readonly signal?: AbortSignal;
  /** Called before each wait with the failure, the attempt that failed (1-based) and the delay. */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  readonly random?: () => number;
}

/**
 * Runs `fn` until it resolves. The first attempt always runs; rejects with the last error when it
 * is not retryable or the attempts are used up, and with the signal's reason once it aborted.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (err) {
      o.signal?.throwIfAborted();
      if (attempt >= (o.attempts ?? Number.POSITIVE_INFINITY) || !(o.retryable?.(err) ?? true)) throw err;
      const delayMs = typeof o.backoff === "function" ? o.backoff(attempt) : nextDelayMs(o.backoff, attempt, o.random);
      o.onRetry?.(err, attempt, delayMs);
      await sleep(delayMs, undefined, { signal: o.signal });
    }
  }
}

export interface RetryUntilOptions {
  /** No attempt starts after this time (ms since the epoch); read again before each one. The first always runs. */
  readonly until: () => number;
  readonly backoff: Intervals;
  /** False: stop at once with this error. */
  readonly retryable: (err: unknown) => boolean;
  /** Ends the attempts at once (the attempt in flight sees it too). */
  readonly signal: AbortSignal;
  readonly onFailure?: (err: unknown) => void;
  readonly onSuccess?: () => void;
  readonly now?: () => number;
  readonly random?: () => number;
}

export type RetryOutcome<T> =
  | { readonly t: "done"; readonly value: T }
  | { readonly t: "failed"; readonly error: Error }
  | { readonly t: "aborted" };

/**
 * Attempts `fn` until it succeeds, fails with an error not worth retrying, or the next attempt
 * would start after `until()`. Each attempt's signal also aborts at `until()`, so none outlives
 * the deadline. Resolves with what happened; never rejects.
 */
export async function retryUntil<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  o: RetryUntilOptions,
): Promise<RetryOutcome<T>> {
  const now = o.now ?? Date.now;
  for (let attempt = 1; ; attempt += 1) {
    if (o.signal.aborted) return { t: "aborted" };
    const left = o.until() - now();
    const signal = left > 0 ? withTimeout(left, o.signal) : o.signal;
    try {
      const value = await fn(signal);
      o.onSuccess?.();
      return { t: "done", value };
    } catch (err) {
      if (o.signal.aborted) return { t: "aborted" };
      o.onFailure?.(err);
      const wait = nextDelayMs(o.backoff, attempt, o.random);
      if (!o.retryable(err) || now() + wait >= o.until()) return { t: "failed", error: toError(err) };
      await sleep(wait, undefined, { signal: o.signal }).catch(() => {});
    }
  }
}
