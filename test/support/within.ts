// A bound on a wait: a test that waits for something to settle must not hang when it never does.
// The bound says how long is too long for the behaviour under test (e.g. far below a timeout that
// a broken build would sit out); it is not a measurement, so nothing asserts how long it took.
import { setTimeout as sleep } from "node:timers/promises";

/** Settles as `p` does, or rejects after `timeoutMs` naming `what` was awaited. */
export async function within<T>(p: Promise<T>, what: string, timeoutMs: number): Promise<T> {
  const bound = new AbortController();
  const timeout = sleep(timeoutMs, undefined, { signal: bound.signal }).then(() => {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    bound.abort();
    timeout.catch(() => {});
  }
}
