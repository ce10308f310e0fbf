// Backoff for every loop that waits after a failure (forge polls and reports, broker reconnects):
// pure functions of a streak and a random source, table-tested. Never sleeps, never reads a clock;
// the retry loops (retry.ts) and the callers do the waiting.

export interface Intervals {
  /** The delay after the first failure (for pollers, also the steady interval). */
  readonly baseMs: number;
  /** The delay never exceeds this (with nextDelayMs: jitter included). */
  readonly maxMs: number;
}

/**
 * Doubling stops here only so that huge streaks cannot overflow: 2^30 × base is past every
 * maximum, so the delay always reaches `maxMs`, as its name promises.
 */
const MAX_DOUBLINGS = 30;

/**
 * The delay before the next attempt after `streak` consecutive failures (1 = the first): base,
 * 2×base, 4×base … capped at max. A streak of 0 or less waits the base interval.
 */
export function backoffMs({ baseMs, maxMs }: Intervals, streak: number): number {
  const doublings = Math.min(Math.max(streak - 1, 0), MAX_DOUBLINGS);
  return Math.min(maxMs, baseMs * 2 ** doublings);
}

/** Spreads `ms` over ±20 %, so that many clients that failed together do not come back in lockstep. */
export function jitter(ms: number, random: () => number = Math.random): number {
  return Math.max(0, Math.round(ms * (0.8 + 0.4 * random())));
}

/** The delay before the next attempt: the backoff with jitter, never above `maxMs` even with jitter. */
export function nextDelayMs(intervals: Intervals, streak: number, random: () => number = Math.random): number {
  return Math.min(intervals.maxMs, jitter(backoffMs(intervals, streak), random));
}

/** A random delay in [minMs, maxMs], like the official GitHub runner's GetRandomBackoff. */
export function randomBetween(minMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.round(minMs + (maxMs - minMs) * random());
}
