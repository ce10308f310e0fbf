// The github.com flow when GitHub's services fail around a job: a Results outage as the job ends,
// completejob failing, a shutdown in the middle of a job, a process that died holding a job (its
// successor ends it), a stalled Results service while lines stream live, and a long job's many idle
// waits. Faults come from the fake's deterministic switches, opened and closed on observed states.
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { JobEventBody } from "../../../src/contract/job-event.js";
import { type FakeGitHubServer, startFakeGitHub } from "../../fakes/github-server.js";
import { until } from "../../support/qemu-processes.js";
import { happyEvents, type LogRecord, startRunner } from "./harness.js";

const WARN = 40;

function stepIds(fake: FakeGitHubServer, jobId: string): string[] {
  return (fake.jobMessage(jobId, "v2") as { steps: { id: string }[] }).steps.map((s) => s.id);
}

/** What the job's page shows for a step, from the step updates GitHub accepted. */
function shown(fake: FakeGitHubServer, jobId: string, stepId: string): Record<string, unknown> | undefined {
  return fake.job(jobId).stepView.get(stepId);
}

function messages(records: readonly LogRecord[], level: number, pattern: RegExp): string[] {
  return records.filter((r) => r.level === level && pattern.test(r.msg)).map((r) => r.msg);
}

describe("github runner, broker flow, under faults", () => {
  it("completes a job whose end falls into a Results outage once Results is back, with every log, renewing meanwhile", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator, records } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    const [, hello] = stepIds(fake, job.jobId);
    const all = happyEvents(["one", "two"], { answer: "42" });
    await orchestrator.emit(req, ...all.slice(0, 7)); // up to "Say hello" started
    await fake.waitFor(() => shown(fake, job.jobId, hello!)?.["status"] === 3, "Say hello in progress");

    fake.faults.results = "failing";
    const renewed = fake.job(job.jobId).renewals.length;
    const refused = fake.resultsRefused;
    await orchestrator.emit(req, ...all.slice(7)); // the step's lines, its end and the job's end
    await fake.waitFor(
      () => fake.resultsRefused >= refused + 8 && fake.job(job.jobId).renewals.length >= renewed + 3,
      "retries against Results and renewals during the outage",
    );
    assert.equal(fake.job(job.jobId).state, "acquired", "the job waits for its logs while they can still come");
    fake.faults.results = "up";

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "succeeded");
    assert.deepEqual(done.outputs, { answer: { value: "42", isSecret: false } });
    assert.equal(done.stepLogs.size, 4, "every step's log arrived");
    for (const [, log] of done.stepLogs) assert.equal(log.content.trimEnd().split("\n").length, log.lineCount);
    assert.match(done.jobLog?.content ?? "", /one\n.*two/s);
    assert.deepEqual(fake.stepsNotInResults(job.jobId), []);
    assert.ok(
      [...done.stepView.values()].every((s) => s["status"] === 6),
      "the page shows every step completed",
    );
    // An outage is two lines in the daemon's log, however many calls failed.
    assert.equal(messages(records, WARN, /GitHub/).length, 1, JSON.stringify(records.filter((r) => r.level >= WARN)));
    assert.equal(messages(records, 30, /works again/).length, 1);
  });

  it("completes the job when Results stays down, and says which logs are missing", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator, records } = await startRunner(t, fake, { timings: { finalFlushMs: 1_000 } });
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    const all = happyEvents(["one", "two"]);
    await orchestrator.emit(req, ...all.slice(0, 7));
    await fake.waitFor(() => fake.job(job.jobId).stepUpdates.length > 0, "the first step update");
    fake.faults.results = "failing";
    await orchestrator.emit(req, ...all.slice(7));

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "succeeded");
    assert.deepEqual(fake.stepsNotInResults(job.jobId), []);
    const warning = (done.annotations ?? []).find((a) => a["level"] === "WARNING");
    assert.match(String(warning?.["message"]), /could not upload the logs? of .*Say hello.* to GitHub/);
    assert.ok(
      records.some((r) => r.level === WARN && /completing the job without/.test(r.msg)),
      "the daemon's log says the job was completed without some logs",
    );
  });

  it("retries completejob with backoff while the run service fails it, renewing the lock meanwhile", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    fake.faults.completeErrors = 8;
    await orchestrator.emit(req, ...happyEvents(["done"]));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.equal(fake.completeRefused, 8, "every failed completion was tried again");
    assert.equal(fake.job(job.jobId).conclusion, "succeeded");
  });

  it("gives up completing a job when the lock it had at the job's end runs out, and lets go of it", async (t) => {
    const lockMs = 1_500;
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300, lockMs });
    const { orchestrator, runner, records } = await startRunner(t, fake);
    fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    fake.faults.completeErrors = Number.MAX_SAFE_INTEGER;
    await orchestrator.emit(req, ...happyEvents(["done"]));
    const endedAt = Date.now();
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
    const attempts = fake.calls("/run/completejob", "POST").map((r) => r.at);
    assert.ok(attempts.length > 1, "it tried more than once");
    // The lock granted last before the end ran out at most lockMs after it; the slack is for a
    // request started just before that on a busy machine.
    assert.ok(
      (attempts.at(-1) ?? 0) <= endedAt + lockMs + 500,
      `no attempt after the lock ran out (last ${(attempts.at(-1) ?? 0) - endedAt} ms after the end)`,
    );
    assert.equal(messages(records, WARN, /did not accept the job's completion/).length, 1, "one line for the outage");
    assert.equal(messages(records, 50, /could not complete the job on GitHub/).length, 1);
  });

  it("leaves a job whose completion a stop cut short to the next process, which completes it with its own result", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const dir = await mkdtemp(join(tmpdir(), "gnomon-gh-cut-"));
    const file = join(dir, "held.json");
    const a = await startRunner(t, fake, { labels: ["debian-12"], inFlightFile: file, timings: { finalFlushMs: 300 } });
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await a.orchestrator.nextJob();
    await a.orchestrator.emit(req, ...happyEvents(["one"]).slice(0, 5)); // checkout started, one line
    await fake.waitFor(() => fake.job(job.jobId).stepUpdates.length > 0, "the first step update");
    fake.faults.completeErrors = Number.MAX_SAFE_INTEGER;
    await a.runner.stop(AbortSignal.abort());
    assert.equal(fake.job(job.jobId).state, "acquired", "GitHub did not take the completion");
    const kept = JSON.parse(await readFile(file, "utf8")) as { held: { contractId: string; outcome?: unknown }[] };
    assert.deepEqual(
      kept.held.map((h) => [h.contractId, h.outcome]),
      [[req.id, { result: "cancelled", outputs: {}, reason: "the gnomon runner was stopped before the job finished" }]],
    );

    fake.faults.completeErrors = 0;
    await startRunner(t, fake, { registration: a.registration, inFlightFile: file });
    // Removed after the runners are stopped (after-hooks run in the order they were added): a runner
    // that holds a job writes its file until then.
    t.after(() => rm(dir, { recursive: true, force: true }));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed by the next process");
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "canceled", "the result it had, not a crash's failure");
    assert.deepEqual(
      (done.stepResults ?? []).map((s) => [s["name"], s["conclusion"]]),
      [
        ["Set up job", "succeeded"],
        ["Run actions/checkout@v4", "canceled"],
        ["Say hello", "skipped"],
        ["Complete job", "succeeded"],
      ],
    );
    await fake.waitFor(async () => JSON.parse(await readFile(file, "utf8")).held.length === 0, "the entry forgotten");
  });

  it("reports every step of the job message when it ends a job itself on shutdown, those never started as skipped", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator, runner } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    const [checkout, hello] = stepIds(fake, job.jobId);
    await orchestrator.emit(
      req,
      { kind: "accepted", orchestrator: "host-1" },
      { kind: "step-started", step: 0, stage: "main", name: "Run actions/checkout@v4" },
    );
    await fake.waitFor(() => shown(fake, job.jobId, checkout!)?.["status"] === 3, "checkout in progress");

    await runner.stop(AbortSignal.abort()); // the stop deadline has passed: the job is ended now
    const done = fake.job(job.jobId);
    assert.equal(done.state, "completed");
    assert.equal(done.conclusion, "canceled");
    assert.deepEqual(fake.stepsNotInResults(job.jobId), []);
    assert.deepEqual(
      (done.stepResults ?? []).map((s) => [s["name"], s["status"], s["conclusion"]]),
      [
        ["Set up job", "completed", "succeeded"],
        ["Run actions/checkout@v4", "completed", "canceled"],
        ["Say hello", "completed", "skipped"],
        ["Complete job", "completed", "succeeded"],
      ],
    );
    assert.equal(shown(fake, job.jobId, hello!)?.["conclusion"], 7, "the page shows it skipped too");
  });

  it("continues the step updates of a job whose runner process died above that process's change order", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { a, left, dir } = await diedHoldingAJob(t, fake, { progressOnDisk: false });
    const jobId = a.job;
    await startRunner(t, fake, { registration: a.registration, inFlightFile: left });
    // Removed after the runners are stopped (after-hooks run in the order they were added): a runner
    // that holds a job writes its file until then.
    t.after(() => rm(dir, { recursive: true, force: true }));
    await fake.waitFor(() => fake.job(jobId).state === "completed", "the job completed by the successor");
    const done = fake.job(jobId);
    assert.deepEqual(
      done.ignoredStepUpdates.map((u) => u.changeOrder),
      [],
      `no update of the successor was dropped (accepted: ${done.stepUpdates.map((u) => u.changeOrder).join(", ")})`,
    );
    const complete = (done.stepResults ?? []).find((s) => s["name"] === "Complete job");
    assert.equal(shown(fake, jobId, String(complete?.["external_id"]))?.["status"], 6);
  });

  it("ends a job whose runner process died with every step: finished ones as they ended, the running one failed, the rest skipped", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { a, left, dir } = await diedHoldingAJob(t, fake, { progressOnDisk: true });
    const jobId = a.job;
    const [checkout, hello, build] = stepIds(fake, jobId);
    await startRunner(t, fake, { registration: a.registration, inFlightFile: left });
    // Removed after the runners are stopped (after-hooks run in the order they were added): a runner
    // that holds a job writes its file until then.
    t.after(() => rm(dir, { recursive: true, force: true }));
    await fake.waitFor(() => fake.job(jobId).state === "completed", "the job completed by the successor");
    const done = fake.job(jobId);
    assert.equal(done.conclusion, "failed");
    assert.deepEqual(fake.stepsNotInResults(jobId), []);
    assert.deepEqual(
      (done.stepResults ?? []).map((s) => [s["name"], s["conclusion"]]),
      [
        ["Set up job", "succeeded"],
        ["Run actions/checkout@v4", "succeeded"],
        ["Say hello", "failed"],
        ["Build", "skipped"],
        ["Complete job", "failed"],
      ],
    );
    assert.equal(shown(fake, jobId, checkout!)?.["conclusion"], 2, "still shown as it ended");
    assert.deepEqual(
      [hello, build].map((id) => shown(fake, jobId, id!)?.["status"]),
      [6, 6],
      "no step is left running on the page",
    );
    const completeLog = [...done.stepLogs.values()].map((l) => l.content).join("\n");
    assert.match(completeLog, /the runner process that held this job stopped unexpectedly/);
    assert.equal(done.stepLogs.get(checkout!)?.lineCount, 1, "the dead process's upload was not overwritten");
  });

  it("streams a running step's lines live while the Results service hangs", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake, {
      // A hung Results call holds for the full client timeout: long enough to show any waiting on it.
      timings: { channel: { callTimeoutMs: 60_000, uploadAttempts: 2, uploadRetryMs: 20 } },
    });
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    const [, hello] = stepIds(fake, job.jobId);
    await orchestrator.emit(
      req,
      { kind: "accepted", orchestrator: "host-1" },
      { kind: "step-started", step: 1, stage: "main", name: "Say hello" },
    );
    await fake.waitFor(() => shown(fake, job.jobId, hello!)?.["status"] === 3, "Say hello in progress");
    fake.faults.results = "stalled";
    const liveLines = () =>
      fake
        .job(job.jobId)
        .feed.filter((f) => f.stepId === hello)
        .flatMap((f) => f.lines);
    for (const batch of [["first"], ["second"], ["third"]]) {
      await orchestrator.emit(req, logOf(1, batch));
      await fake.waitFor(() => liveLines().includes(batch[0]!), `"${batch[0]}" on the live console`);
    }
    fake.faults.results = "up";
    await orchestrator.emit(req, ...happyEvents([]).slice(8));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.match(fake.job(job.jobId).stepLogs.get(hello!)?.content ?? "", /first\n.*second\n.*third/s);
  });

  it("waits for news through a long job without piling up abort listeners", async (t) => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    t.after(() => process.off("warning", onWarning));
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    const [, hello] = stepIds(fake, job.jobId);
    await orchestrator.emit(req, { kind: "step-started", step: 1, stage: "main", name: "Say hello" });
    // Each round: a line, its arrival, then two renewals (300 ms), by which time the report loops
    // have gone idle again and wait for the next piece of news.
    for (let i = 0; i < 14; i += 1) {
      await orchestrator.emit(req, logOf(1, [`line ${i}`]));
      await fake.waitFor(
        () => fake.job(job.jobId).feed.some((f) => f.stepId === hello && f.lines.includes(`line ${i}`)),
        `line ${i} on the live console`,
      );
      const renewals = fake.job(job.jobId).renewals.length;
      await fake.waitFor(() => fake.job(job.jobId).renewals.length >= renewals + 2, "two renewals");
    }
    await orchestrator.emit(req, ...happyEvents([]).slice(8));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
    assert.deepEqual(
      warnings.filter((w) => w.name === "MaxListenersExceededWarning").map((w) => w.message),
      [],
    );
  });
});

