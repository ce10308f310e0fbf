// How `gnomon up` stops, through the shipped program on the embedded defaults with a fake Forgejo
// and a host label (the stop, not a VM, is under test): SIGTERM stops taking work at once and gives
// a running job orchestrator.drainTimeout, not the 10 min shutdownTimeout, then cancels it and
// reports it to Forgejo; a second SIGTERM skips the rest of the wait but still ends the task on
// Forgejo before gnomon exits, instead of leaving it "running" there.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { type FakeForgejo, startFakeForgejo, type TaskView } from "../fakes/forgejo-server.js";
import { GNOMON_BIN, registerForgejoWithCli } from "../support/cli.js";

const LONG_JOB = `name: ci
on: push
jobs:
  build:
    runs-on: local
    steps:
      - name: Long
        run: echo started; sleep 600
`;

interface Up {
  readonly exit: Promise<number | null>;
  stderr(): string;
  kill(sig: NodeJS.Signals): void;
}

/** `gnomon up` from the bundle, on the embedded queue and database, serving the host label `local:host`. */
async function startUp(t: TestContext, env: NodeJS.ProcessEnv): Promise<{ up: Up; forgejo: FakeForgejo }> {
  const forgejo = await startFakeForgejo(undefined);
  const dir = mkdtempSync(join(tmpdir(), "gnomon-up-stop-"));
  await registerForgejoWithCli(forgejo, "local:host", dir);
  const child = spawn(process.execPath, [GNOMON_BIN, "up"], {
    cwd: dir,
    env: {
      PATH: process.env["PATH"],
      HOME: process.env["HOME"],
      GNOMON_DATA_DIR: join(dir, "data"),
      GNOMON_LABELS: "local:host",
      GNOMON_ALLOW_HOST_LABELS: "true",
      GNOMON_LOG_FORMAT: "json",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exit;
    }
    await forgejo.close();
  });
  return { up: { exit, stderr: () => err, kill: (sig) => child.kill(sig) }, forgejo };
}

async function runningTask(forgejo: FakeForgejo, up: Up, jobId: number): Promise<void> {
  await forgejo
    .waitFor(() => forgejo.taskOfJob(jobId)?.rows.includes("started"), "the step's first line", 120_000)
    .catch((err: Error) => {
      throw new Error(`${err.message}\n${forgejo.taskOfJob(jobId)?.rows.join("\n")}\n${up.stderr().slice(-3_000)}`);
    });
}

/** The exit code, or a failure with gnomon's log when it has not exited within `ms` (a hung stop). */
function exitWithin(up: Up, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`gnomon up did not exit ${ms} ms after the stop:\n${up.stderr().slice(-6_000)}`)),
      ms,
    );
  });
  return Promise.race([up.exit, hung]).finally(() => clearTimeout(timer));
}

function ended(forgejo: FakeForgejo, jobId: number, timeoutMs: number): Promise<TaskView> {
  return forgejo.waitFor(
    () => {
      const x = forgejo.taskOfJob(jobId);
      return x && x.status !== "running" && x.logArchived ? x : undefined;
    },
    `job ${jobId} to end on Forgejo`,
    timeoutMs,
  );
}

describe("gnomon up, stopping", () => {
  it("on SIGTERM takes no new task, gives the running job drainTimeout, then cancels it, reports it and exits 0", async (t) => {
    const { up, forgejo } = await startUp(t, { GNOMON_DRAIN_TIMEOUT: "3s" });
    const jobId = forgejo.queueJob({ workflow: LONG_JOB });
    await runningTask(forgejo, up, jobId);

    up.kill("SIGTERM");
    const stoppedAt = Date.now();
    const later = forgejo.queueJob({ workflow: LONG_JOB });
    const code = await exitWithin(up, 90_000);
    const tookMs = Date.now() - stoppedAt;
    assert.equal(code, 0, up.stderr().slice(-3_000));
    assert.ok(tookMs >= 3_000, `the job got its drain time (exited after ${tookMs} ms)`);
    assert.ok(
      tookMs < 30_000,
      `exited ${tookMs} ms after SIGTERM, well within drainTimeout and not shutdownTimeout (10 min)`,
    );
    const task = await ended(forgejo, jobId, 1_000);
    assert.equal(task.status, "cancelled", task.rows.join("\n"));
    assert.match(task.rows.at(-1) ?? "", /stopped/);
    assert.equal(forgejo.taskOfJob(later), undefined, "the task queued after SIGTERM was never taken");
  });

  it("on a second SIGTERM stops waiting but still ends the running task on Forgejo before it exits", async (t) => {
    const { up, forgejo } = await startUp(t, {});
    const jobId = forgejo.queueJob({ workflow: LONG_JOB });
    await runningTask(forgejo, up, jobId);

    up.kill("SIGTERM");
    await forgejo.waitFor(
      () => /waiting for running jobs to finish/.test(up.stderr()),
      "the stop to wait for the task",
      10_000,
    );
    up.kill("SIGTERM");
    const forcedAt = Date.now();
    const code = await exitWithin(up, 90_000);
    const tookMs = Date.now() - forcedAt;
    assert.ok(tookMs < 20_000, `exited ${tookMs} ms after the second SIGTERM`);
    const task = forgejo.taskOfJob(jobId);
    assert.ok(task);
    assert.equal(task.status, "cancelled", `Forgejo no longer shows the task running:\n${task.rows.join("\n")}`);
    assert.equal(task.logArchived, true, "its log was closed");
    assert.match(task.rows.at(-1) ?? "", /stopped/);
    assert.equal(code, 0, up.stderr().slice(-3_000));
  });
});
