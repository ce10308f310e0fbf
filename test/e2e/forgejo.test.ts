// Forgejo jobs end to end through the real pieces: a runner registered with the shipped CLI against
// the fake Forgejo, the runner role as `gnomon up` builds it, RabbitMQ, the orchestrator on
// PostgreSQL, and a real VM of the offline test image; and `gnomon up` itself as a child process.
// What counts is what the fake Forgejo holds at the end: log rows, step states, the task's result.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { LOST_RUNNER_LINE } from "../../src/forge/forgejo/in-flight-tasks.js";
import { type FakeForgejo, startFakeForgejo, type TaskView } from "../fakes/forgejo-server.js";
import { GNOMON_BIN, registerForgejoWithCli } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  assertEachSaidOnce,
  fleetUpEnv,
  killUp,
  nextVm,
  qemuPids,
  type Stage,
  type StageOptions,
  startForgejoRunner,
  startStage,
  until,
  vmGone,
} from "../support/forge-e2e.js";
import { deleteTopology, testPrefix } from "../support/rabbit.js";
import { maskedLine, PRINT_SECRET_FORMS, printedForms } from "../support/secret-prints.js";
import { TEST_IMAGES_DIR, testImage } from "../support/test-image.js";

const VM_JOB_MS = 240_000;
const BUNDLE = fileURLToPath(new URL("../../dist/gnomon.mjs", import.meta.url));

/** A single-job workflow as Forgejo stores it per job. */
function workflow(
  runsOn: string,
  steps: readonly { name: string; run: string; id?: string }[],
  outputs: Readonly<Record<string, string>> = {},
): string {
  const body = steps
    .map((s) => {
      const script = s.run
        .split("\n")
        .map((l) => `          ${l}`)
        .join("\n");
      return `      - name: ${s.name}\n${s.id ? `        id: ${s.id}\n` : ""}        run: |\n${script}`;
    })
    .join("\n");
  const outs = Object.entries(outputs)
    .map(([k, v]) => `      ${k}: ${v}\n`)
    .join("");
  return `name: ci\non: push\njobs:\n  build:\n    runs-on: ${runsOn}\n${outs ? `    outputs:\n${outs}` : ""}    steps:\n${body}\n`;
}

/** The fake Forgejo and the stage; the fake closes after the runner stopped (its last reports need it). */
async function startForgejoStage(
  t: TestContext,
  name: string,
  stageOptions: Partial<StageOptions> = {},
): Promise<{ forgejo: FakeForgejo; stage: Stage }> {
  const forgejo = await startFakeForgejo(undefined);
  const stage = await startStage(t, { databaseUrl: td.location, name, ...stageOptions });
  stage.beforeTeardown(() => forgejo.close());
  return { forgejo, stage };
}

/** The rows of one step, as Forgejo's viewer shows them. */
function stepRows(task: TaskView, index: number): string[] {
  const s = task.steps[index];
  assert.ok(s, `step ${index} exists`);
  return task.rows.slice(s.logIndex, s.logIndex + s.logLength);
}

function finished(forgejo: FakeForgejo, jobId: number, timeoutMs = VM_JOB_MS): Promise<TaskView> {
  return forgejo.waitFor(
    () => {
      const t = forgejo.taskOfJob(jobId);
      return t && t.status !== "running" && t.logArchived ? t : undefined;
    },
    `job ${jobId} to end with its log archived`,
    timeoutMs,
  );
}

let td: TestDatabase;

