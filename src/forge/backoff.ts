// The poll and retry backoff shared by the forge adapters: pure functions of a streak and a random
// source, table-tested. Never sleeps, never reads a clock; callers do the waiting.

export interface Intervals {
  /** The delay after the first failure (and the steady poll interval). */
  readonly baseMs: number;
  /** The delay never exceeds this, jitter included (with nextDelayMs). */
  readonly maxMs: number;
}

/**
 * The longest a forge poller waits between two attempts while its forge fails, by default. A forge
 * that is back is asked again within this, so the jobs queued during an outage start within
 * seconds of its end: with a minute's cap they waited up to ~70 s for the next poll.
 */
export const OUTAGE_RETRY_MAX_MS = 10_000;

/** Doubling stops after this many steps: 2^5 × base is already past every sensible maximum. */
const MAX_DOUBLINGS = 5;

/**
 * The delay before the next attempt after `streak` consecutive misses (1 = the first miss):
 * base, 2×base, 4×base … capped at max. A streak of 0 or less waits the base interval.
 */
export function backoffMs({ baseMs, maxMs }: Intervals, streak: number): number {
  const doublings = Math.min(Math.max(streak - 1, 0), MAX_DOUBLINGS);
  return Math.min(maxMs, baseMs * 2 ** doublings);
}

/** Spreads `ms` over ±20 % so that many runners restarted together do not poll in lockstep. */
export function jitter(ms: number, random: () => number = Math.random): number {
  return Math.round(ms * (0.8 + 0.4 * random()));
}

/** The delay before the next attempt: the backoff with jitter, never above `maxMs` even with jitter. */
export function nextDelayMs(intervals: Intervals, streak: number, random: () => number = Math.random): number {
  return Math.min(intervals.maxMs, jitter(backoffMs(intervals, streak), random));
}
