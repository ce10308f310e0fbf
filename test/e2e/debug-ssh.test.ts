// Debug SSH end to end: a job that asked for it fails a step in a real VM of the offline test
// image, its Forgejo or GitHub log shows how to log in, and an ssh2 client with the actor's key
// (which the fake forge lists for that user) gets a shell in that very VM through gnomon's
// endpoint; other keys are refused and fast failures throttled; logging out, cancelling the job on
// the forge or stopping the orchestrator ends the window, the VM is destroyed and the job ends
// with its own result. Through the real forge runner, RabbitMQ, PostgreSQL and orchestrator.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { createForgejoRunner } from "../../src/cli/forgejo.js";
import { VERSION } from "../../src/cli/version.js";
import { Config } from "../../src/config/schema.js";
import type { ForgejoRunner } from "../../src/forge/forgejo/runner.js";
import { readRegistration } from "../../src/forge/github/credentials.js";
import { createGitHubRunner, type GitHubRunner } from "../../src/forge/github/runner.js";
import { Slots } from "../../src/lifecycle/slots.js";
import { type FakeForgejo, startFakeForgejo, type TaskView } from "../fakes/forgejo-server.js";
import { type FakeGitHubServer, startFakeGitHub } from "../fakes/github-server.js";
import { registerForgejoWithCli, registerGitHubWithCli } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { execIn, keyPair, login, sftpRead, shellIn } from "../support/debug-ssh-client.js";
import {
  nextVm,
  qemuPids,
  type Stage,
  type StageOptions,
  startForgejoRunner,
  startStage,
  testLogger,
  until,
  vmGone,
} from "../support/forge-e2e.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { testImage } from "../support/test-image.js";
import { within } from "../support/within.js";

const VM_JOB_MS = 240_000;
const BUNDLE = fileURLToPath(new URL("../../dist/gnomon.mjs", import.meta.url));
/** The line of the job's log that says how to log in. */
const COMMAND =
  /^debug SSH: log in with one of (\S+)'s SSH keys on the forge: ssh -p (\d+) ([0-9a-f]{12})@127\.0\.0\.1$/;

let td: TestDatabase;

/** A single-job Forgejo workflow on runs-on `linux` whose one step runs `script`. */
function workflow(script: string): string {
  const body = script
    .split("\n")
    .map((l) => `          ${l}`)
    .join("\n");
  return `name: ci\non: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - name: Breaks\n        run: |\n${body}\n`;
}

/** The step writes what a person debugging it will look for, then fails. */
const FAILING_STEP = 'echo "the cause is 42" > "$HOME/failure.txt"\necho "wrote the clue"\nexit 3';

interface ForgejoStage {
  readonly forgejo: FakeForgejo;
  readonly stage: Stage;
  readonly runner: ForgejoRunner;
}

/** The fake Forgejo, a stage whose orchestrator allows debug SSH, and a runner as `gnomon up` builds it. */
async function startForgejoStage(t: TestContext, name: string, o: Partial<StageOptions> = {}): Promise<ForgejoStage> {
  const forgejo = await startFakeForgejo(undefined);
  const stage = await startStage(t, { databaseUrl: td.location, name, debugSsh: {}, ...o });
  stage.beforeTeardown(() => forgejo.close());
  const file = await registerForgejoWithCli(forgejo, "linux:vm:test");
  const runner = await startForgejoRunner(stage, file);
  return { forgejo, stage, runner };
}

/** Waits for the job's log to show the ssh command; its actor, port and username. */
async function commandOf(
  forgejo: FakeForgejo,
  jobId: number,
): Promise<{ actor: string; port: number; username: string; rows: string[] }> {
  return forgejo.waitFor(
    () => {
      const rows = forgejo.taskOfJob(jobId)?.rows ?? [];
      const m = rows.map((r) => COMMAND.exec(r)).find((x) => x);
      return m && { actor: m[1]!, port: Number(m[2]), username: m[3]!, rows: [...rows] };
    },
    "the ssh command in the job's log",
    VM_JOB_MS,
  );
}

function finished(forgejo: FakeForgejo, jobId: number, timeoutMs = 60_000): Promise<TaskView> {
  return forgejo.waitFor(
    () => {
      const t = forgejo.taskOfJob(jobId);
      return t && t.status !== "running" && t.logArchived ? t : undefined;
    },
    `job ${jobId} to end with its log archived`,
    timeoutMs,
  );
}

async function heldGauge(stage: Stage): Promise<number> {
  const m = await stage.metrics.debugSshHeldJobs.get();
  return m.values.reduce((n, v) => n + v.value, 0);
}

before(async () => {
  await testImage();
  td = await createTestDatabase("postgres");
  assert.ok(existsSync(BUNDLE), "the shipped bundle is missing: run `npm run build` first");
});
after(() => td?.drop());

