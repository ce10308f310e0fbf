// Deadlines joined with other signals: the join must abort when its time is up even after a garbage
// collection (Node 20 loses the abort of `AbortSignal.any([…, AbortSignal.timeout(ms)])` then, which
// once left `gnomon up` waiting for ever for a drain that never ended).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { withTimeout } from "../../src/lifecycle/abort.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Resolves with the reason when `make()`'s signal aborts, or "never" 1 s after its deadline; collects garbage meanwhile. */
async function abortAfterGc(make: () => AbortSignal): Promise<unknown> {
  const fired = new Promise<unknown>((resolve) => {
    // Only the listener keeps the signal: nothing else holds it, as in a wait that stores it nowhere.
    make().addEventListener("abort", (e) => resolve((e.target as AbortSignal).reason), { once: true });
  });
  await sleep(20);
  gc();
  return Promise.race([fired, sleep(1_200, "never")]);
}

describe("withTimeout", () => {
  it("aborts with a TimeoutError when its time is up, also after a garbage collection", async () => {
    const other = new AbortController();
    const reason = await abortAfterGc(() => withTimeout(150, other.signal));
    assert.ok(reason instanceof DOMException, `aborted with ${String(reason)}`);
    assert.equal(reason.name, "TimeoutError");
  });

  it("aborts with the reason of a signal it joins when that one aborts first, and takes undefined for none", async () => {
    const stop = new AbortController();
    const joined = withTimeout(60_000, undefined, stop.signal);
    assert.equal(joined.aborted, false);
    stop.abort(new Error("stopping"));
    assert.equal((joined.reason as Error).message, "stopping");
    const already = withTimeout(60_000, AbortSignal.abort("gone"));
    assert.equal(already.reason, "gone");
  });

  it("is what gnomon's sources use: none joins AbortSignal.timeout into AbortSignal.any", () => {
    const src = join(import.meta.dirname, "..", "..", "src");
    const offenders = readdirSync(src, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && f !== join("lifecycle", "abort.ts"))
      .filter((f) => /AbortSignal\.any\(\[[^\]]*AbortSignal\.timeout\(/s.test(readFileSync(join(src, f), "utf8")));
    assert.deepEqual(offenders, [], "use withTimeout from src/lifecycle/abort.ts");
  });
});
