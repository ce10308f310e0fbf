// The github.com (broker) flow end to end against the fake: session, long-poll, acquire on the run
// service, the JobRequest on the in-process bus, the orchestrator's JobEvents reported as steps and
// logs through the Results service, completion with result and outputs; renewal, cancellation,
// acquire conflicts, capacity, version refusal, a lost registration and ephemeral runners.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { openSecrets } from "../../../src/contract/sealed-secrets.js";
import { RegistrationLostError, RunnerVersionDeprecatedError } from "../../../src/forge/github/errors.js";
import { ORPHAN_REASON } from "../../../src/forge/orphan-jobs.js";
import { Slots } from "../../../src/lifecycle/slots.js";
import { startFakeGitHub } from "../../fakes/github-server.js";
import { until } from "../../support/qemu-processes.js";
import { maskedLine, printedForms } from "../../support/secret-prints.js";
import { happyEvents, startRunner } from "./harness.js";

const SECRET = "hunter2-is-not-a-password";
const TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z /;

describe("github runner, broker flow (github.com)", () => {
  it("delivers a job onto the bus and reports the orchestrator's events as steps, logs and result, in order", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator, runner, clusterKey } = await startRunner(t, fake);
    const job = fake.queueJob({
      labels: ["self-hosted", "debian-12"],
      secrets: { MY_SECRET: SECRET },
      outputs: { answer: "x" },
    });

    const req = await orchestrator.nextJob();
    assert.equal(req.id, job.jobId);
    assert.equal(req.runsOn, "debian-12");
    assert.equal(req.replyTo, runner.replyTo);
    assert.equal(openSecrets(req.secrets, clusterKey, req.id)["MY_SECRET"], SECRET);
    const acquired = fake.job(job.jobId);
    assert.equal(acquired.state, "acquired");
    assert.ok(acquired.renewals.length >= 1, "the first renewal came before the job was queued");
    assert.equal(runner.heldJobs, 1);
    // Every call that carries the runner version was accepted (GitHub refuses those without one).
    const versioned = [...fake.calls("/broker/session", "POST"), ...fake.calls(/^\/broker\/(message|acknowledge)$/)];
    assert.ok(
      fake.calls("/broker/acknowledge", "POST").length === 1,
      "the job request was acknowledged (its reference asks for it)",
    );
    assert.deepEqual(
      versioned.filter((r) => r.status !== undefined && r.status !== 200).map((r) => `${r.path} ${r.status}`),
      [],
    );

    const message = fake.jobMessage(job.jobId, "v2") as { steps: { id: string }[] };
    const all = happyEvents(
      ["hello linux", `the secret is ${SECRET}`, `base64: ${Buffer.from(SECRET).toString("base64")}`, "bye"],
      { answer: "42" },
    );
    // Up to "Say hello" started: GitHub shows it running before anything else happens.
    await orchestrator.emit(req, ...all.slice(0, 7));
    const inProgress = (s: Record<string, unknown>) => s["external_id"] === message.steps[1]?.id && s["status"] === 3;
    await fake.waitFor(
      () => fake.job(job.jobId).stepUpdates.some((u) => u.steps.some(inProgress)),
      "Say hello in progress",
    );
    const events = await orchestrator.emit(req, ...all.slice(7));
    // At-least-once delivery: a redelivered event must not repeat a line.
    await orchestrator.bus.publishEvent(req.replyTo, events[0]!);

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "succeeded");
    assert.deepEqual(done.outputs, { answer: { value: "42", isSecret: false } });
    const steps = done.stepResults ?? [];
    assert.deepEqual(
      steps.map((s) => [s["name"], s["number"], s["status"], s["conclusion"]]),
      [
        ["Set up job", 1, "completed", "succeeded"],
        ["Run actions/checkout@v4", 2, "completed", "succeeded"],
        ["Say hello", 3, "completed", "succeeded"],
        ["Complete job", 4, "completed", "succeeded"],
      ],
    );
    assert.equal(steps[1]?.["external_id"], message.steps[0]?.id, "a step's record is the job message's step id");
    assert.equal(steps[1]?.["action_name"], "actions/checkout");

    // Step updates: change orders strictly increase; each step goes in progress before it completes.
    const orders = done.stepUpdates.map((u) => u.changeOrder);
    assert.deepEqual(
      orders,
      [...orders].sort((a, b) => a - b),
    );
    const hello = done.stepUpdates.flatMap((u) => u.steps).filter((s) => s["external_id"] === message.steps[1]?.id);
    assert.equal(hello[0]?.["status"], 3, "first seen in progress");
    assert.equal(hello.at(-1)?.["status"], 6, "last seen completed");
    assert.equal(hello.at(-1)?.["conclusion"], 2);

    const helloLog = done.stepLogs.get(message.steps[1]!.id);
    assert.ok(helloLog);
    const lines = helloLog.content.trimEnd().split("\n");
    assert.equal(helloLog.lineCount, 4);
    assert.ok(
      lines.every((l) => TS.test(l)),
      "each line starts with the runner's time format",
    );
    assert.deepEqual(
      lines.map((l) => l.replace(TS, "")),
      ["hello linux", "the secret is ***", "base64: ***", "bye"],
    );
    const setupLog = [...done.stepLogs.values()][0]!.content;
    assert.match(setupLog, /job accepted by host-1.*\n.*debian-12: booting/s);
    assert.match(done.jobLog?.content ?? "", /Syncing repository[\s\S]*hello linux[\s\S]*bye[\s\S]*Cleaning up the VM/);

    const everything = fake.everythingReceived();
    for (const s of [SECRET, Buffer.from(SECRET).toString("base64"), job.githubToken])
      assert.ok(!everything.includes(s), `nothing the fake received contains ${s.slice(0, 6)}…`);
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("masks the job's secrets in every form before anything leaves, even in events an orchestrator did not mask", async (t) => {
    const secret = `it's "a/b+c" é😀\\x`;
    const forms = printedForms(secret);
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["self-hosted", "debian-12"], secrets: { MY_SECRET: secret } });
    const req = await orchestrator.nextJob();
    const message = fake.jobMessage(job.jobId, "v2") as { steps: { id: string }[] };
    const printed = forms.map((f) => `${f.name}: ${f.printed}`);
    const all = happyEvents(printed, { leaked: encodeURIComponent(secret) });
    // The printing step's lines first, until the live console has shown them all; then its end.
    await orchestrator.emit(req, ...all.slice(0, 8));
    const liveLines = () =>
      fake
        .job(job.jobId)
        .feed.filter((f) => f.stepId === message.steps[1]!.id)
        .flatMap((f) => f.lines);
    await fake.waitFor(() => liveLines().length >= forms.length, "the step's lines on the live console");
    await orchestrator.emit(req, ...all.slice(8));

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const done = fake.job(job.jobId);
    const lines = done.stepLogs.get(message.steps[1]!.id)?.content.trimEnd().split("\n") ?? [];
    assert.deepEqual(
      lines.map((l) => l.replace(TS, "")),
      forms.map((f) => maskedLine(f, `${f.name}: `)),
    );
    assert.deepEqual(
      liveLines(),
      forms.map((f) => maskedLine(f, `${f.name}: `)),
      "the live console showed them masked too",
    );
    assert.ok(
      fake.liveMessages.some((m) => m.jobId === job.jobId),
      "the live console's messages are part of what is searched below",
    );
    assert.deepEqual(done.outputs, { leaked: { value: "***", isSecret: false } });
    const stored = [...done.stepLogs.values(), done.jobLog]
      .map((l) => l?.content ?? "")
      .join("\n")
      .concat(fake.everythingReceived());
    for (const f of forms) assert.ok(!stored.includes(f.encoded), `GitHub received no ${f.name} form of the secret`);
  });

  it("fails a job it cannot run on GitHub with the reason, without queueing it", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({
      labels: ["debian-12"],
      steps: [{ name: "Wait for services", run: "true", raw: { type: "backgroundStepControl" } }],
    });
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "failed");
    assert.match(
      String(done.annotations?.[0]?.["message"]),
      /gnomon cannot run this job: step 1 \(Wait for services\) is of type "backgroundStepControl"/,
    );
    assert.equal(done.annotations?.[0]?.["level"], "FAILURE");
    assert.equal(orchestrator.jobs.length, 0, "nothing was queued");
  });

  it("skips a job another runner acquired first (409) quietly and takes the next one", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    fake.faults.acquireConflicts = 1;
    const lost = fake.queueJob({ labels: ["debian-12"] });
    const { orchestrator, records } = await startRunner(t, fake);
    await fake.waitFor(() => fake.job(lost.jobId).acquireAttempts === 1, "the first acquire");
    const next = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    assert.equal(req.id, next.jobId, "the next job was taken");
    assert.equal(orchestrator.jobs.length, 1, "the conflicting job never reached the bus");
    assert.deepEqual(
      records.filter((r) => r.level >= 40).map((r) => r.msg),
      [],
      "nothing worse than debug was logged about it",
    );
    await orchestrator.emit(req, ...happyEvents(["ok"]));
    await fake.waitFor(() => fake.job(next.jobId).state === "completed", "the next job completed");
  });

  it("finishes a log upload that broke after the blob was stored, without a second copy", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    fake.faults.uploadFailuresAfterStore = 1;
    await orchestrator.emit(req, ...happyEvents(["x", "y"]));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const done = fake.job(job.jobId);
    assert.equal(fake.faults.uploadFailuresAfterStore, 0, "the fault happened");
    assert.equal(done.stepLogs.size, 4, "every step's log has its metadata");
    for (const [, log] of done.stepLogs) assert.equal(log.content.trimEnd().split("\n").length, log.lineCount);
  });

  it("keeps a job alive past several lock periods by renewing from the daemon", async (t) => {
    const lockMs = 600;
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300, lockMs });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    const started = fake.job(job.jobId).renewals[0]!;
    await orchestrator.emit(req, { kind: "accepted", orchestrator: "host-1" });
    await fake.waitFor(
      () => (fake.job(job.jobId).renewals.at(-1) ?? 0) - started > 4 * lockMs,
      "renewals over four lock periods",
    );
    const alive = fake.job(job.jobId);
    assert.equal(alive.state, "acquired", "the lock never ran out");
    assert.equal(alive.lockExpiredAt, undefined);
    const gaps = alive.renewals.slice(1).map((at, i) => at - alive.renewals[i]!);
    assert.ok(Math.max(...gaps) < lockMs, `every renewal came within the lock (gaps ${gaps.join(", ")} ms)`);
    await orchestrator.emit(req, ...happyEvents(["done"]).slice(1));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
  });

  it("publishes a Cancel when renewal keeps failing past the lock, so the VM is destroyed", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300, lockMs: 500 });
    const { orchestrator, runner } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    await orchestrator.emit(
      req,
      { kind: "accepted", orchestrator: "host-1" },
      { kind: "step-started", step: 0, stage: "main", name: "checkout" },
    );
    fake.faults.renewFailing = true;
    const cancel = await orchestrator.until(
      () => orchestrator.cancels.find((c) => c.jobId === req.id),
      "a Cancel for the job",
    );
    // Depending on the race with GitHub's own expiry, the last renewal fails or finds the job gone.
    assert.match(cancel.reason, /lock of GitHub job .* expired .* could not be renewed|no longer knows job/);
    assert.equal(fake.job(job.jobId).state, "lost", "GitHub gave the job up too");
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("turns a cancellation on GitHub into a Cancel on the bus and completes the job cancelled", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    await orchestrator.emit(
      req,
      { kind: "accepted", orchestrator: "host-1" },
      { kind: "step-started", step: 1, stage: "main", name: "Say hello" },
    );
    fake.cancelJob(job.jobId);
    const cancel = await orchestrator.until(() => orchestrator.cancels.find((c) => c.jobId === req.id), "a Cancel");
    assert.equal(cancel.reason, "the job was cancelled on GitHub");
    await orchestrator.emit(
      req,
      { kind: "step-finished", step: 1, stage: "main", outcome: "cancelled", conclusion: "cancelled", outputs: {} },
      { kind: "job-finished", result: "cancelled", outputs: {}, reason: "cancelled on GitHub" },
    );
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.equal(fake.job(job.jobId).conclusion, "canceled");
    assert.deepEqual(
      fake.job(job.jobId).stepResults?.map((s) => [s["name"], s["conclusion"]]),
      [
        ["Set up job", "succeeded"],
        ["Say hello", "canceled"],
        ["Run actions/checkout@v4", "skipped"], // the orchestrator never started it
        ["Complete job", "succeeded"],
      ],
    );
  });

  it("completes a cancelled job itself when the orchestrator does not answer in time", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    await orchestrator.nextJob();
    fake.cancelJob(job.jobId, "00:00:01");
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.equal(fake.job(job.jobId).conclusion, "canceled");
  });

  it("warns at start and says in the job's log when no orchestrator serves its label", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { records, runner } = await startRunner(t, fake, { labels: ["debian-12"], noOrchestrator: true });
    assert.ok(records.some((r) => /no orchestrator serves runs-on "debian-12"/.test(String(r.msg))));
    const job = fake.queueJob({ labels: ["debian-12"] });
    await fake.waitFor(() => fake.job(job.jobId).state === "acquired" && runner.heldJobs === 1, "the job held");
    // Cancelled with nobody to stop it: the runner completes it itself and uploads what it has.
    fake.cancelJob(job.jobId, "00:00:01");
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    const logs = [...fake.job(job.jobId).stepLogs.values()].map((l) => l.content).join("\n");
    assert.match(logs, /gnomon: No gnomon orchestrator serves runs-on "debian-12" at the moment/);
  });

  it("completes at start, as failed and saying why, a job the previous process held when it died, and stops it", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const dir = await mkdtemp(join(tmpdir(), "gnomon-gh-held-"));
    const file = join(dir, "held.json");
    const a = await startRunner(t, fake, { labels: ["debian-12"], inFlightFile: file });
    const job = fake.queueJob({ labels: ["debian-12"], secrets: { MY_SECRET: SECRET } });
    const req = await a.orchestrator.nextJob();
    await until(
      async () => (await readFile(file, "utf8").catch(() => "")).includes(req.id),
      "the job on disk",
      10_000,
      20,
    );
    const onDisk = await readFile(file, "utf8");
    assert.ok(!onDisk.includes(SECRET), "no secret is kept on disk");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    // What the file held when the process died, for a successor with the same registration.
    const left = join(dir, "left.json");
    await writeFile(left, onDisk);
    const b = await startRunner(t, fake, { registration: a.registration, inFlightFile: left });
    // Removed after the runners are stopped (after-hooks run in the order they were added): a runner
    // that holds a job writes its file until then.
    t.after(() => rm(dir, { recursive: true, force: true }));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed by the successor");
    assert.equal(fake.job(job.jobId).conclusion, "failed");
    const logs = [...fake.job(job.jobId).stepLogs.values()].map((l) => l.content).join("\n");
    assert.match(logs, /gnomon: the runner process that held this job stopped unexpectedly/);
    const cancel = await b.orchestrator.until(
      () => b.orchestrator.cancels.find((c) => c.jobId === req.id),
      "a Cancel for the orphaned job",
    );
    assert.equal(cancel.reason, ORPHAN_REASON);
    await fake.waitFor(
      async () => JSON.parse(await readFile(left, "utf8")).held.length === 0,
      "the leftovers forgotten",
    );
  });

  it("streams a running step's lines to the live console before the step ends, masked", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"], secrets: { MY_SECRET: SECRET } });
    const req = await orchestrator.nextJob();
    const message = fake.jobMessage(job.jobId, "v2") as { steps: { id: string }[] };
    const all = happyEvents(["compiling 1/3", `with ${SECRET}`, "compiling 3/3"]);
    await orchestrator.emit(req, ...all.slice(0, 8)); // up to the second step's lines, not its end
    const step = message.steps[1]!.id;
    await fake.waitFor(
      () =>
        fake
          .job(job.jobId)
          .feed.filter((f) => f.stepId === step)
          .flatMap((f) => f.lines).length >= 3,
      "the step's lines on the live console",
    );
    assert.equal(fake.job(job.jobId).stepLogs.has(step), false, "the step has not ended: its log is not uploaded yet");
    const live = fake.job(job.jobId).feed.filter((f) => f.stepId === step);
    assert.deepEqual(
      live.flatMap((f) => f.lines),
      ["compiling 1/3", "with ***", "compiling 3/3"],
    );
    assert.equal(live[0]?.startLine, 1);
    await orchestrator.emit(req, ...all.slice(8));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.equal(fake.job(job.jobId).conclusion, "succeeded");
  });

  it("without a live console (the socket is refused) still uploads every step's log", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    fake.faults.feedDown = true;
    const { orchestrator } = await startRunner(t, fake);
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    await orchestrator.emit(req, ...happyEvents(["one", "two"]));
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed");
    assert.equal(fake.job(job.jobId).conclusion, "succeeded");
    assert.deepEqual(fake.job(job.jobId).feed, []);
    const logs = [...fake.job(job.jobId).stepLogs.values()].map((l) => l.content).join("\n");
    assert.match(logs, /one\n.*two/s);
  });

  it("does not poll for jobs while every slot is taken", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 300 });
    const slots = new Slots(1);
    const held = await slots.acquire();
    await startRunner(t, fake, { capacity: slots });
    await fake.waitFor(() => fake.calls("/broker/session", "POST").length === 1, "the session");
    await sleep(300); // nothing to wait on: the point is that no poll happens
    assert.equal(fake.calls("/broker/message").length, 0);
    held.release();
    await fake.waitFor(() => fake.calls("/broker/message").length > 0, "a poll once a slot is free");
  });

  it("refuses to start with an advertised version GitHub calls deprecated, saying what to set", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", minRunnerVersion: "2.331.0" });
    const { runner } = await startRunner(t, fake, { start: false });
    await assert.rejects(runner.start(), (err: unknown) => {
      assert.ok(err instanceof RunnerVersionDeprecatedError);
      assert.match(
        err.message,
        /refuses runner version 2\.330\.0 .*deprecated.*set github\.runnerVersion.*GNOMON_GITHUB_RUNNER_VERSION/,
      );
      return true;
    });
  });

  it("stops with 'run gnomon github register again' when the registration is deleted while it runs", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 200 });
    const { runner, registration } = await startRunner(t, fake);
    await fake.waitFor(() => fake.calls("/broker/message").length > 0, "polling");
    const exchanges = fake.tokenExchanges;
    fake.deleteRunner(registration.settings.agentId);
    const why = await runner.done;
    assert.ok(why instanceof RegistrationLostError, String(why));
    assert.match(why.message, /run `gnomon github register` again/);
    assert.ok(fake.tokenExchanges === exchanges, "no token was granted afterwards");
    const polls = fake.calls("/broker/message").length;
    await sleep(300);
    assert.equal(fake.calls("/broker/message").length, polls, "and it stopped asking");
  });

  it("an ephemeral runner takes one job and then ends; GitHub deletes it with that job's completion", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 200 });
    const { orchestrator, runner, registration } = await startRunner(t, fake, { ephemeral: true });
    const first = fake.queueJob({ labels: ["debian-12"] });
    const second = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    assert.equal(req.id, first.jobId);
    await orchestrator.emit(req, ...happyEvents(["once"]));
    assert.equal(await runner.done, undefined);
    assert.ok(runner.finishedEphemeral);
    assert.equal(runner.ephemeralEnd, "job-done");
    assert.equal(fake.job(first.jobId).conclusion, "succeeded");
    assert.equal(fake.runner(registration.settings.agentId)?.deleted, true, "GitHub deleted the registration");
    assert.equal(fake.job(second.jobId).state, "queued", "the second job was left to another runner");
    assert.equal(orchestrator.jobs.length, 1);
  });

  it("an ephemeral runner told by a poll that its registration is gone before its completion was answered ends as finished, not as a lost registration", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 200 });
    // completejob takes effect (GitHub deletes the runner) but its answer comes late: the runner's
    // next poll learns of the deletion first.
    fake.faults.completeAnswerDelayMs = 1_500;
    const { orchestrator, runner, registration, records } = await startRunner(t, fake, { ephemeral: true });
    const job = fake.queueJob({ labels: ["debian-12"] });
    const req = await orchestrator.nextJob();
    await orchestrator.emit(req, ...happyEvents(["once"]));
    await fake.waitFor(() => fake.runner(registration.settings.agentId)?.deleted, "the registration deleted");
    const polled = await fake.waitFor(
      () => fake.calls("/broker/message").find((r) => r.at > fake.job(job.jobId).renewals[0]! && r.status === 401),
      "a poll answered 401 after the deletion",
    );
    assert.ok(polled);
    assert.equal(await runner.done, undefined, "the runner ends without an error");
    assert.equal(runner.ephemeralEnd, "job-done");
    assert.equal(fake.job(job.jobId).conclusion, "succeeded");
    assert.ok(
      !records.some((r) => r.level >= 50 && /register/.test(JSON.stringify(r))),
      "nothing tells the operator to register again",
    );
  });

  it("an ephemeral runner whose one job went to another runner ends, instead of polling for a job GitHub never gives it", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 200 });
    fake.faults.acquireConflicts = 1; // another runner wins the job between assignment and acquire
    const { orchestrator, runner, registration } = await startRunner(t, fake, { ephemeral: true });
    const lost = fake.queueJob({ labels: ["debian-12"] });
    const other = fake.queueJob({ labels: ["debian-12"] });
    const end = await Promise.race([runner.done, sleep(10_000, "still polling after 10 s")]);
    assert.equal(end, undefined);
    assert.ok(runner.finishedEphemeral, "the registration is used up: the CLI deletes its files");
    assert.equal(runner.ephemeralEnd, "job-lost");
    assert.equal(fake.job(lost.jobId).runnerId, -1, "the other runner has it");
    assert.equal(fake.job(other.jobId).state, "queued", "GitHub gave this runner no second job");
    assert.equal(fake.runner(registration.settings.agentId)?.assignments, 1);
    assert.equal(orchestrator.jobs.length, 0);
  });
});
