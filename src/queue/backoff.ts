// Reconnect backoff for the broker connection: exponential with jitter, pure so it is table-tested.
// It never sleeps itself; the connection loop sleeps on an AbortSignal.

export interface BackoffOptions {
  /** Delay before the first retry. */
  readonly baseMs: number;
  /** The longest delay between two attempts. */
  readonly maxMs: number;
}

export const DEFAULT_RECONNECT_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 10_000 };

/** The delay before attempt `attempt` (1 = the first retry), without jitter. */
export function backoffMs({ baseMs, maxMs }: BackoffOptions, attempt: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 20));
}

/** Spreads a delay over ±20 %, so many clients that lost the broker together do not return together. */
export function jitter(ms: number, random: () => number = Math.random): number {
  return Math.max(0, Math.round(ms * (0.8 + 0.4 * random())));
}
