// One outage of a forge service as the daemon's log tells it: one line when calls start failing,
// one when they work again, however many attempts failed in between (STYLE 2.11: log outages, not
// failures). Both pollers and GitHub's job reporting use it. Knows nothing of what is retried or how.
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";

export interface OutageLines {
  /** Logged (warn) at the first failure: "could not report the job's progress to GitHub; retrying". */
  readonly failing: string;
  /** Logged (info) at the first success after failures: "reporting to GitHub works again". */
  readonly back: string;
}

export class Outage {
  readonly #log: Logger;
  readonly #lines: OutageLines;
  readonly #now: () => number;
  #failures = 0;
  #since = 0;
  #error: Error | undefined;

  constructor(log: Logger, lines: OutageLines, now: () => number = Date.now) {
    this.#log = log;
    this.#lines = lines;
    this.#now = now;
  }

  /** True between a failure and the next success. */
  get ongoing(): boolean {
    return this.#failures > 0;
  }

  /** While it lasts: since when, and the last failure (what a status() shows). */
  get current(): { readonly since: number; readonly error: Error } | undefined {
    return this.#failures > 0 && this.#error ? { since: this.#since, error: this.#error } : undefined;
  }

  /** The failures since the last success: the streak a backoff grows with. */
  get streak(): number {
    return this.#failures;
  }

  failed(err: unknown): void {
    this.#failures += 1;
    this.#error = toError(err);
    if (this.#failures > 1) return;
    this.#since = this.#now();
    this.#log.warn({ err: toError(err) }, this.#lines.failing);
  }

  recovered(): void {
    if (this.#failures === 0) return;
    this.#log.info({ failedAttempts: this.#failures, outageMs: this.#now() - this.#since }, this.#lines.back);
    this.#failures = 0;
    this.#error = undefined;
  }
}
