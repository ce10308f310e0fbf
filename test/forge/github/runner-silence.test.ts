// The GitHub runner when the orchestrator that accepted a job falls silent: the job is completed
// on GitHub as failed within the silence limit, its log saying which orchestrator and since when,
// and a Cancel goes out; a job whose orchestrator announced no heartbeats is left alone.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startFakeGitHub } from "../../fakes/github-server.js";
import { happyEvents, startRunner } from "./harness.js";

const SILENCE_MS = 1_000;

describe("github runner, silent orchestrator", () => {
  it("completes an accepted job whose orchestrator fell silent as failed, saying so, and publishes a Cancel", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator, runner } = await startRunner(t, fake, { timings: { orchestratorSilenceMs: SILENCE_MS } });
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    await orchestrator.emit(
      req,
      { kind: "accepted", orchestrator: "host-b-77", heartbeatMs: 200 },
      { kind: "step-started", step: 0, stage: "main", name: "Run actions/checkout@v4" },
    );
    const lastHeard = Date.now();

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.ok(Date.now() - lastHeard >= SILENCE_MS, "not before the silence limit");
    assert.equal(fake.job(job.jobId).conclusion, "failed");
    const logs = [...fake.job(job.jobId).stepLogs.values()].map((l) => l.content).join("\n");
    assert.match(
      logs,
      /The orchestrator host-b-77 stopped reporting on this job: nothing was heard from it since \d{4}-\d\d-\d\dT[\d:.]+Z/,
    );
    const cancel = await orchestrator.until(() => orchestrator.cancels.find((c) => c.jobId === req.id), "a Cancel");
    assert.match(cancel.reason, /^The orchestrator host-b-77 stopped reporting/);
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("leaves alone a job whose orchestrator announced no heartbeats, and one that keeps beating", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake, { timings: { orchestratorSilenceMs: SILENCE_MS } });
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    await orchestrator.emit(req, { kind: "accepted", orchestrator: "old-host" });
    await new Promise((r) => setTimeout(r, 3 * SILENCE_MS));
    assert.equal(fake.job(job.jobId).state, "acquired", "still running");
    await orchestrator.emit(req, { kind: "accepted", orchestrator: "new-host", heartbeatMs: 200 });
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 200));
      await orchestrator.emit(req, { kind: "heartbeat" });
    }
    assert.equal(fake.job(job.jobId).state, "acquired", "still running while it beats");
    await orchestrator.emit(req, ...happyEvents(["done"]).slice(1));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.equal(fake.job(job.jobId).conclusion, "succeeded");
    assert.deepEqual(orchestrator.cancels, []);
  });
});
