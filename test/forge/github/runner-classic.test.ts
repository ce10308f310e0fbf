// The GHES (classic) flow end to end against the fake: an encrypted message session, the job in a
// PipelineAgentJobRequest, lock renewal on the pool's job request, timeline records, step logs and
// the live feed on the plan hub, and the JobCompleted event; BrokerMigration onto the broker; logs
// resumed from GitHub's line count after a broken upload; an ephemeral agent deleted after its job.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startFakeGitHub } from "../../fakes/github-server.js";
import { happyEvents, startRunner } from "./harness.js";

const SECRET = "classic-secret-value-77";
const TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z /;

describe("github runner, classic flow (GitHub Enterprise Server)", () => {
  for (const useFipsEncryption of [false, true])
    it(`runs a job through an encrypted session and reports it on the plan hub (OAEP-${useFipsEncryption ? "SHA256" : "SHA1"})`, async (t) => {
      const fake = await startFakeGitHub(t, { flow: "classic", pollHoldMs: 300, useFipsEncryption });
      const { orchestrator, runner } = await startRunner(t, fake);
      const job = fake.queueJob({ labels: ["debian-12"], secrets: { DB_PASSWORD: SECRET }, outputs: { v: "x" } });

      const req = await orchestrator.nextJob();
      assert.equal(req.id, job.jobId);
      assert.equal(req.source.ref["flow"], "classic");
      assert.equal(req.source.ref["requestId"], job.requestId);
      await orchestrator.emit(
        req,
        ...happyEvents(
          ["line one", `pw=${SECRET}`, Buffer.from(`x-access-token:${job.githubToken}`).toString("base64")],
          {
            v: "1",
          },
        ),
      );
      await fake.waitFor(() => fake.job(job.jobId).state === "completed", "JobCompleted");
      const done = fake.job(job.jobId);
      assert.equal(done.conclusion, "succeeded");
      assert.deepEqual(done.outputs, { v: { value: "1", isSecret: false } });

      const records = [...done.timeline.values()];
      const jobRecord = records.find((r) => r.type === "Job");
      assert.equal(jobRecord?.id, job.jobId);
      assert.equal(jobRecord?.state, "completed");
      assert.equal(jobRecord?.result, "succeeded");
      const tasks = records.filter((r) => r.type === "Task").sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
      assert.deepEqual(
        tasks.map((r) => [r.name, r.state, r.result, r.parentId]),
        [
          ["Set up job", "completed", "succeeded", job.jobId],
          ["Run actions/checkout@v4", "completed", "succeeded", job.jobId],
          ["Say hello", "completed", "succeeded", job.jobId],
          ["Complete job", "completed", "succeeded", job.jobId],
        ],
      );
      const hello = tasks[2]!;
      assert.ok(hello.log, "the step's record links its log");
      const log = done.classicLogs.get(hello.log.id)!;
      assert.equal(log.path, `logs\\${hello.id}`);
      assert.ok(log.lines.every((l) => TS.test(l)));
      assert.deepEqual(
        log.lines.map((l) => l.replace(TS, "")),
        ["line one", "pw=***", "***"],
        "secrets, and the token inside base64, are masked",
      );
      const live = done.feed.filter((f) => f.stepId === hello.id);
      assert.equal(live[0]?.startLine, 1);
      assert.deepEqual(
        live.flatMap((f) => f.lines),
        ["line one", "pw=***", "***"],
      );

      assert.ok(fake.calls(/\/jobrequests\//, "PATCH").length >= 1, "renewed on the pool's job request");
      const orch = fake.calls(/\/jobrequests\//, "PATCH")[0]?.headers["x-vss-orchestrationid"];
      assert.equal(orch, `${job.planId}.build.__default`, "with the job token's orchestration id");
      assert.ok(fake.calls(/\/messages\/\d+$/, "DELETE").length >= 1, "the handled job message was deleted");
      const everything = fake.everythingReceived();
      for (const s of [SECRET, Buffer.from(SECRET).toString("base64"), job.githubToken])
        assert.ok(!everything.includes(s), "no secret reached GitHub");
      await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
    });

  it("an ephemeral runner takes one job and ends; the tenant deletes it with the JobCompleted event", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic", pollHoldMs: 200 });
    const { orchestrator, runner, registration } = await startRunner(t, fake, { ephemeral: true });
    const first = fake.queueJob({ labels: ["debian-12"] });
    const second = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    assert.equal(req.id, first.jobId);
    await orchestrator.emit(req, ...happyEvents(["once"]));
    assert.equal(await runner.done, undefined);
    assert.equal(runner.ephemeralEnd, "job-done");
    assert.equal(fake.job(first.jobId).conclusion, "succeeded");
    assert.equal(fake.runner(registration.settings.agentId)?.deleted, true, "the tenant deleted the agent");
    assert.equal(fake.job(second.jobId).state, "queued", "the second job was left to another runner");
  });

  it("follows a BrokerMigration message onto the broker and runs the job through the run service", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic", pollHoldMs: 300 });
    fake.migrateToBroker = true;
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    assert.equal(req.source.ref["flow"], "run-service");
    await orchestrator.emit(req, ...happyEvents(["migrated"]));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "completejob");
    assert.equal(fake.job(job.jobId).flow, "migrated");
    assert.equal(fake.job(job.jobId).conclusion, "succeeded");
    assert.ok(fake.calls("/broker/message").length >= 1, "the broker was polled with the classic session");
    assert.equal(fake.calls("/broker/session").length, 0, "without a broker session of its own");
  });

  it("resumes a step log from GitHub's line count when an upload breaks after it was stored", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    fake.faults.uploadFailuresAfterStore = 1;
    await orchestrator.emit(req, ...happyEvents(["a", "b", "c"]));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "JobCompleted");
    const done = fake.job(job.jobId);
    assert.equal(fake.faults.uploadFailuresAfterStore, 0, "the fault happened");
    assert.ok(fake.calls(/\/logs$/, "GET").length >= 1, "the runner asked how many lines GitHub holds");
    for (const [, log] of done.classicLogs) {
      const texts = log.lines.map((l) => l.replace(TS, ""));
      assert.equal(new Set(log.lines).size, log.lines.length, `no line twice in ${log.path}: ${texts.join(" | ")}`);
    }
    const hello = [...done.timeline.values()].find((r) => r.name === "Say hello")!;
    assert.deepEqual(
      done.classicLogs.get(hello.log!.id)!.lines.map((l) => l.replace(TS, "")),
      ["a", "b", "c"],
    );
  });

  it("publishes a Cancel when the pool's job request can no longer be renewed", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic", pollHoldMs: 300, lockMs: 500 });
    const { orchestrator } = await startRunner(t, fake);
    fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    fake.faults.renewFailing = true;
    const cancel = await orchestrator.until(() => orchestrator.cancels.find((c) => c.jobId === req.id), "a Cancel");
    assert.match(cancel.reason, /expired .* could not be renewed|no longer holds job/);
  });
});
