// Warm pools (orchestrator.pool) with real VMs of the test image: the pool's memory budget, the
// hand-over that swaps the pool key for the job's own, and jobs through the fake Forgejo that
// start from the pool, with the pool refilled and no VM serving two jobs.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client } from "ssh2";
import { VERSION } from "../../src/cli/version.js";
import { readRegistration } from "../../src/forge/github/credentials.js";
import { createGitHubRunner } from "../../src/forge/github/runner.js";
import { Slots } from "../../src/lifecycle/slots.js";
import { createVmProvisioner } from "../../src/orchestrator/provisioner.js";
import { rootLogger } from "../../src/telemetry/log.js";
import { loadCatalog } from "../../src/vm/catalog.js";
import { handOver, poolConnection } from "../../src/vm/identity.js";
import { startFakeForgejo, type TaskView } from "../fakes/forgejo-server.js";
import { startFakeGitHub } from "../fakes/github-server.js";
import { type GnomonProcess, registerForgejoWithCli, registerGitHubWithCli, spawnGnomon } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { qemuPids, startForgejoRunner, startStage, testLogger, until } from "../support/forge-e2e.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { DEFAULT_EGRESS, EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { startTestBus } from "../support/rabbit.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { TEST_IMAGES_DIR, TEST_RUN_DIR, testImage } from "../support/test-image.js";

const VM_JOB_MS = 240_000;

let td: TestDatabase;

/** Whether `privateKey` logs in as runner on the VM's forwarded port. */
function logsIn(port: number, privateKey: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const c = new Client();
    c.once("ready", () => {
      c.end();
      resolve(true);
    });
    c.once("error", () => resolve(false));
    c.connect({ host: "127.0.0.1", port, username: "runner", privateKey, readyTimeout: 30_000 });
  });
}

/** A stage (maxVms 2) whose orchestrator keeps a pool of 2 for `test`, once both pooled VMs are idle. */
async function startPoolOfTwo(t: TestContext, name: string) {
  const stage = await startStage(t, {
    databaseUrl: td.location,
    name,
    maxVms: 2,
    pool: { labels: [{ label: "test", min: 2, max: 2 }], memoryMiB: 4096, idleTtlMs: 3_600_000 },
  });
  const pool = stage.orchestrator.pool!;
  await until(() => pool.status().labels["test"]?.idle === 2, "the pool to hold two idle VMs", VM_JOB_MS);
  const pooledIds = (await stage.store.vms.listOnHost(stage.orchestrator.host))
    .filter((v) => v.owner === stage.orchestrator.id)
    .map((v) => v.id);
  assert.equal(pooledIds.length, 2);
  return { stage, pool, pooledIds };
}