function logOf(step: number, lines: readonly string[]): JobEventBody {
  return { kind: "log", step, stage: "main", lines: lines.map((text) => ({ t: Date.now(), text })) };
}

/**
 * A runner process that took a three-step job, finished its first step, was running the second and
 * then died: it cannot reach GitHub any more, and what its held-jobs file said is left for a
 * successor (`progressOnDisk`: once the file shows the running step). Returns that file, in `dir`
 * (which the caller removes once its runners are stopped).
 */
async function diedHoldingAJob(
  t: Parameters<typeof startRunner>[0],
  fake: FakeGitHubServer,
  opts: { progressOnDisk: boolean },
): Promise<{
  a: { job: string; registration: Awaited<ReturnType<typeof startRunner>>["registration"] };
  left: string;
  dir: string;
}> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-gh-died-"));
  const file = join(dir, "held.json");
  let dead = false;
  const cut: typeof fetch = (input, init) =>
    dead ? Promise.reject(new TypeError("fetch failed: the process is gone")) : fetch(input, init);
  const a = await startRunner(t, fake, {
    labels: ["debian-12"],
    inFlightFile: file,
    fetch: cut,
    timings: { finalFlushMs: 200 },
  });
  const job = fake.queueJob({
    labels: ["debian-12"],
    steps: [{ uses: "actions/checkout@v4" }, { name: "Say hello", run: "echo hello" }, { name: "Build", run: "make" }],
  });
  const req = await a.orchestrator.nextJob();
  const [checkout, hello] = stepIds(fake, job.jobId);
  await a.orchestrator.emit(
    req,
    { kind: "accepted", orchestrator: "host-1" },
    { kind: "step-started", step: 0, stage: "main", name: "Run actions/checkout@v4" },
    { kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "Syncing repository" }] },
    { kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} },
    { kind: "step-started", step: 1, stage: "main", name: "Say hello" },
    { kind: "log", step: 1, stage: "main", lines: [{ t: Date.now(), text: "hel" }] },
  );
  await fake.waitFor(
    () => fake.job(job.jobId).stepLogs.has(checkout!) && shown(fake, job.jobId, hello!)?.["status"] === 3,
    "checkout's log uploaded and Say hello shown running",
  );
  if (opts.progressOnDisk)
    await until(
      async () => {
        const held = JSON.parse(await readFile(file, "utf8").catch(() => "{}")) as {
          held?: { contractId: string; progress?: { id: string; state: string }[] }[];
        };
        const entry = held.held?.find((h) => h.contractId === req.id);
        return entry?.progress?.some((r) => r.id === hello && r.state === "inProgress");
      },
      "the running step in the held-jobs file",
      10_000,
      20,
    );
  dead = true;
  const left = join(dir, "left.json");
  await copyFile(file, left);
  return { a: { job: job.jobId, registration: a.registration }, left, dir };
}
