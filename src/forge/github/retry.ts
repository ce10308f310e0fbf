// Bounded retries for GitHub calls: `withRetries` for a fixed number of attempts (registration,
// one upload), `retryUntil` for attempts with backoff until a deadline (a job's last logs and its
// completion, which may ride out an outage as long as the job's lock lasts). Never logs.
import { setTimeout as sleep } from "node:timers/promises";
import { backoffMs, type Intervals, jitter } from "../backoff.js";
import { asError, GitHubApiError, GitHubUnreachableError } from "./errors.js";

export interface RetryOptions {
  readonly attempts: number;
  /** The wait before attempt `n + 1` after attempt `n` (1-based) failed. */
  readonly delayMs: (attempt: number) => number;
  readonly retryable?: (err: unknown) => boolean;
  readonly signal?: AbortSignal;
  /** Called before each wait, with the error that caused it. */
  readonly onRetry?: (err: unknown, attempt: number) => void;
}

/** Network failures and 5xx/429/408 answers; everything else is an answer that will not change. */
export function isTransient(err: unknown): boolean {
  return err instanceof GitHubUnreachableError || (err instanceof GitHubApiError && err.retryable);
}

export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const retryable = opts.retryable ?? isTransient;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (err) {
      opts.signal?.throwIfAborted();
      if (attempt >= opts.attempts || !retryable(err)) throw err;
      opts.onRetry?.(err, attempt);
      await sleep(opts.delayMs(attempt), undefined, { signal: opts.signal });
    }
  }
}

/** A random delay in [minMs, maxMs], like the official runner's GetRandomBackoff. */
export function randomBetween(minMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.round(minMs + (maxMs - minMs) * random());
}

export interface RetryUntilOptions {
  /** No attempt starts after this time (ms since the epoch); read again before each one. The first always runs. */
  readonly until: () => number;
  readonly backoff: Intervals;
  readonly retryable?: (err: unknown) => boolean;
  /** Ends the attempts at once (the attempt in flight sees it too). */
  readonly signal: AbortSignal;
  readonly onFailure?: (err: unknown) => void;
  readonly onSuccess?: () => void;
  readonly now?: () => number;
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
  const retryable = o.retryable ?? isTransient;
  for (let attempt = 1; ; attempt += 1) {
    if (o.signal.aborted) return { t: "aborted" };
    const left = o.until() - now();
    const signal = left > 0 ? AbortSignal.any([o.signal, AbortSignal.timeout(left)]) : o.signal;
    try {
      const value = await fn(signal);
      o.onSuccess?.();
      return { t: "done", value };
    } catch (err) {
      if (o.signal.aborted) return { t: "aborted" };
      o.onFailure?.(err);
      const wait = jitter(backoffMs(o.backoff, attempt));
      if (!retryable(err) || now() + wait >= o.until()) return { t: "failed", error: asError(err) };
      await sleep(wait, undefined, { signal: o.signal }).catch(() => {});
    }
  }
}