describe("warm pools (real VMs)", () => {
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  it("a hand-over makes the job's key the only one the guest accepts: the pool key no longer logs in", async (t) => {
    const provisioner = createVmProvisioner({
      catalog: await loadCatalog(),
      imagesDir: TEST_IMAGES_DIR,
      runDir: TEST_RUN_DIR,
      labels: ["test"],
      egress: DEFAULT_EGRESS,
    });
    const target = await provisioner.resolve("test");
    assert.equal(target.kind, "vm");
    if (target.kind !== "vm") return;
    const machine = await provisioner.preboot!(target.image, {
      signal: AbortSignal.timeout(VM_JOB_MS),
      log: rootLogger(),
      onSpawn: async () => undefined,
    });
    t.after(() => machine.destroy());
    const poolKey = Buffer.from(machine.ssh.privateKey);
    assert.equal(await logsIn(machine.ssh.port, poolKey), true, "the pool key logs in before the hand-over");

    const client = await poolConnection(machine);
    t.after(() => client.end());
    const jobKey = await handOver(machine, client);
    assert.deepEqual(machine.ssh.privateKey, jobKey.privateKey, "the machine logs in with the job key now");
    assert.equal(await logsIn(machine.ssh.port, jobKey.privateKey), true, "the job key logs in");
    assert.equal(await logsIn(machine.ssh.port, poolKey), false, "the pool key is refused");
    assert.ok(
      poolKey.some((b) => b !== 0),
      "(the test's copy of the pool key is intact, so the refusal is the guest's doing)",
    );
  });

  it("keeps within its memory budget: room for one VM, a pool of 3 holds one", async (t) => {
    const { bus } = await startTestBus(t, "e2e-pool-mem");
    const stage = await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: ["test"],
      maxVms: 4,
      pool: { labels: [{ label: "test", min: 3, max: 3 }], memoryMiB: 1024, idleTtlMs: 3_600_000 },
    });
    const pool = stage.orchestrator.pool!;
    const status = await until(
      () => {
        const s = pool.status();
        return s.labels["test"]?.idle === 1 && s.limitedBy === "memory" ? s : undefined;
      },
      "the pool to hold one idle VM and stop at its memory budget",
      VM_JOB_MS,
    );
    assert.deepEqual(status.labels["test"], { idle: 1, booting: 0, target: 3 });
    assert.equal(status.memoryMiB, 1024);
    const rows = (await stage.store.vms.listOnHost(stage.orchestrator.host)).filter(
      (v) => v.owner === stage.orchestrator.id,
    );
    assert.equal(rows.length, 1, "one pooled VM recorded");
    assert.equal(rows[0]!.jobId, "", "it has no job");
    assert.equal(qemuPids(rows[0]!.id).length, 1, "its QEMU runs");
    assert.equal(stage.orchestrator.capacity.usedVms, 1, "it holds host capacity like a job's VM");
    await stage.orchestrator.stop(AbortSignal.timeout(30_000));
    await until(() => qemuPids(rows[0]!.id).length === 0, "the pooled VM to be destroyed on stop", 30_000);
  });

  it("never delays a job of another label: with the host full of pooled VMs, it destroys one to make room", async (t) => {
    const { bus } = await startTestBus(t, "e2e-pool-room");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const { orchestrator } = await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: ["test"],
      hostLabels: ["local:host"],
      maxVms: 1,
      pool: { labels: [{ label: "test", min: 1, max: 1 }], memoryMiB: 4096, idleTtlMs: 3_600_000 },
    });
    await until(() => orchestrator.pool!.status().labels["test"]?.idle === 1, "the pool to hold its VM", VM_JOB_MS);
    assert.equal(orchestrator.capacity.freeVms, 0, "the pooled VM holds the host's only VM slot");
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  one:\n    runs-on: local:host\n    steps:\n      - run: echo on the host\n",
      { runsOn: "local:host", replyTo },
    );
    await bus.publishJob(req);
    const got = await events.finished(req.id, VM_JOB_MS);
    assert.equal(resultOf(got)?.result, "success", logText(got).join("\n"));
    assert.ok(logText(got).includes("on the host"));
    // And the pool takes the slot back once the job is gone.
    await until(() => orchestrator.pool!.status().labels["test"]?.idle === 1, "the pool to refill", VM_JOB_MS);
  });

  it("Forgejo: with a pool of 2, four jobs queued at once all succeed, two from the pool, each in its own VM, and the pool refills", async (t) => {
    const forgejo = await startFakeForgejo(undefined);
    const { stage, pool, pooledIds } = await startPoolOfTwo(t, "e2e-pool-fj");
    stage.beforeTeardown(() => forgejo.close());

    await startForgejoRunner(stage, await registerForgejoWithCli(forgejo, "linux:vm:test"), { capacity: 4 });

    const marker = randomUUID();
    const workflow = `name: ci\non: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - name: Which VM\n        run: |\n          echo "boot ${marker} $(cat /proc/sys/kernel/random/boot_id)"\n`;
    const jobs = [1, 2, 3, 4].map(() => forgejo.queueJob({ workflow }));
    const tasks: TaskView[] = [];
    for (const id of jobs)
      tasks.push(
        await forgejo.waitFor(
          () => {
            const v = forgejo.taskOfJob(id);
            return v && v.status !== "running" && v.logArchived ? v : undefined;
          },
          `job ${id} to end`,
          VM_JOB_MS * 2,
        ),
      );
    const logs = tasks.map((task) => task.rows.join("\n"));
    for (const [i, task] of tasks.entries()) assert.equal(task.status, "success", logs[i]);
    const fromPool = tasks.filter((task) => task.rows.some((r) => r.includes("from the warm pool")));
    assert.equal(fromPool.length, 2, `two jobs say they started from the pool:\n${logs.join("\n---\n")}`);
    for (const id of pooledIds)
      assert.equal(
        fromPool.filter((task) => task.rows.some((r) => r.includes(`VM ${id} from the warm pool`))).length,
        1,
        `pooled VM ${id} served exactly one job`,
      );
    const boots = tasks.map((task) => task.rows.find((r) => r.startsWith(`boot ${marker} `)));
    assert.equal(new Set(boots).size, 4, `each job ran in a VM of its own: ${boots.join(", ")}`);
    for (const id of pooledIds) assert.equal(qemuPids(id).length, 0, `pooled VM ${id} was destroyed after its job`);

    const refilled = await until(
      async () => {
        if (pool.status().labels["test"]?.idle !== 2) return undefined;
        const rows = (await stage.store.vms.listOnHost(stage.orchestrator.host)).filter(
          (v) => v.owner === stage.orchestrator.id,
        );
        return rows.length === 2 ? rows : undefined;
      },
      "the pool to refill to two idle VMs",
      VM_JOB_MS,
    );
    for (const v of refilled) assert.ok(!pooledIds.includes(v.id), "a refilled VM is a new one");
    const claims = await stage.metrics.registry.getSingleMetricAsString("gnomon_pool_claims_total");
    assert.match(claims, /gnomon_pool_claims_total\{label="test",result="hit"\} 2/);
    const starts = await stage.metrics.registry.getSingleMetricAsString("gnomon_vm_start_seconds");
    assert.match(starts, /gnomon_vm_start_seconds_count\{label="test",path="pooled"\} 2/);
    assert.match(starts, /gnomon_vm_start_seconds_count\{label="test",path="cold"\} 2/);
  });

  it("GitHub: with a pool of 2, four jobs queued at once all succeed, each in its own VM, the two pooled VMs serving one job each", async (t) => {
    const fake = await startFakeGitHub(undefined, { flow: "v2" });
    const { stage, pooledIds } = await startPoolOfTwo(t, "e2e-pool-gh");
    stage.beforeTeardown(() => fake.close());
    const { dir } = await registerGitHubWithCli(fake, { name: "e2e-pool-gh", labels: "test" });
    const runner = createGitHubRunner({
      registration: readRegistration(dir),
      bus: stage.forgeBus,
      clusterKey: SAMPLE_CLUSTER_KEY,
      capacity: new Slots(4),
      runnerVersion: "2.330.0",
      gnomonVersion: VERSION,
      log: testLogger(),
    });
    await runner.start();
    stage.beforeTeardown(() => runner.stop(AbortSignal.timeout(20_000)));

    const marker = randomUUID();
    const jobs = [1, 2, 3, 4].map(() =>
      fake.queueJob({
        labels: ["self-hosted", "test"],
        steps: [{ name: "Which VM", run: `echo "boot ${marker} $(cat /proc/sys/kernel/random/boot_id)"` }],
      }),
    );
    for (const job of jobs)
      await fake.waitFor(() => fake.job(job.jobId).state === "completed", `job ${job.jobId} completed`, VM_JOB_MS * 2);
    const logs = jobs.map((job) => fake.job(job.jobId).jobLog?.content ?? "");
    for (const [i, job] of jobs.entries()) assert.equal(fake.job(job.jobId).conclusion, "succeeded", logs[i]);
    for (const id of pooledIds)
      assert.equal(
        logs.filter((l) => l.includes(`VM ${id} from the warm pool`)).length,
        1,
        `pooled VM ${id} served exactly one job:\n${logs.join("\n---\n")}`,
      );
    const boots = logs.map((l) => new RegExp(`^.*boot ${marker} (\\S+)$`, "m").exec(l)?.[1]);
    assert.equal(new Set(boots).size, 4, `each job ran in a VM of its own: ${boots.join(", ")}`);
  });
});

