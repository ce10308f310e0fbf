// Waiting that a stop always interrupts, and telling an abort from a failure. Every sleep of a loop
// goes through here with its AbortSignal, so no stop waits for a timer to run out.
import { setTimeout as sleep } from "node:timers/promises";

/** True when `err` is the result of an abort (a stop, a cancelled wait, a deadline), not a failure. */
export function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** Waits `ms`, or less when `signal` aborts; never rejects. */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => {});
}

/**
 * `signals` joined with a deadline `ms` from now: aborts with a TimeoutError, as AbortSignal.timeout
 * does, or with the reason of the first of `signals` to abort. Use it instead of
 * `AbortSignal.any([…, AbortSignal.timeout(ms)])`: on Node 20 a garbage collection can take the
 * timeout signal inside such a join, and its abort then never comes (nodejs/node#57736) — a drain
 * that never ends, a call that never times out. Here the timer holds its controller strongly.
 * Like AbortSignal.timeout, the timer does not keep the process alive.
 */
export function withTimeout(ms: number, ...signals: readonly (AbortSignal | undefined)[]): AbortSignal {
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    ms,
  );
  timer.unref();
  const joined = AbortSignal.any([...signals.filter((s): s is AbortSignal => s !== undefined), deadline.signal]);
  if (joined.aborted) clearTimeout(timer);
  else joined.addEventListener("abort", () => clearTimeout(timer), { once: true });
  return joined;
}
