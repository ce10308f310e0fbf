// GitHub jobs end to end through the real pieces, for both flows (github.com's broker and run
// service, GHES's classic message queue and plan hub): a runner registered with the shipped CLI
// against the fake GitHub, the runner role as `gnomon up` builds it, RabbitMQ, the orchestrator on
// PostgreSQL, and a real VM of the offline test image. What counts is what the fake GitHub received.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { VERSION } from "../../src/cli/version.js";
import { readRegistration } from "../../src/forge/github/credentials.js";
import { createGitHubRunner, type GitHubRunner, type GitHubRunnerTimings } from "../../src/forge/github/runner.js";
import { Slots } from "../../src/lifecycle/slots.js";
import { type FakeGitHubOptions, type FakeGitHubServer, startFakeGitHub } from "../fakes/github-server.js";
import { registerGitHubWithCli } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  assertEachSaidOnce,
  nextVm,
  type Stage,
  type StageOptions,
  startStage,
  testLogger,
  until,
  vmGone,
} from "../support/forge-e2e.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { maskedLine, PRINT_SECRET_FORMS, printedForms } from "../support/secret-prints.js";
import { testImage } from "../support/test-image.js";

const VM_JOB_MS = 240_000;
const BUNDLE = fileURLToPath(new URL("../../dist/gnomon.mjs", import.meta.url));
const SECRET = "s3cr3t-value-for-the-e2e";
const SECRET_B64 = Buffer.from(SECRET).toString("base64");
/** The runner's time prefix on every line it uploads. */
const TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z /;

let td: TestDatabase;

interface GitHubStage {
  readonly fake: FakeGitHubServer;
  readonly stage: Stage;
  readonly runner: GitHubRunner;
}

/** The fake, the stage, a runner registered through the bundled CLI and started; torn down in order. */
async function startGitHubStage(
  t: TestContext,
  name: string,
  o: {
    fake?: FakeGitHubOptions;
    stage?: Partial<StageOptions>;
    label?: string;
    timings?: Partial<GitHubRunnerTimings>;
  } = {},
): Promise<GitHubStage> {
  const fake = await startFakeGitHub(undefined, o.fake);
  const stage = await startStage(t, { databaseUrl: td.location, name, ...o.stage });
  stage.beforeTeardown(() => fake.close()); // after the runner stopped: its last reports need the fake
  const { dir } = await registerGitHubWithCli(fake, { name, labels: o.label ?? "test" });
  // As `gnomon up` builds it (src/cli/orchestrator.ts), with the timings a test may shorten.
  const runner = createGitHubRunner({
    registration: readRegistration(dir),
    bus: stage.forgeBus,
    clusterKey: SAMPLE_CLUSTER_KEY,
    capacity: new Slots(1),
    runnerVersion: "2.330.0",
    gnomonVersion: VERSION,
    log: testLogger(),
    ...(o.timings ? { timings: o.timings } : {}),
  });
  await runner.start();
  stage.beforeTeardown(() => runner.stop(AbortSignal.timeout(20_000)));
  return { fake, stage, runner };
}

/** Lines of an uploaded log without the time prefix, each checked to carry it. */
function untimed(lines: readonly string[]): string[] {
  for (const l of lines) assert.match(l, TS);
  return lines.map((l) => l.replace(TS, ""));
}

/** The fake verified every JWT assertion it was sent and accepted every renewal it was asked for. */
function assertEveryJwtAndRenewalVerified(fake: FakeGitHubServer, jobId: string, renewPath: RegExp): void {
  const tokenCalls = fake.calls(/\/oauth2\/token/, "POST").length;
  assert.ok(tokenCalls >= 1, "the runner exchanged a JWT for a token");
  assert.equal(fake.assertions.length, tokenCalls, "every JWT assertion verified (signature, claims, jti)");
  const renewCalls = fake.calls(renewPath).length;
  const renewals = fake.job(jobId).renewals.length;
  assert.ok(renewals >= 1, "the job was renewed");
  assert.equal(renewals, renewCalls, "every renewal call was accepted");
}

function assertNoSecretReceived(fake: FakeGitHubServer, githubToken: string): void {
  const everything = fake.everythingReceived();
  for (const [what, value] of [
    ["the secret", SECRET],
    ["the secret in base64", SECRET_B64],
    ["the job token", githubToken],
    ["the job token in base64", Buffer.from(githubToken).toString("base64")],
  ] as const)
    assert.ok(!everything.includes(value), `nothing the fake received contains ${what}`);
}

