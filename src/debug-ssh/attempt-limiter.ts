// Pure: counts failed logins per key (a source address, a held job) over a sliding period and says
// when a key has had too many. No clock of its own: callers pass the time, so tests need no waiting.

export interface AttemptLimit {
  /** Failures a key may have within `periodMs`; the next attempt is throttled. */
  readonly failures: number;
  readonly periodMs: number;
}

/** Per source address: five failed logins a minute, as a person mistyping a key file would never reach. */
export const ADDRESS_LIMIT: AttemptLimit = { failures: 5, periodMs: 60_000 };
/**
 * Per held job, from every address together: higher, so that a few strangers who read a public job
 * log cannot lock its actor out by failing on purpose, yet bounded, so no one grinds at one job.
 */
export const JOB_LIMIT: AttemptLimit = { failures: 30, periodMs: 60_000 };

export class AttemptLimiter {
  readonly #limit: AttemptLimit;
  /** Failure times per key, oldest first, none older than the period (pruned as keys are touched). */
  readonly #failures = new Map<string, number[]>();

  constructor(limit: AttemptLimit) {
    this.#limit = limit;
  }

  /** Whether `key` may try now. */
  allows(key: string, nowMs: number): boolean {
    return this.#recent(key, nowMs).length < this.#limit.failures;
  }

  /** When `key` may try again (ms since the epoch); `nowMs` when it may already. */
  retryAt(key: string, nowMs: number): number {
    const recent = this.#recent(key, nowMs);
    if (recent.length < this.#limit.failures) return nowMs;
    // The attempt that makes room is the one that ages out of the period first.
    return recent[recent.length - this.#limit.failures]! + this.#limit.periodMs;
  }

  /** Counts one failed login of `key`. */
  failed(key: string, nowMs: number): void {
    const recent = this.#recent(key, nowMs);
    recent.push(nowMs);
    this.#failures.set(key, recent);
  }

  /** Takes back a failure counted at `atMs` (the same connection logged in after all). */
  forgive(key: string, atMs: number): void {
    const all = this.#failures.get(key);
    const i = all?.indexOf(atMs) ?? -1;
    if (!all || i < 0) return;
    all.splice(i, 1);
    if (all.length === 0) this.#failures.delete(key);
  }

  /** Drops keys with no failure left in the period, so the table does not grow with every address ever seen. */
  prune(nowMs: number): void {
    for (const key of [...this.#failures.keys()]) if (this.#recent(key, nowMs).length === 0) this.#failures.delete(key);
  }

  /** Keys held now (for tests and status). */
  get size(): number {
    return this.#failures.size;
  }

  #recent(key: string, nowMs: number): number[] {
    const all = this.#failures.get(key);
    if (!all) return [];
    const from = nowMs - this.#limit.periodMs;
    const kept = all.filter((t) => t > from);
    if (kept.length === 0) this.#failures.delete(key);
    else if (kept.length !== all.length) this.#failures.set(key, kept);
    return kept;
  }
}
