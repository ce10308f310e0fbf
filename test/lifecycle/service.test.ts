// runServices: layers start in order and stop in reverse, the services of one layer side by side
// under the one deadline; a forced stop aborts that deadline at once, saying so.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { deferred, ForcedStopError, runServices, type Service } from "../../src/lifecycle/service.js";

/** A service that records what happens to it and, when stopped, holds on until the deadline. */
function service(name: string, journal: string[], holdsUntilDeadline = false): Service & { reason?: unknown } {
  const ended = deferred<Error | undefined>();
  let state: "starting" | "ready" | "stopped" = "starting";
  const s: Service & { reason?: unknown } = {
    name,
    done: ended.promise,
    status: () => (state === "starting" ? { state, detail: "not started" } : { state }),
    async start() {
      journal.push(`start ${name}`);
      state = "ready";
    },
    async stop(deadline) {
      journal.push(`stop ${name}`);
      if (holdsUntilDeadline && !deadline.aborted)
        await new Promise((r) => deadline.addEventListener("abort", r, { once: true }));
      s.reason = deadline.reason;
      journal.push(`stopped ${name}`);
      state = "stopped";
      ended.resolve(undefined);
    },
  };
  return s;
}

describe("runServices", () => {
  // AbortSignal.timeout does not keep the process alive; a real service's own work does.
  const keepAlive = setInterval(() => {}, 1_000);
  after(() => clearInterval(keepAlive));

  it("starts layers in order and stops them in reverse, a layer's services side by side", async () => {
    const journal: string[] = [];
    let stop!: () => void;
    const stopRequested = new Promise<void>((r) => {
      stop = r;
    });
    const a = service("store", journal);
    const b = service("orchestrator", journal, true);
    const c = service("runner", journal, true);
    const run = runServices([a, [b, c]], stopRequested, 200);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(journal, ["start store", "start orchestrator", "start runner"]);
    stop();
    assert.equal(await run, undefined);
    // Both members of the layer began stopping before either finished: they drained together.
    assert.deepEqual(journal.slice(3), [
      "stop orchestrator",
      "stop runner",
      "stopped orchestrator",
      "stopped runner",
      "stop store",
      "stopped store",
    ]);
  });

  it("a forced stop aborts the deadline at once with a ForcedStopError", async () => {
    const journal: string[] = [];
    const s = service("orchestrator", journal, true);
    let force!: () => void;
    const forceRequested = new Promise<void>((r) => {
      force = r;
    });
    const started = Date.now();
    const run = runServices([[s]], Promise.resolve(), 60_000, forceRequested);
    await new Promise((r) => setTimeout(r, 50));
    force();
    await run;
    assert.ok(Date.now() - started < 5_000, "did not wait for the 60 s deadline");
    assert.ok(s.reason instanceof ForcedStopError, String(s.reason));
  });
});
