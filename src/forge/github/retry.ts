// Bounded retries for single GitHub calls (registration, completion, log uploads): a fixed number
// of attempts, a delay chosen per attempt, and a predicate that says which errors are worth it.
import { setTimeout as sleep } from "node:timers/promises";
import { GitHubApiError, GitHubUnreachableError } from "./errors.js";

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
