// Retrying one Forgejo call with backoff and jitter until it succeeds, fails for good, or the
// signal ends the wait. Sleeps only through node:timers/promises with the signal, so a stop always
// interrupts it.
import { setTimeout as sleep } from "node:timers/promises";
import { type Intervals, nextDelayMs } from "../backoff.js";

export interface RetryOptions {
  readonly intervals: Intervals;
  readonly signal: AbortSignal;
  /** False: give up at once and throw this error. */
  readonly retryable: (err: unknown) => boolean;
  /** Called before each wait with the failure, the attempt that failed (1-based) and the delay. */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  readonly random?: () => number;
}

/** Runs `fn` until it resolves; rejects with its error when not retryable, or the signal's reason. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    o.signal.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (o.signal.aborted) throw o.signal.reason;
      if (!o.retryable(err)) throw err;
      const delayMs = nextDelayMs(o.intervals, attempt, o.random);
      o.onRetry?.(err, attempt, delayMs);
      await sleep(delayMs, undefined, { signal: o.signal });
    }
  }
}

/** Waits `ms`, or less when `signal` aborts; never throws. */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => {});
}
