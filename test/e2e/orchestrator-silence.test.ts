// A lone orchestrator SIGKILLed mid-job, with no other to take its jobs over: its QEMU dies with
// it, and the Forgejo runner (as `gnomon up` builds it, on RabbitMQ) ends the task on Forgejo as
// failed within about a minute, on the default settings, its last line naming the silent
// orchestrator; a Cancel goes out for an orchestrator that might come back. Real processes,
// RabbitMQ, PostgreSQL and a VM of the offline test image; only Forgejo is faked.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createForgejoRunner } from "../../src/cli/forgejo.js";
import { Config } from "../../src/config/schema.js";
import type { Cancel } from "../../src/contract/cancel.js";
import { AmqpBus } from "../../src/queue/amqp.js";
import { startFakeForgejo } from "../fakes/forgejo-server.js";
import { GNOMON_BIN, registerForgejoWithCli, spawnGnomon } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { testLogger } from "../support/forge-e2e.js";
import { isAlive, qemuPids, until } from "../support/qemu-processes.js";
import { deleteTopology, RABBIT_URL, testPrefix } from "../support/rabbit.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { TEST_IMAGES_DIR, testImage } from "../support/test-image.js";

const WORKFLOW = `name: ci
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - name: Long
        run: echo started; sleep 600
`;

describe("a lone orchestrator killed mid-job (processes, RabbitMQ, PostgreSQL, a VM)", () => {
  let td: TestDatabase;
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
    assert.ok(existsSync(GNOMON_BIN), "the shipped bundle is missing: run `npm run build` first");
  });
  after(() => td?.drop());

  it("its VM dies with it and the Forgejo runner ends the task failed within a minute, naming it", async (t) => {
    const forgejo = await startFakeForgejo(undefined);
    const prefix = testPrefix("e2e-silent");
    const dataDir = mkdtempSync(join(tmpdir(), "gnomon-silent-"));
    const log = testLogger();
    const bus = new AmqpBus({ url: RABBIT_URL, prefix, connectionName: "e2e-silent-forge", log });
    await bus.start();
    const cancels: Cancel[] = [];
    const cancelSub = await bus.consumeCancels((c) => cancels.push(c));
    const file = await registerForgejoWithCli(forgejo, "linux:vm:test");
    // Every setting at its default but the credentials and a quick first poll.
    const runner = createForgejoRunner(Config.parse({ forgejo: { credentialsFile: file, fetchInterval: "500ms" } }), {
      bus,
      clusterKey: SAMPLE_CLUSTER_KEY,
      log,
    });
    const orchestrator = spawnGnomon(["orchestrator"], {
      env: {
        AMQP_URL: RABBIT_URL,
        DATABASE_URL: td.location,
        GNOMON_AMQP_PREFIX: prefix,
        GNOMON_CLUSTER_KEY: SAMPLE_CLUSTER_KEY.toString("hex"),
        GNOMON_DATA_DIR: dataDir,
        GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
        GNOMON_LABELS: "test",
        GNOMON_MAX_VMS: "1",
      },
    });
    t.after(async () => {
      orchestrator.child.kill("SIGKILL");
      await orchestrator.exited;
      await runner.stop(AbortSignal.timeout(20_000));
      await cancelSub.cancel();
      await bus.stop(AbortSignal.timeout(5_000));
      await forgejo.close();
      for (const pid of qemuPids(dataDir)) process.kill(pid, "SIGKILL");
      await deleteTopology(prefix);
    });
    await orchestrator.waitForLog(/orchestrator ready/, 60_000);
    await runner.start();

    const jobId = forgejo.queueJob({ workflow: WORKFLOW });
    await forgejo.waitFor(
      () => forgejo.taskOfJob(jobId)?.rows.includes("started"),
      "the step's first line on Forgejo",
      240_000,
    );
    const [qemu] = qemuPids(dataDir);
    assert.ok(qemu !== undefined && isAlive(qemu), "the job's VM runs");
    const accepted = forgejo.taskOfJob(jobId)?.rows.find((r) => r.startsWith("Job accepted by orchestrator "));
    const name = accepted?.slice("Job accepted by orchestrator ".length);
    assert.ok(name, "the task names the orchestrator that accepted it");

    orchestrator.child.kill("SIGKILL");
    await orchestrator.exited;
    const killedAt = Date.now();
    await until(() => !isAlive(qemu), "the VM's QEMU to die with its orchestrator", 10_000);
    assert.equal(forgejo.taskOfJob(jobId)?.status, "running", "nobody has told Forgejo yet");

    const task = await forgejo.waitFor(
      () => {
        const x = forgejo.taskOfJob(jobId);
        return x && x.status !== "running" && x.logArchived ? x : undefined;
      },
      "the task to end",
      90_000,
    );
    const tookMs = Date.now() - killedAt;
    assert.equal(task.status, "failure", task.rows.join("\n"));
    assert.ok(tookMs < 60_000, `ended ${tookMs} ms after the kill`);
    const last = task.rows.at(-1) ?? "";
    assert.ok(
      last.startsWith(`The orchestrator ${name} stopped reporting on this job: nothing was heard from it since `),
      last,
    );
    assert.ok(task.rows.includes("started"), "the lines Forgejo had are kept");
    await until(() => cancels.find((c) => c.jobId && c.reason === last), "a Cancel with the same reason", 10_000);
    await until(() => runner.activeTasks === 0, "the runner to let go of the task", 10_000);
  });
});