/** A job with a secret that its steps print plainly and in base64, and an output. */
function secretJob(fake: FakeGitHubServer, labels: readonly string[]) {
  return fake.queueJob({
    labels,
    secrets: { MY_SECRET: SECRET },
    outputs: { answer: "steps.calc.outputs.answer" },
    steps: [
      { name: "Greet", run: 'echo "hello ${{ matrix.os }} from $(uname -s)"' },
      {
        name: "Leak attempts",
        env: { MY_SECRET: "${{ secrets.MY_SECRET }}" },
        run: [
          'echo "plain: $MY_SECRET"',
          'echo "base64: $(printf %s "$MY_SECRET" | base64)"',
          'echo "token: ${{ github.token }}"',
        ].join("\n"),
      },
      { id: "calc", name: "Answer", run: 'echo "answer=$((40 + 2))" >> "$GITHUB_OUTPUT"' },
    ],
  });
}

/** What the steps of secretJob log, as GitHub must receive it: the secret and the job token masked. */
const GREET_LOG = [
  "##[group]Greet",
  'echo "hello linux from $(uname -s)"',
  "shell: bash -e {0}",
  "##[endgroup]",
  "hello linux from Linux",
];
const LEAK_LOG = [
  "##[group]Leak attempts",
  'echo "plain: $MY_SECRET"',
  'echo "base64: $(printf %s "$MY_SECRET" | base64)"',
  'echo "token: ***"',
  "shell: bash -e {0}",
  "env:",
  "  MY_SECRET: ***",
  "##[endgroup]",
  "plain: ***",
  "base64: ***",
  "token: ***",
];
const ANSWER_LOG = [
  "##[group]Answer",
  'echo "answer=$((40 + 2))" >> "$GITHUB_OUTPUT"',
  "shell: bash -e {0}",
  "##[endgroup]",
];

/** A step that waits far longer than any test, and one after it. */
const WAIT_STEPS = [
  { name: "Wait", run: 'echo "sleeping"\nsleep 600\necho "woke up"' },
  { name: "After", run: 'echo "after the wait"' },
];