describe("debug SSH end to end (fake Forgejo, RabbitMQ, PostgreSQL, a real VM)", () => {
  it("holds a failed job's VM for its actor: their key logs in and reads what the step left, others are refused, fast failures throttled, and logging out ends the job failed", async (t) => {
    const { forgejo, stage } = await startForgejoStage(t, "e2e-dbg-fj");
    const [alice, bob, stray] = [keyPair(), keyPair(), keyPair()];
    forgejo.setUserKeys("alice", [alice.publicLine]);
    forgejo.setUserKeys("bob", [bob.publicLine]);
    const jobId = forgejo.queueJob({ workflow: workflow(FAILING_STEP), vars: { GNOMON_DEBUG_SSH: "on-failure" } });
    const vm = await nextVm(stage);

    const { actor, port, username, rows } = await commandOf(forgejo, jobId);
    const all = rows.join("\n");
    assert.equal(actor, "alice");
    assert.equal(port, stage.debugSsh?.port);
    assert.ok(rows.includes("wrote the clue"), all);
    assert.match(
      all,
      /debug SSH: the job failed; its VM is held for alice for 30 minutes, until \d{4}-\d\d-\d\dT[\d:.]+Z \(asked by variable GNOMON_DEBUG_SSH=on-failure\)/,
    );
    const hostKeyRow = rows.find((r) => r.startsWith("debug SSH: the endpoint's host key is ssh-ed25519 SHA256:"));
    assert.ok(hostKeyRow, all);
    assert.equal(forgejo.taskOfJob(jobId)?.status, "running", "the job stays in progress on Forgejo while held");
    assert.equal(qemuPids(vm.id).length, 1, "its VM runs");
    assert.equal(await heldGauge(stage), 1, "counted held");
    assert.equal(stage.orchestrator.capacity.freeVms, 0, "its VM slot stays taken");

    assert.equal((await login(port, username, bob)).outcome, "refused", "another user's key");
    assert.equal((await login(port, username, stray)).outcome, "refused", "a key nobody listed");

    const session = await login(port, username, alice);
    assert.equal(session.outcome, "in");
    assert.ok(hostKeyRow.endsWith(`${session.hostFingerprint}; check that ssh shows this fingerprint`), hostKeyRow);
    const cat = await execIn(session.client, 'cat "$HOME/failure.txt"; id -un; echo "proxy ${http_proxy:+set}"');
    assert.deepEqual(
      [cat.stdout, cat.code],
      ["the cause is 42\nrunner\nproxy set\n", 0],
      "in the failed job's own VM, as its user, with the job's egress proxy",
    );
    const shell = await shellIn(session.client, "echo result=$((6 * 7)); exit 5\n");
    assert.match(shell.stdout, /result=42/);
    assert.equal(shell.code, 5, "the exit status comes back");
    assert.equal(
      await sftpRead(session.client, "failure.txt"),
      "the cause is 42\n",
      "SFTP is the guest's, in its home",
    );

    // Ten fast failures from one address: after the first few it is dropped, the actor's key too.
    const fast: string[] = [];
    for (let i = 0; i < 10; i += 1) fast.push((await login(port, username, stray)).outcome);
    assert.ok(
      fast.slice(-5).every((o) => o === "dropped"),
      `throttled: ${fast.join(",")}`,
    );
    assert.equal((await login(port, username, alice)).outcome, "dropped", "the address is throttled, whatever the key");
    assert.equal((await execIn(session.client, "echo still here")).stdout, "still here\n", "the open session is not");

    session.client.end();
    const task = await finished(forgejo, jobId);
    const log = task.rows.join("\n");
    assert.equal(task.status, "failure", log);
    assert.ok(
      task.rows.includes(
        "debug SSH: the window closed: alice logged out. The VM is destroyed now; the job ends failed",
      ),
      log,
    );
    assert.equal(task.rows.at(-1), "the step 'Breaks' failed", "the job's own reason is its last word");
    await vmGone(stage, vm);
    assert.equal(await heldGauge(stage), 0);
    const sessions = await stage.store.debugSessions.list({ jobId: vm.jobId });
    assert.equal(sessions.length, 1, "one login recorded");
    const [s] = sessions;
    assert.equal(s?.actor, "alice");
    assert.equal(s?.keyFingerprint, alice.key.fingerprint);
    assert.ok(s?.endedAt && s.bytesIn > 0 && s.bytesOut > 0, JSON.stringify(s));
    assert.equal((await stage.store.jobs.get(vm.jobId))?.result, "failure");
  });

  it("never holds a job that did not ask: it fails and ends at once, with no window", async (t) => {
    const { forgejo, stage } = await startForgejoStage(t, "e2e-dbg-fj-no");
    const alice = keyPair();
    forgejo.setUserKeys("alice", [alice.publicLine]);
    const jobId = forgejo.queueJob({ workflow: workflow(FAILING_STEP) });
    const vm = await nextVm(stage);
    const task = await finished(forgejo, jobId, VM_JOB_MS);
    assert.equal(task.status, "failure");
    assert.ok(!task.rows.some((r) => r.includes("debug SSH")), task.rows.join("\n"));
    assert.deepEqual(stage.debugSsh?.heldJobs, []);
    await vmGone(stage, vm);
    assert.equal(
      forgejo.apiCalls.filter((c) => c.path.includes("/keys")).length,
      0,
      "nobody's keys were even asked for",
    );
  });

  it("ends the window when the job is cancelled on Forgejo: the VM is destroyed and the job keeps its result", async (t) => {
    const { forgejo, stage, runner } = await startForgejoStage(t, "e2e-dbg-fj-cancel");
    const alice = keyPair();
    forgejo.setUserKeys("alice", [alice.publicLine]);
    const jobId = forgejo.queueJob({ workflow: workflow(FAILING_STEP), vars: { GNOMON_DEBUG_SSH: "always" } });
    const vm = await nextVm(stage);
    const { port, username } = await commandOf(forgejo, jobId);
    const session = await login(port, username, alice);
    assert.equal(session.outcome, "in");
    const closed = new Promise<void>((r) => session.client.once("close", () => r()));

    forgejo.cancelJob(jobId);
    await closed; // the endpoint ended the login
    await vmGone(stage, vm, 60_000);
    const job = await until(
      async () => {
        const j = await stage.store.jobs.get(vm.jobId);
        return j?.state === "failed" ? j : undefined;
      },
      "the job to end",
      60_000,
    );
    assert.equal(job.failureReason, "the step 'Breaks' failed", "its own result and reason");
    const [s] = await stage.store.debugSessions.list({ jobId: vm.jobId });
    assert.match(s?.endReason ?? "", /^the job was cancelled \(/);
    assert.equal(forgejo.taskOfJob(jobId)?.status, "cancelled");
    await until(() => runner.activeTasks === 0, "the runner to let go of the task", 30_000);
  });

  it("ends the window when the orchestrator stops: nothing waits for the drain time, the VM is destroyed and the job ends failed", async (t) => {
    // A drain far longer than the test: a window that kept the stop waiting would time the test out.
    const { forgejo, stage } = await startForgejoStage(t, "e2e-dbg-fj-stop", { drainTimeoutMs: 3_600_000 });
    const alice = keyPair();
    forgejo.setUserKeys("alice", [alice.publicLine]);
    const jobId = forgejo.queueJob({ workflow: workflow(FAILING_STEP), vars: { GNOMON_DEBUG_SSH: "on-failure" } });
    const vm = await nextVm(stage);
    const { port, username } = await commandOf(forgejo, jobId);
    const session = await login(port, username, alice);
    assert.equal(session.outcome, "in");

    // Bounded far below the drain time: the stop must not wait for the window.
    await within(stage.orchestrator.stop(AbortSignal.timeout(3_600_000)), "the orchestrator to stop", 120_000);
    await vmGone(stage, vm);
    const task = await finished(forgejo, jobId);
    const log = task.rows.join("\n");
    assert.equal(task.status, "failure", log);
    assert.ok(
      task.rows.includes(
        "debug SSH: the window closed: gnomon on this host is stopping. The VM is destroyed now; the job ends failed",
      ),
      log,
    );
    assert.equal((await stage.store.jobs.get(vm.jobId))?.result, "failure");
  });
});

interface GitHubStage {
  readonly fake: FakeGitHubServer;
  readonly stage: Stage;
  readonly runner: GitHubRunner;
}

/** Renewals every 3 s of a 15 s lock: a window that stopped them would lose the job within the test. */
const LOCK_MS = 15_000;

/**
 * The fake GitHub in the classic flow (its live console shows "Complete job"'s lines while the job
 * runs), a stage whose orchestrator allows debug SSH, and a runner as `gnomon up` builds it.
 */
async function startGitHubStage(t: TestContext, name: string): Promise<GitHubStage> {
  const fake = await startFakeGitHub(undefined, { flow: "classic", lockMs: LOCK_MS });
  const stage = await startStage(t, { databaseUrl: td.location, name, debugSsh: {} });
  stage.beforeTeardown(() => fake.close());
  const { dir } = await registerGitHubWithCli(fake, { name, labels: "test" });
  const runner = createGitHubRunner({
    registration: readRegistration(dir),
    bus: stage.forgeBus,
    clusterKey: SAMPLE_CLUSTER_KEY,
    capacity: new Slots(1),
    runnerVersion: "2.330.0",
    gnomonVersion: VERSION,
    log: testLogger(),
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
  await runner.start();
  stage.beforeTeardown(() => runner.stop(AbortSignal.timeout(20_000)));
  return { fake, stage, runner };
}

/** A job of hubot's run, re-run by octocat with debug logging, whose one step fails. */
function rerunWithDebugLogging(fake: FakeGitHubServer) {
  return fake.queueJob({
    labels: ["self-hosted", "test"],
    steps: [{ name: "Breaks", run: FAILING_STEP }],
    // What "Re-run jobs → Enable debug logging" puts in the job message.
    variables: { ACTIONS_RUNNER_DEBUG: "true", ACTIONS_STEP_DEBUG: "true" },
    github: { actor: "hubot", triggering_actor: "octocat" },
  });
}

/** Waits for the live console to show the ssh command; its actor, port and username. */
function liveCommandOf(
  fake: FakeGitHubServer,
  jobId: string,
): Promise<{ actor: string; port: number; username: string; lines: string[] }> {
  return fake.waitFor(
    () => {
      const lines = fake.job(jobId).feed.flatMap((f) => f.lines);
      const m = lines.map((l) => COMMAND.exec(l)).find((x) => x);
      return m && { actor: m[1]!, port: Number(m[2]), username: m[3]!, lines };
    },
    "the ssh command on the live console",
    VM_JOB_MS,
  );
}

describe("debug SSH end to end (fake GitHub, RabbitMQ, PostgreSQL, a real VM)", () => {
  it("a re-run with debug logging holds the failed job for the user who re-ran it, renewed on GitHub, until they log out; the job then fails", async (t) => {
    const { fake, stage, runner } = await startGitHubStage(t, "e2e-dbg-gh");
    const [octocat, hubot] = [keyPair(), keyPair()];
    fake.setUserKeys("octocat", [octocat.publicLine]);
    fake.setUserKeys("hubot", [hubot.publicLine]);
    const job = rerunWithDebugLogging(fake);
    const vm = await nextVm(stage);

    const { actor, port, username, lines } = await liveCommandOf(fake, job.jobId);
    assert.equal(actor, "octocat", "the one who re-ran it, not the run's actor");
    assert.ok(
      lines.some((l) =>
        /^debug SSH: the job failed; its VM is held for octocat for 30 minutes, until .* \(asked by debug logging \(the run was started with debug logging\)\)$/.test(
          l,
        ),
      ),
      lines.join("\n"),
    );
    assert.deepEqual(
      fake.userKeyCalls.map((c) => [c.user, c.authorized]),
      [["octocat", true]],
      "the keys were asked for with the job's token",
    );
    assert.equal((await login(port, username, hubot)).outcome, "refused", "the run's actor is not the one who asked");
    const session = await login(port, username, octocat);
    assert.equal(session.outcome, "in");
    const cat = await execIn(session.client, 'cat "$HOME/failure.txt"');
    assert.equal(cat.stdout, "the cause is 42\n");

    // Held: still in progress on GitHub, its lock renewed (a 15 s lock outlives nothing here).
    const renewed = fake.job(job.jobId).renewals.length;
    await fake.waitFor(() => fake.job(job.jobId).renewals.length >= renewed + 3, "renewals during the window", 60_000);
    assert.equal(fake.job(job.jobId).state, "acquired");
    assert.equal(fake.job(job.jobId).lockExpiredAt, undefined);

    session.client.end();
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed", 60_000);
    assert.equal(fake.job(job.jobId).conclusion, "failed");
    await vmGone(stage, vm);
    const [s] = await stage.store.debugSessions.list({ jobId: vm.jobId });
    assert.equal(s?.actor, "octocat");
    assert.equal(s?.endReason, "logged out");
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });

  it("ends the window when the job is cancelled on GitHub: the VM is destroyed and the job keeps its result", async (t) => {
    const { fake, stage, runner } = await startGitHubStage(t, "e2e-dbg-gh-cancel");
    const octocat = keyPair();
    fake.setUserKeys("octocat", [octocat.publicLine]);
    const job = rerunWithDebugLogging(fake);
    const vm = await nextVm(stage);
    const { port, username } = await liveCommandOf(fake, job.jobId);
    const session = await login(port, username, octocat);
    assert.equal(session.outcome, "in");
    const closed = new Promise<void>((r) => session.client.once("close", () => r()));

    fake.cancelJob(job.jobId);
    await closed;
    await vmGone(stage, vm, 60_000);
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed", 60_000);
    assert.equal(fake.job(job.jobId).conclusion, "failed", "the job's own result");
    const [s] = await stage.store.debugSessions.list({ jobId: vm.jobId });
    assert.match(s?.endReason ?? "", /^the job was cancelled \(/);
    await fake.waitFor(() => runner.heldJobs === 0, "the runner let go of the job");
  });
});
