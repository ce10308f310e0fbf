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