describe("github end to end (fake GitHub, RabbitMQ, PostgreSQL, a real VM)", () => {
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
    assert.ok(existsSync(BUNDLE), "the shipped bundle is missing: run `npm run build` first");
  });
  after(() => td?.drop());

  it("broker flow (github.com): runs a job for its label in a VM; steps, logs and result reach GitHub in order, no secret does", async (t) => {
    const { fake, stage, runner } = await startGitHubStage(t, "e2e-gh-v2", { fake: { flow: "v2" } });
    const job = secretJob(fake, ["self-hosted", "test"]);
    const vm = await nextVm(stage);
    assert.equal(vm.jobId, job.jobId, "the job's VM");

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed", VM_JOB_MS);
    const done = fake.job(job.jobId);
    const jobLog = done.jobLog?.content ?? "";
    assert.equal(done.conclusion, "succeeded", jobLog);
    assert.deepEqual(done.outputs, { answer: { value: "42", isSecret: false } });
    assert.deepEqual(
      (done.stepResults ?? []).map((s) => [s["name"], s["status"], s["conclusion"]]),
      [
        ["Set up job", "completed", "succeeded"],
        ["Greet", "completed", "succeeded"],
        ["Leak attempts", "completed", "succeeded"],
        ["Answer", "completed", "succeeded"],
        ["Complete job", "completed", "succeeded"],
      ],
    );
    const message = fake.jobMessage(job.jobId, "v2") as { steps: { id: string }[] };
    const logOf = (id: string) => {
      const log = done.stepLogs.get(id);
      assert.ok(log, `step ${id} has a log`);
      const lines = log.content === "" ? [] : log.content.replace(/\n$/, "").split("\n");
      assert.equal(log.lineCount, lines.length, "the metadata counts the lines uploaded");
      return untimed(lines);
    };
    assert.deepEqual(
      message.steps.map((s) => logOf(s.id)),
      [GREET_LOG, LEAK_LOG, ANSWER_LOG],
    );
    const recordIds = (done.stepResults ?? []).map((s) => String(s["external_id"]));
    const setUp = logOf(recordIds[0]!);
    assertEachSaidOnce(setUp, "Set up job");
    // The job log is every step's log in step order (set-up first), nothing lost or repeated.
    assert.deepEqual(untimed(jobLog.replace(/\n$/, "").split("\n")), recordIds.flatMap(logOf));
    // Step updates come in change order and a step never goes back from completed to in progress.
    // (A step quicker than one report interval may be reported completed at once, as by the
    // official runner, whose batched timeline updates merge per step.)
    const orders = done.stepUpdates.map((u) => u.changeOrder);
    assert.deepEqual(
      orders,
      [...orders].sort((a, b) => a - b),
    );
    for (const step of message.steps) {
      const statuses = done.stepUpdates
        .flatMap((u) => u.steps)
        .filter((s) => s["external_id"] === step.id)
        .map((s) => Number(s["status"]));
      assert.deepEqual(
        statuses,
        [...statuses].sort((a, b) => a - b),
        "in progress (3) only before completed (6)",
      );
      assert.equal(statuses.at(-1), 6, "last seen completed");
    }

    assertEveryJwtAndRenewalVerified(fake, job.jobId, /\/run\/renewjob$/);
    assert.ok(
      fake.liveMessages.some((m) => m.jobId === job.jobId),
      "the live console's messages are among what the secret check searches",
    );
    assertNoSecretReceived(fake, job.githubToken);
    await vmGone(stage, vm);
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("classic flow (GHES): runs a job for its label in a VM; timeline, logs and result reach GitHub in order, no secret does", async (t) => {
    const { fake, stage, runner } = await startGitHubStage(t, "e2e-gh-classic", { fake: { flow: "classic" } });
    const job = secretJob(fake, ["self-hosted", "test"]);
    const vm = await nextVm(stage);
    assert.equal(vm.jobId, job.jobId, "the job's VM");

    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "JobCompleted", VM_JOB_MS);
    const done = fake.job(job.jobId);
    assert.equal(done.flow, "classic");
    assert.equal(done.conclusion, "succeeded");
    assert.deepEqual(done.outputs, { answer: { value: "42", isSecret: false } });
    const records = [...done.timeline.values()];
    assert.equal(records.find((r) => r.type === "Job")?.result, "succeeded");
    const tasks = records.filter((r) => r.type === "Task").sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
    assert.deepEqual(
      tasks.map((r) => [r.name, r.state, r.result]),
      [
        ["Set up job", "completed", "succeeded"],
        ["Greet", "completed", "succeeded"],
        ["Leak attempts", "completed", "succeeded"],
        ["Answer", "completed", "succeeded"],
        ["Complete job", "completed", "succeeded"],
      ],
    );
    const logOf = (name: string) => {
      const r = tasks.find((x) => x.name === name);
      assert.ok(r?.log, `${name} links its log`);
      return untimed(done.classicLogs.get(r.log.id)?.lines ?? []);
    };
    assert.deepEqual(["Greet", "Leak attempts", "Answer"].map(logOf), [GREET_LOG, LEAK_LOG, ANSWER_LOG]);
    // The live console showed the same lines, in order, from line 1.
    const leak = tasks.find((r) => r.name === "Leak attempts")!;
    const live = done.feed.filter((f) => f.stepId === leak.id);
    assert.equal(live[0]?.startLine, 1);
    assert.deepEqual(
      live.flatMap((f) => f.lines),
      LEAK_LOG,
    );

    assertEveryJwtAndRenewalVerified(fake, job.jobId, /\/jobrequests\/\d+$/);
    assertNoSecretReceived(fake, job.githubToken);
    await vmGone(stage, vm);
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("ends a job cancelled on GitHub mid-step as cancelled: the step stops in its VM and the VM is destroyed", async (t) => {
    // The classic flow shows lines live, so the test can see the step running before it cancels.
    const { fake, stage, runner } = await startGitHubStage(t, "e2e-gh-cancel", { fake: { flow: "classic" } });
    const job = fake.queueJob({ labels: ["self-hosted", "test"], steps: WAIT_STEPS });
    const vm = await nextVm(stage);
    const waitRecord = await fake.waitFor(
      () => {
        const j = fake.job(job.jobId);
        const r = [...j.timeline.values()].find((x) => x.name === "Wait");
        return r && j.feed.some((f) => f.stepId === r.id && f.lines.includes("sleeping")) && r;
      },
      "the step running in the VM",
      VM_JOB_MS,
    );

    fake.cancelJob(job.jobId);
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed", 60_000);
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "canceled");
    const tasks = [...done.timeline.values()]
      .filter((r) => r.type === "Task")
      .sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
    assert.deepEqual(
      tasks.map((r) => [r.name, r.result]),
      [
        ["Set up job", "succeeded"],
        ["Wait", "canceled"],
        ["After", "skipped"],
        ["Complete job", "succeeded"],
      ],
    );
    const waitLog = untimed(done.classicLogs.get(done.timeline.get(waitRecord.id)?.log?.id ?? -1)?.lines ?? []);
    assert.ok(waitLog.includes("sleeping"), waitLog.join("\n"));
    assert.ok(!waitLog.includes("woke up"), "the step did not run to its end");
    const ended = await stage.store.jobs.get(job.jobId);
    assert.equal(ended?.result, "cancelled");
    await vmGone(stage, vm);
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("stops the job and destroys its VM when renewal keeps failing past the lock", async (t) => {
    const lockMs = 15_000;
    const { fake, stage, runner } = await startGitHubStage(t, "e2e-gh-lost", {
      fake: { flow: "v2", lockMs },
      // Shorter than the shipped 60 s cadence and 5-minute grace, so the test needs one short lock.
      timings: {
        renew: {
          intervalMs: 3_000,
          firstAttempts: 3,
          firstRetryMs: [200, 500],
          retryMs: [500, 1_000],
          retryLongMs: [1_000, 2_000],
          graceMs: 0,
        },
      },
    });
    const job = fake.queueJob({ labels: ["self-hosted", "test"], steps: WAIT_STEPS });
    const vm = await nextVm(stage);
    await until(
      async () => (await stage.store.jobs.get(job.jobId))?.firstStepAt,
      "the step running in the VM",
      VM_JOB_MS,
    );
    const renewedBefore = fake.job(job.jobId).renewals.length;

    fake.faults.renewFailing = true;
    const failingSince = Date.now();
    const ended = await until(
      async () => {
        const j = await stage.store.jobs.get(job.jobId);
        return j?.result ? j : undefined;
      },
      "the orchestrator to end the job",
      lockMs + 60_000,
    );
    assert.equal(ended.result, "cancelled");
    assert.match(ended.failureReason ?? "", /lock of GitHub job .* expired|no longer knows job/);
    await vmGone(stage, vm);
    const lost = fake.job(job.jobId);
    assert.equal(lost.state, "lost", "GitHub gave the job up too");
    assert.ok(lost.lockExpiredAt !== undefined && lost.lockExpiredAt >= failingSince);
    assert.ok(renewedBefore >= 2, "renewals worked until they were made to fail");
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("never lets a secret reach GitHub in any form its steps print it in (host label: the VM adds nothing here)", async (t) => {
    const secret = `it's "a/b+c" é😀\\x`;
    const forms = printedForms(secret);
    const { fake } = await startGitHubStage(t, "e2e-gh-forms", {
      fake: { flow: "v2" },
      stage: { hostLabels: ["local:host"] },
      label: "local:host",
    });
    const job = fake.queueJob({
      labels: ["self-hosted", "local:host"],
      secrets: { MY_SECRET: secret },
      steps: [{ name: "Print the secret", env: { S: "${{ secrets.MY_SECRET }}" }, run: PRINT_SECRET_FORMS }],
    });
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed", 60_000);
    const done = fake.job(job.jobId);
    assert.equal(done.conclusion, "succeeded", done.jobLog?.content);
    const message = fake.jobMessage(job.jobId, "v2") as { steps: { id: string }[] };
    const lines = untimed(done.stepLogs.get(message.steps[0]!.id)?.content.trimEnd().split("\n") ?? []);
    assert.deepEqual(
      lines.slice(lines.indexOf("##[endgroup]") + 1),
      forms.map((f) => maskedLine(f, `${f.name}: `)),
    );
    const stored = [...done.stepLogs.values(), done.jobLog]
      .map((l) => l?.content ?? "")
      .join("\n")
      .concat(fake.everythingReceived());
    for (const f of forms) assert.ok(!stored.includes(f.encoded), `GitHub received no ${f.name} form of the secret`);
  });

  it("keeps a 3-minute job alive with a 60 s lock by renewing from the daemon (host label: no VM needed)", async (t) => {
    const lockMs = 60_000;
    const { fake } = await startGitHubStage(t, "e2e-gh-renew", {
      fake: { flow: "v2", lockMs },
      stage: { hostLabels: ["local:host"] },
      label: "local:host",
    });
    const job = fake.queueJob({
      labels: ["self-hosted", "local:host"],
      steps: [{ name: "Three minutes", run: 'echo "start"\nsleep 180\necho "still here"' }],
    });
    const done = await fake.waitFor(
      () => {
        const j = fake.job(job.jobId);
        return (j.state === "completed" || j.state === "lost") && j;
      },
      "the job completed (or lost)",
      300_000,
    );
    assert.equal(done.lockExpiredAt, undefined, "the lock never ran out");
    assert.equal(done.state, "completed");
    assert.equal(done.conclusion, "succeeded");
    const message = fake.jobMessage(job.jobId, "v2") as { steps: { id: string }[] };
    const lines = done.stepLogs.get(message.steps[0]!.id)?.content.trimEnd().split("\n") ?? [];
    const timeOf = (text: string) => Date.parse(lines.find((l) => l.endsWith(` ${text}`))?.slice(0, 28) ?? "");
    const ranMs = timeOf("still here") - timeOf("start");
    assert.ok(ranMs >= 180_000, `the step ran its full 3 minutes (${ranMs} ms)`);
    const r = done.renewals;
    const gaps = r.slice(1).map((at, i) => at - r[i]!);
    assert.ok(r.length >= 4, `renewed through the job (${r.length} renewals)`);
    assert.ok(Math.max(...gaps) < lockMs, `every renewal within the lock (gaps ${gaps.join(", ")} ms)`);
    assertEveryJwtAndRenewalVerified(fake, job.jobId, /\/run\/renewjob$/);
  });
});
