// Stopping the Forgejo runner while Forgejo is down: a task's last report is retried, but only for
// the allowance the stop gives it, so `gnomon up` / `forgejo run` exit soon after SIGTERM.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { within } from "../../support/within.js";
import { runJob, startHarness, workflow } from "./harness.js";

describe("Forgejo runner stop", () => {
  it("ends a final report that Forgejo keeps refusing within the stop's allowance, not after finalTimeout", async (t) => {
    const h = await startHarness(t, { runner: { finalTimeoutMs: 120_000 } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    h.forgejo.failNext("UpdateLog", 1_000_000, "before"); // Forgejo goes down before the last words
    await runJob(h.emitter(job.request), [{ lines: ["done"] }]);
    const refused = h.forgejo.faultsInjected("UpdateLog");
    await h.forgejo.waitFor(() => h.forgejo.faultsInjected("UpdateLog") >= refused + 2, "the final report retrying");

    // The allowance is 15 s; a stop that sat out finalTimeout (120 s) would run into this bound.
    await within(h.runner.stop(AbortSignal.timeout(100)), "the stop to return", 60_000);
    assert.equal(h.runner.activeTasks, 0);
    assert.equal(h.forgejo.taskOfJob(jobId)?.status, "running", "Forgejo never heard the end (it was down)");
  });
});
