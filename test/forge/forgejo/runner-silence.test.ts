// The Forgejo runner when the orchestrator that accepted a job falls silent (killed, cut off from
// the queue): the task ends as failed within the silence limit, saying which orchestrator and
// since when, and the job is asked to stop, again if it turns out to run on. A job still waiting
// in the queue, or one of an orchestrator that sends no heartbeats, is never ended so.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runJob, startHarness, workflow } from "./harness.js";

const SILENCE_MS = 1_000;

describe("Forgejo runner, silent orchestrator", () => {
  it("ends an accepted job whose orchestrator fell silent as failed, naming it and when it was last heard, and publishes a Cancel", async (t) => {
    const h = await startHarness(t, { runner: { orchestratorSilenceMs: SILENCE_MS } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(2) });
    const job = await h.nextJob();
    await job.ack();
    const e = h.emitter(job.request);
    await e.emit({ kind: "accepted", orchestrator: "host-a-1234", heartbeatMs: 200 });
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    await e.emit({ kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "working" }] });
    const lastHeard = Date.now();
    // …and then nothing: the orchestrator was killed.

    const task = await h.forgejo.waitFor(
      () => {
        const x = h.forgejo.taskOfJob(jobId);
        return x && x.status !== "running" && x.logArchived ? x : undefined;
      },
      "the task to end",
      10_000,
    );
    const tookMs = Date.now() - lastHeard;
    assert.equal(task.status, "failure", task.rows.join("\n"));
    assert.ok(tookMs >= SILENCE_MS, `ended after ${tookMs} ms, not before the silence limit`);
    assert.match(
      task.rows.at(-1) ?? "",
      /^The orchestrator host-a-1234 stopped reporting on this job: nothing was heard from it since \d{4}-\d\d-\d\dT[\d:.]+Z \(1 s, while it sends a heartbeat every 200 ms\)\./,
    );
    assert.ok(task.rows.includes("working"), "the lines Forgejo had are kept");
    assert.equal(task.steps[0]?.status, "cancelled", "the step that was running is closed");
    const cancel = h.cancels.find((c) => c.jobId === job.request.id);
    assert.ok(cancel, "a Cancel went out, so an orchestrator that comes back stops the job");
    assert.equal(cancel.reason, task.rows.at(-1));
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to let go of the task");

    // The orchestrator was only cut off, and comes back: its events make the runner ask again.
    await e.emit({ kind: "heartbeat" });
    await h.forgejo.waitFor(
      () => h.cancels.filter((c) => c.jobId === job.request.id).length === 2,
      "a second Cancel for the job that runs on",
    );
  });

  it("keeps a job alive as long as heartbeats come, far past the silence limit", async (t) => {
    const h = await startHarness(t, { runner: { orchestratorSilenceMs: SILENCE_MS } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    const e = h.emitter(job.request);
    await e.emit({ kind: "accepted", orchestrator: "host-a", heartbeatMs: 200 });
    for (let i = 0; i < 15; i++) {
      await new Promise((r) => setTimeout(r, 200));
      await e.emit({ kind: "heartbeat" });
    }
    assert.equal(h.forgejo.taskOfJob(jobId)?.status, "running", "3 s of heartbeats only: still running");
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    await e.emit({ kind: "job-finished", result: "success", outputs: {} });
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(jobId) === "success", "success");
    assert.deepEqual(h.cancels, []);
  });

  it("never ends a job that waits in the queue, nor one whose orchestrator announced no heartbeats (an older version)", async (t) => {
    const h = await startHarness(t, { capacity: 2, runner: { orchestratorSilenceMs: SILENCE_MS } });
    const queued = h.forgejo.queueJob({ workflow: workflow(1) });
    const old = h.forgejo.queueJob({ workflow: workflow(1) });
    const first = await h.nextJob();
    const second = await h.nextJob();
    // Forgejo hands the tasks out in order; the bus keeps it.
    await second.ack();
    const e = h.emitter(second.request);
    await e.emit({ kind: "accepted", orchestrator: "old-host" });
    await new Promise((r) => setTimeout(r, 4 * SILENCE_MS));
    assert.equal(h.forgejo.taskOfJob(queued)?.status, "running", "the queued job waits on");
    assert.equal(h.forgejo.taskOfJob(old)?.status, "running", "the older orchestrator's job runs on");
    assert.deepEqual(h.cancels, []);
    await first.ack();
    await runJob(h.emitter(first.request), [{ lines: ["late"] }]);
    await runJob(e, [{ lines: ["slow"] }]);
    await h.forgejo.waitFor(
      () => h.forgejo.jobStatus(queued) === "success" && h.forgejo.jobStatus(old) === "success",
      "both to succeed",
    );
  });
});