describe("forgejo end to end (fake Forgejo, RabbitMQ, PostgreSQL, a real VM)", () => {
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
    assert.ok(existsSync(BUNDLE), "the shipped bundle is missing: run `npm run build` first");
  });
  after(() => td?.drop());

  it("runs a two-step workflow in a VM: Forgejo holds every line in order, both step states and success", async (t) => {
    const { forgejo, stage } = await startForgejoStage(t, "e2e-fj-ok");
    const file = await registerForgejoWithCli(forgejo, "linux:vm:test");
    const runner = await startForgejoRunner(stage, file);
    const jobId = forgejo.queueJob({
      workflow: workflow(
        "linux",
        [
          { name: "Where am I", run: 'echo "kernel $(uname -s)"\necho "user $(id -un)"' },
          {
            name: "Count",
            id: "count",
            run: 'for i in 1 2 3; do echo "line $i"; done\necho "sum=$((40 + 2))" >> "$GITHUB_OUTPUT"',
          },
        ],
        { sum: "${{ steps.count.outputs.sum }}" },
      ),
    });
    const vm = await nextVm(stage);
    assert.equal(qemuPids(vm.id).length, 1, "the job's VM runs");

    const task = await finished(forgejo, jobId);
    const all = task.rows.join("\n");
    assert.equal(task.status, "success", all);
    assert.equal(task.archivedAtFinal, true, "the log was complete before the final state");
    assert.deepEqual(
      task.steps.map((s) => [s.name, s.status]),
      [
        ["Where am I", "success"],
        ["Count", "success"],
      ],
    );
    assert.deepEqual(
      stepRows(task, 0),
      [
        "##[group]Where am I",
        'echo "kernel $(uname -s)"',
        'echo "user $(id -un)"',
        "shell: bash -e {0}",
        "##[endgroup]",
        "kernel Linux",
        "user runner",
      ],
      all,
    );
    assert.deepEqual(
      stepRows(task, 1),
      [
        "##[group]Count",
        'for i in 1 2 3; do echo "line $i"; done',
        'echo "sum=$((40 + 2))" >> "$GITHUB_OUTPUT"',
        "shell: bash -e {0}",
        "##[endgroup]",
        "line 1",
        "line 2",
        "line 3",
      ],
      all,
    );
    // The whole log is set-up, step 1, step 2 and the closing row, back to back: nothing lost or repeated.
    const [first, second] = [task.steps[0]!, task.steps[1]!];
    assert.equal(first.logIndex + first.logLength, second.logIndex, "the steps' rows are back to back");
    assert.deepEqual(task.rows.slice(second.logIndex + second.logLength), ["Job succeeded"]);
    const setUp = task.rows.slice(0, first.logIndex);
    assert.match(setUp[0] ?? "", /^gnomon .*, runner e2e, took task \d+$/);
    assert.ok(
      setUp.some((r) => r.startsWith("Job accepted by orchestrator ")),
      all,
    );
    assert.ok(
      setUp.some((r) => r.startsWith('VM for runs-on "test": ready')),
      all,
    );
    assertEachSaidOnce(setUp, "the set-up log");
    assert.deepEqual(Object.fromEntries(task.outputs), { sum: "42" }, "the job's output reached Forgejo");
    await vmGone(stage, vm);
    await until(() => runner.activeTasks === 0, "the runner to let go of the task", 10_000);
  });

  it("ends a failing workflow as failure, with the failing step marked and the steps after it not run", async (t) => {
    const { forgejo, stage } = await startForgejoStage(t, "e2e-fj-fail");
    const file = await registerForgejoWithCli(forgejo, "linux:vm:test");
    await startForgejoRunner(stage, file);
    const jobId = forgejo.queueJob({
      workflow: workflow("linux", [
        { name: "Fine", run: "echo fine" },
        { name: "Breaks", run: 'echo "about to fail"\nexit 3' },
        { name: "Never", run: 'echo "never printed"' },
      ]),
    });
    const vm = await nextVm(stage);

    const task = await finished(forgejo, jobId);
    const all = task.rows.join("\n");
    assert.equal(task.status, "failure", all);
    assert.deepEqual(
      task.steps.map((s) => [s.name, s.status]),
      [
        ["Fine", "success"],
        ["Breaks", "failure"],
        ["Never", "skipped"],
      ],
      all,
    );
    const breaks = stepRows(task, 1);
    assert.ok(breaks.includes("about to fail"), all);
    assert.deepEqual(
      breaks.filter((r) => /exit code 3/.test(r)),
      ["##[error]Process completed with exit code 3."],
      `the failing step's log says why, once: ${breaks.join(" | ")}`,
    );
    assert.ok(!task.rows.includes("never printed"), all);
    assert.equal(task.rows.at(-1), "the step 'Breaks' failed", "the last row says why the job failed");
    assert.equal(task.rows.filter((r) => r.includes("the step 'Breaks' failed")).length, 1, `said once:\n${all}`);
    await vmGone(stage, vm);
  });

  it("stops the job in its VM when the task is cancelled on Forgejo, and no QEMU process of it is left", async (t) => {
    const { forgejo, stage } = await startForgejoStage(t, "e2e-fj-cancel");
    const file = await registerForgejoWithCli(forgejo, "linux:vm:test");
    const runner = await startForgejoRunner(stage, file);
    const jobId = forgejo.queueJob({
      workflow: workflow("linux", [
        { name: "Wait", run: 'echo "sleeping"\nsleep 600\necho "woke up"' },
        { name: "After", run: 'echo "after the wait"' },
      ]),
    });
    const vm = await nextVm(stage);
    await forgejo.waitFor(
      () => forgejo.taskOfJob(jobId)?.rows.includes("sleeping"),
      "the step to be running in the VM",
      VM_JOB_MS,
    );
    assert.equal(qemuPids(vm.id).length, 1, "the VM runs");

    forgejo.cancelJob(jobId);
    const job = await until(
      async () => {
        const j = await stage.store.jobs.get(vm.jobId);
        return j?.state === "cancelled" ? j : undefined;
      },
      "the orchestrator to end the job cancelled", // bounded far below the step's 600 s sleep
      60_000,
    );
    assert.equal(job.result, "cancelled");
    await vmGone(stage, vm);

    const task = await finished(forgejo, jobId, 30_000);
    const all = task.rows.join("\n");
    assert.equal(task.status, "cancelled", all);
    assert.deepEqual(
      task.steps.map((s) => s.status),
      ["cancelled", "cancelled"],
    );
    assert.ok(task.rows.includes("sleeping"), all);
    assert.ok(!task.rows.includes("woke up"), all);
    assert.ok(!task.rows.includes("after the wait"), all);
    await until(() => runner.activeTasks === 0, "the runner to let go of the task", 10_000);
  });

  it("with capacity 1 and three queued tasks never holds more than one (host label: the VM adds nothing here)", async (t) => {
    // The orchestrator could run all three at once (maxVms 3), so only the runner's capacity limits.
    const { forgejo, stage } = await startForgejoStage(t, "e2e-fj-cap", { hostLabels: ["local:host"], maxVms: 3 });
    const file = await registerForgejoWithCli(forgejo, "local:host");
    const uuid = (JSON.parse(readFileSync(file, "utf8")) as { uuid: string }).uuid;
    const jobs = [1, 2, 3].map((n) =>
      forgejo.queueJob({ workflow: workflow("local", [{ name: `job ${n}`, run: `echo "job ${n}"\nsleep 2` }]) }),
    );
    await startForgejoRunner(stage, file, { capacity: 1 });

    const tasks: TaskView[] = [];
    for (const j of jobs) tasks.push(await finished(forgejo, j, 60_000));
    assert.deepEqual(
      tasks.map((x) => x.status),
      ["success", "success", "success"],
    );
    for (const [i, x] of tasks.entries()) assert.ok(x.rows.includes(`job ${i + 1}`), x.rows.join("\n"));
    assert.equal(forgejo.maxRunning(uuid), 1, "never two tasks running for this runner at once");
    const byStart = [...tasks].sort((a, b) => a.createdMs - b.createdMs);
    for (let i = 1; i < byStart.length; i += 1)
      assert.ok(
        byStart[i]!.createdMs >= byStart[i - 1]!.stoppedMs!,
        `task ${byStart[i]!.id} was fetched after task ${byStart[i - 1]!.id} had ended`,
      );
    // The fake is a Forgejo 14+: a FetchTask without task_capacity would be a runner that forgot it.
    assert.ok(
      forgejo.fetchCapacities.length >= 3 && forgejo.fetchCapacities.every((c) => c === 1),
      `asked for one task each time: ${forgejo.fetchCapacities.join(",")}`,
    );
  });

  it("never lets a secret reach Forgejo in any form its steps print it in (host label: the VM adds nothing here)", async (t) => {
    const secret = `it's "a/b+c" é😀\\x`;
    const forms = printedForms(secret);
    const { forgejo, stage } = await startForgejoStage(t, "e2e-fj-forms", { hostLabels: ["local:host"] });
    const file = await registerForgejoWithCli(forgejo, "local:host");
    await startForgejoRunner(stage, file);
    const script = PRINT_SECRET_FORMS.trimEnd()
      .split("\n")
      .map((l) => `          ${l}`)
      .join("\n");
    const jobId = forgejo.queueJob({
      workflow: `name: ci\non: push\njobs:\n  build:\n    runs-on: local\n    steps:\n      - name: Print the secret\n        env:\n          S: \${{ secrets.MY_SECRET }}\n        run: |\n${script}\n`,
      secrets: { MY_SECRET: secret },
    });
    const task = await finished(forgejo, jobId, 60_000);
    assert.equal(task.status, "success", task.rows.join("\n"));
    const rows = stepRows(task, 0);
    assert.deepEqual(
      rows.slice(rows.indexOf("##[endgroup]") + 1),
      forms.map((f) => maskedLine(f, `${f.name}: `)),
    );
    const stored = [...task.rows, ...task.outputs.values()].join("\n");
    for (const f of forms) assert.ok(!stored.includes(f.encoded), `Forgejo holds no ${f.name} form of the secret`);
  });

  it("`gnomon up` runs a Forgejo job in a VM to success, and on SIGTERM exits 0 leaving no QEMU process", async (t) => {
    const forgejo = await startFakeForgejo(undefined);
    const db = await createTestDatabase("postgres");
    const prefix = testPrefix("e2e-fj-up");
    const dir = mkdtempSync(join(tmpdir(), "gnomon-e2e-up-"));
    const dataDir = join(dir, "data");
    await registerForgejoWithCli(forgejo, "linux:vm:test", dir);

    const up = spawnUp(dir, fleetUpEnv({ databaseUrl: db.location, prefix, dataDir }));
    t.after(async () => {
      await killUp(up.child, up.exit, dataDir);
      await forgejo.close();
      await db.drop();
      await deleteTopology(prefix);
    });

    const jobId = forgejo.queueJob({
      workflow: workflow("linux", [
        { name: "Hello", run: 'echo "hello from $(uname -s)"' },
        { name: "Bye", run: 'echo "bye"' },
      ]),
    });
    const pids = await until(
      () => {
        const found = qemuPids(dataDir);
        return found.length > 0 && found;
      },
      "gnomon up to boot a VM",
      VM_JOB_MS,
    );
    assert.equal(pids.length, 1, "one VM, under gnomon up's data directory");
    const task = await finished(forgejo, jobId);
    const all = task.rows.join("\n");
    assert.equal(task.status, "success", `${all}\n${up.stderr()}`);
    assert.ok(stepRows(task, 0).includes("hello from Linux"), all);
    assert.ok(stepRows(task, 1).includes("bye"), all);
    assert.deepEqual(
      task.steps.map((s) => s.status),
      ["success", "success"],
    );

    up.child.kill("SIGTERM");
    assert.equal(await up.exit, 0, up.stderr());
    assert.deepEqual(qemuPids(dataDir), [], "no QEMU process is left");
  });

  it("`gnomon up` killed mid-job: the next start ends the task failed at once, saying why, and reaps the VM", async (t) => {
    const forgejo = await startFakeForgejo(undefined);
    const dir = mkdtempSync(join(tmpdir(), "gnomon-e2e-crash-"));
    const dataDir = join(dir, "data");
    await registerForgejoWithCli(forgejo, "linux:vm:test", dir);
    // The embedded defaults (in-process queue, PGlite under the data directory): one host, as most run it.
    const env = {
      GNOMON_DATA_DIR: dataDir,
      GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
      GNOMON_LABELS: "test",
      GNOMON_MAX_VMS: "1",
      GNOMON_LOG_FORMAT: "json",
      GNOMON_LOG_LEVEL: "info",
    };
    const first = spawnUp(dir, env);
    let second: ReturnType<typeof spawnUp> | undefined;
    t.after(async () => {
      for (const p of [first, second])
        if (p && p.child.exitCode === null && p.child.signalCode === null) {
          p.child.kill("SIGKILL");
          await p.exit;
        }
      for (const pid of qemuPids(dataDir)) process.kill(pid, "SIGKILL");
      await forgejo.close();
    });

    const jobId = forgejo.queueJob({
      workflow: workflow("linux", [{ name: "Long", run: "echo started; sleep 600" }]),
    });
    await forgejo.waitFor(
      () => forgejo.taskOfJob(jobId)?.rows.includes("started"),
      "the step's first line on Forgejo",
      VM_JOB_MS,
    );
    const vms = qemuPids(dataDir);
    assert.equal(vms.length, 1);
    first.child.kill("SIGKILL");
    await first.exit;
    assert.equal(forgejo.taskOfJob(jobId)?.status, "running", "Forgejo still thinks the job runs");

    second = spawnUp(dir, env);
    // Bounded far below Forgejo's own reaper (10 min), which would fail the task without a word.
    const task = await finished(forgejo, jobId, 120_000);
    assert.equal(task.status, "failure", `${task.rows.join("\n")}\n${second.stderr()}`);
    assert.equal(task.rows.at(-1), LOST_RUNNER_LINE);
    assert.ok(task.rows.includes("started"), "the lines Forgejo had are kept");
    await until(() => qemuPids(dataDir).length === 0, "the dead process's VM to be reaped", 60_000);

    // And the restarted runner works: the next job runs to success.
    const next = forgejo.queueJob({ workflow: workflow("linux", [{ name: "Hi", run: "echo fine again" }]) });
    const done = await finished(forgejo, next);
    assert.equal(done.status, "success", `${done.rows.join("\n")}\n${second.stderr()}`);
    second.child.kill("SIGTERM");
    assert.equal(await second.exit, 0, second.stderr());
    assert.deepEqual(qemuPids(dataDir), [], "no QEMU process is left");
  });
});

/** `gnomon up` from the shipped bundle, in the background. */
function spawnUp(
  cwd: string,
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; exit: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [GNOMON_BIN, "up"], {
    cwd,
    env: { PATH: process.env["PATH"], HOME: process.env["HOME"], ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
    if (process.env["GNOMON_TEST_LOG"]) process.stderr.write(d);
  });
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, exit, stderr: () => err };
}
