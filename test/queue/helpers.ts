// Test helpers for the queue suites: a recorder to await the n-th delivery, a state wait, and the
// one deliberate time window (asserting that something does NOT happen needs one).

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { JobEvent } from "../../src/contract/job-event.js";
import type { JobRequest } from "../../src/contract/job-request.js";
import { sampleJobRequest } from "../support/samples.js";

/** Collects values; `count(n)` resolves once n have arrived. */
export class Recorder<T> {
  readonly items: T[] = [];
  readonly #waiters = new Set<{ n: number; resolve: () => void }>();

  push = (x: T): void => {
    this.items.push(x);
    for (const w of [...this.#waiters])
      if (this.items.length >= w.n) {
        this.#waiters.delete(w);
        w.resolve();
      }
  };

  async count(n: number, what = `${n} items`, timeoutMs = 15_000): Promise<T[]> {
    if (this.items.length < n) {
      const signal = AbortSignal.timeout(timeoutMs);
      await new Promise<void>((resolve, reject) => {
        const w = { n, resolve };
        this.#waiters.add(w);
        signal.addEventListener("abort", () => {
          this.#waiters.delete(w);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.items.length}`));
        });
      });
    }
    return this.items.slice(0, n);
  }
}

/** Waits until `cond` holds, checking every 10 ms. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(10);
  }
}

/**
 * Asserts that `check` keeps passing for `ms`. Absence ("no further delivery") cannot be awaited as
 * a state, so this is the one place the suites watch a clock; the window is far above the broker's
 * delivery latency (~1 ms here).
 */
export async function holdsFor(ms: number, check: () => void | Promise<void>): Promise<void> {
  const end = Date.now() + ms;
  do {
    await check();
    await sleep(25);
  } while (Date.now() < end);
  await check();
}

let template: JobRequest | undefined;

/** A valid JobRequest for `label` with a fresh id (the sealed secrets are shared: the bus never opens them). */
export function job(label: string, over: Partial<JobRequest> = {}): JobRequest {
  template ??= sampleJobRequest();
  return { ...template, id: randomUUID(), runsOn: label, ...over };
}

export function event(jobId: string, seq: number): JobEvent {
  return { v: 1, jobId, seq, t: Date.now(), kind: "heartbeat" };
}

export const uid = (): string => randomUUID().slice(0, 8);
