// The tasks a runner holds, kept on disk for its successor, and how that successor ends the tasks
// of a runner process that died: on the fake Forgejo, with a closing line and the log archived.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { pino } from "pino";
import { forgejoClient } from "../../../src/forge/forgejo/client.js";
import { failLostTask, inFlightTasksFile, LOST_RUNNER_LINE } from "../../../src/forge/forgejo/in-flight-tasks.js";
import { jobIdForTask } from "../../../src/forge/forgejo/to-job-request.js";
import { until } from "../../support/qemu-processes.js";
import { startHarness, workflow } from "./harness.js";

const log = pino({ level: "silent" });

async function tempFile(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-inflight-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, "sub", "tasks.json");
}

describe("in-flight tasks", () => {
  it("keeps what is held on disk (0600) for the next process, and forgets what ended", async (t) => {
    const file = await tempFile(t);
    const a = inFlightTasksFile(file, log);
    assert.deepEqual(await a.leftovers(), [], "nothing before the first task");
    await a.add({ taskId: "7", jobId: "j7" });
    await a.add({ taskId: "8", jobId: "j8" });
    await a.remove("j7");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const b = inFlightTasksFile(file, log);
    assert.deepEqual(await b.leftovers(), [{ taskId: "8", jobId: "j8" }]);
    await b.clear();
    assert.deepEqual(await inFlightTasksFile(file, log).leftovers(), []);
  });

  it("ignores a damaged file instead of refusing to start", async (t) => {
    const file = await tempFile(t);
    await inFlightTasksFile(file, log).clear();
    await writeFile(file, '{"held": [{"taskId": "1", "jobId"');
    assert.deepEqual(await inFlightTasksFile(file, log).leftovers(), []);
    await writeFile(file, '{"held": [{"taskId": 1}, {"taskId": "2", "jobId": "j2"}]}');
    assert.deepEqual(await inFlightTasksFile(file, log).leftovers(), [{ taskId: "2", jobId: "j2" }]);
  });

  it("the runner records a task while it holds it and drops it when the task ended", async (t) => {
    const file = await tempFile(t);
    const h = await startHarness(t, { runner: { inFlightFile: file } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    const task = h.forgejo.taskOfJob(jobId)!;
    await until(
      async () => (await readFile(file, "utf8").catch(() => "")).includes(`"taskId": "${task.id}"`),
      "the task on disk",
      10_000,
      20,
    );
    const emit = h.emitter(job.request);
    await emit.emit({ kind: "job-finished", result: "success", outputs: {} });
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the task to end");
    await until(async () => JSON.parse(await readFile(file, "utf8")).held.length === 0, "no task on disk", 10_000, 20);
  });

  it("ends a dead process's task on Forgejo: closing line after the rows it has, log archived, task failed", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    await (await h.nextJob()).ack();
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x && x.rows.length > 0 ? x : undefined;
    }, "the task with some rows");
    const client = forgejoClient({
      instance: h.creds.address,
      credentials: { uuid: h.creds.uuid, token: h.creds.token },
      userAgent: "gnomon-test",
    });
    await failLostTask(
      client,
      { taskId: String(task.id), jobId: jobIdForTask(h.creds.address, BigInt(task.id)) },
      AbortSignal.timeout(10_000),
      log,
    );
    const ended = h.forgejo.taskOfJob(jobId)!;
    assert.equal(ended.status, "failure");
    assert.equal(ended.logArchived, true);
    assert.equal(ended.rows.at(-1), LOST_RUNNER_LINE);
    assert.ok(ended.rows.length >= 2, "the rows Forgejo had are kept");
    assert.ok(ended.stoppedMs !== undefined);
  });
});