describe("warm pools under `gnomon up` (embedded queue and database)", () => {
  before(() => testImage());

  it("leaves no pooled VM running after a SIGTERM, nor after a SIGKILL and a restart (the reaper removes it)", async (t) => {
    const forgejo = await startFakeForgejo(undefined);
    const dir = mkdtempSync(join(tmpdir(), "gnomon-e2e-pool-up-"));
    const dataDir = join(dir, "data");
    await registerForgejoWithCli(forgejo, "linux:vm:test", dir);
    writeFileSync(
      join(dir, "gnomon.yaml"),
      "orchestrator:\n  pool:\n    labels:\n      test: { min: 1 }\n    memoryMiB: 1024\n",
    );
    const env = {
      GNOMON_DATA_DIR: dataDir,
      GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
      GNOMON_LABELS: "test",
      GNOMON_MAX_VMS: "1",
      GNOMON_LEASE_TTL: "5s",
      GNOMON_LOG_LEVEL: "info",
    };
    const started: GnomonProcess[] = [];
    const up = () => {
      const p = spawnGnomon(["up"], { env, cwd: dir });
      started.push(p);
      return p;
    };
    t.after(async () => {
      for (const p of started)
        if (p.child.exitCode === null && p.child.signalCode === null) {
          p.child.kill("SIGKILL");
          await p.exited;
        }
      for (const pid of qemuPids(dataDir)) process.kill(pid, "SIGKILL");
      await forgejo.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const vmsDir = join(dataDir, "vms");
    const runFolders = () => (existsSync(vmsDir) ? readdirSync(vmsDir) : []);

    const first = up();
    const ready = await first.waitForLog(/^a warm pool VM is ready$/, VM_JOB_MS);
    assert.equal(qemuPids(String(ready["vm"])).length, 1, "the pooled VM runs under gnomon up");
    first.child.kill("SIGTERM");
    assert.equal(await first.exited, 0, first.stderr());
    assert.deepEqual(qemuPids(dataDir), [], "SIGTERM: no QEMU process is left");
    assert.deepEqual(runFolders(), [], "SIGTERM: no VM run folder is left");

    const second = up();
    const pooled = String((await second.waitForLog(/^a warm pool VM is ready$/, VM_JOB_MS))["vm"]);
    second.child.kill("SIGKILL");
    await second.exited;
    assert.ok(runFolders().includes(pooled), "a SIGKILL leaves the pooled VM's files behind");

    const third = up();
    await until(
      () => qemuPids(pooled).length === 0 && !runFolders().includes(pooled),
      "the restarted gnomon's reaper to remove the dead process's pooled VM",
      120_000,
    );
    await third.waitForLog(/^reaped a pooled VM whose orchestrator is gone$/, 60_000);
    third.child.kill("SIGTERM");
    assert.equal(await third.exited, 0, third.stderr());
    assert.deepEqual(qemuPids(dataDir), [], "no QEMU process is left");
  });
});
