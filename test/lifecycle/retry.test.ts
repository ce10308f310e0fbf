// The retry loops every stage uses: how many attempts run, which errors end them, what a stop does,
// and retryUntil's deadline. Waits are a few milliseconds; nothing is timed.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { retry, retryUntil } from "../../src/lifecycle/retry.js";
import { toError } from "../../src/lifecycle/to-error.js";

class Flaky extends Error {}
class Final extends Error {}

/** Fails with `errors` in turn, then resolves with the attempt number. */
function script(...errors: Error[]): { fn: (attempt: number) => Promise<number>; calls: number[] } {
  const calls: number[] = [];
  return {
    calls,
    fn: async (attempt) => {
      calls.push(attempt);
      const err = errors.shift();
      if (err) throw err;
      return attempt;
    },
  };
}

describe("retry", () => {
  it("tries again after each failure until an attempt succeeds, telling onRetry each time", async () => {
    const s = script(new Flaky("1"), new Flaky("2"));
    const retried: [string, number, number][] = [];
    const got = await retry(s.fn, {
      backoff: (n) => n,
      onRetry: (err, n, delayMs) => retried.push([toError(err).message, n, delayMs]),
    });
    assert.equal(got, 3);
    assert.deepEqual(retried, [
      ["1", 1, 1],
      ["2", 2, 2],
    ]);
  });

  it("gives up at once on an error that is not retryable, and after the last attempt otherwise", async () => {
    const final = new Final("no");
    const a = script(new Flaky(), final, new Flaky());
    await assert.rejects(retry(a.fn, { backoff: () => 1, retryable: (e) => e instanceof Flaky }), (e) => e === final);
    assert.deepEqual(a.calls, [1, 2]);

    const last = new Flaky("third");
    const b = script(new Flaky(), new Flaky(), last, new Flaky());
    await assert.rejects(retry(b.fn, { backoff: { baseMs: 1, maxMs: 2 }, attempts: 3 }), (e) => e === last);
    assert.deepEqual(b.calls, [1, 2, 3]);
  });

  it("ends with the signal's reason when a stop comes, without another attempt", async () => {
    const stop = new AbortController();
    const why = new Error("stopping");
    const calls: number[] = [];
    const loop = retry(
      async (n) => {
        calls.push(n);
        if (n === 2) stop.abort(why);
        throw new Flaky();
      },
      { backoff: () => 1, signal: stop.signal },
    );
    await assert.rejects(loop, (e) => e === why);
    assert.deepEqual(calls, [1, 2]);
  });

  it("is woken from its wait by a stop", async () => {
    const stop = new AbortController();
    const loop = retry(
      async () => {
        throw new Flaky();
      },
      { backoff: () => 3_600_000, signal: stop.signal, onRetry: () => stop.abort() },
    );
    await assert.rejects(loop, { name: "AbortError" });
  });
});

describe("retryUntil", () => {
  it("resolves with the value once an attempt succeeds, saying so through onSuccess", async () => {
    let failures = 0;
    let succeeded = false;
    let n = 0;
    const got = await retryUntil(
      async () => {
        n += 1;
        if (n < 3) throw new Flaky();
        return "ok";
      },
      {
        until: () => Date.now() + 60_000,
        backoff: { baseMs: 1, maxMs: 2 },
        retryable: () => true,
        signal: new AbortController().signal,
        onFailure: () => {
          failures += 1;
        },
        onSuccess: () => {
          succeeded = true;
        },
      },
    );
    assert.deepEqual(got, { t: "done", value: "ok" });
    assert.deepEqual([failures, succeeded], [2, true]);
  });

  it("fails with the error when the next attempt would start after the deadline, after one attempt at least", async () => {
    const err = new Flaky("down");
    let n = 0;
    const got = await retryUntil(
      async () => {
        n += 1;
        throw err;
      },
      { until: () => 0, backoff: { baseMs: 1, maxMs: 1 }, retryable: () => true, signal: new AbortController().signal },
    );
    assert.deepEqual(got, { t: "failed", error: err });
    assert.equal(n, 1);
  });

  it("fails at once on an error that is not retryable, and turns what was thrown into an Error", async () => {
    const got = await retryUntil(
      async () => {
        throw "refused";
      },
      {
        until: () => Date.now() + 60_000,
        backoff: { baseMs: 1, maxMs: 1 },
        retryable: () => false,
        signal: new AbortController().signal,
      },
    );
    assert.equal(got.t, "failed");
    assert.equal(got.t === "failed" && got.error.message, "refused");
  });

  it("gives each attempt a signal that aborts at the deadline, and reports a stop as aborted", async () => {
    const deadline = Date.now() + 50;
    // AbortSignal.timeout does not keep the process alive; the attempt's own timer does, as a call's socket would.
    const hangs = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => {
        const keepAlive = setTimeout(() => {}, 60_000);
        signal.addEventListener("abort", () => {
          clearTimeout(keepAlive);
          reject(signal.reason);
        });
      });
    const got = await retryUntil(hangs, {
      until: () => deadline,
      backoff: { baseMs: 1_000, maxMs: 1_000 },
      retryable: () => true,
      signal: new AbortController().signal,
    });
    assert.equal(got.t, "failed", "the attempt ended at the deadline and no other fits before it");

    const stop = new AbortController();
    stop.abort();
    const none = await retryUntil(async () => "never", {
      until: () => Date.now() + 60_000,
      backoff: { baseMs: 1, maxMs: 1 },
      retryable: () => true,
      signal: stop.signal,
    });
    assert.deepEqual(none, { t: "aborted" });
  });
});

describe("toError", () => {
  it("keeps an Error as it is and wraps anything else, keeping it as the cause", () => {
    const e = new Final("x");
    assert.equal(toError(e), e);
    assert.equal(toError("boom").message, "boom");
    const obj = { message: "from an object" };
    assert.equal(toError(obj).message, "from an object");
    assert.equal(toError(obj).cause, obj);
    assert.equal(toError(42).message, "42");
  });
});
