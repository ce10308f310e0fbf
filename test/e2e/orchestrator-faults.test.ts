// The orchestrator under faults, with real processes, RabbitMQ, PostgreSQL and VMs: an
// orchestrator killed with SIGKILL mid-job is cleaned up after by the next one (VM reaped, job
// ended "orchestrator lost"), /metrics shows what happened, and a SIGTERM stops cleanly; a job
// rides out PostgreSQL and RabbitMQ restarts without losing a line. They check only the VMs their
// own orchestrators started: other gnomons on this machine have VMs of their own.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { spawnGnomon } from "../support/cli.js";
import { createTestDatabase, pgCluster, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, logText, resultOf } from "../support/orchestrators.js";
import { foreignQemu, isAlive, qemuPids, until } from "../support/qemu-processes.js";
import { RABBIT_URL, rabbitmqctl, startTestBus } from "../support/rabbit.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { TEST_IMAGES_DIR, testImage } from "../support/test-image.js";

const LEASE_TTL_S = 6;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe("orchestrator faults (processes, RabbitMQ, PostgreSQL, VMs)", () => {
  let td: TestDatabase;
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  it("a SIGKILLed orchestrator's VM is reaped and its job ends 'orchestrator lost' once its lease expired; metrics show it", async (t) => {
    const { bus, prefix } = await startTestBus(t, "e2e-faults");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const metricsPort = await freePort();
    // Another gnomon's VM on this machine: this test must neither count it nor kill it.
    const foreign = foreignQemu(t);
    // The restarted orchestrator has the data directory of the one that died, as a service does:
    // the reaper deletes VM files only inside its own <dataDir>/vms.
    const dataDir = mkdtempSync(join(tmpdir(), "gnomon-faults-"));
    const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
      AMQP_URL: RABBIT_URL,
      DATABASE_URL: td.location,
      GNOMON_AMQP_PREFIX: prefix,
      GNOMON_CLUSTER_KEY: SAMPLE_CLUSTER_KEY.toString("hex"),
      GNOMON_DATA_DIR: dataDir,
      GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
      GNOMON_LABELS: "test",
      GNOMON_MAX_VMS: "1",
      GNOMON_LEASE_TTL: `${LEASE_TTL_S}s`,
      ...extra,
    });

    const first = spawnGnomon(["orchestrator"], { env: env() });
    t.after(() => first.child.kill("SIGKILL"));
    await first.waitForLog(/orchestrator ready/, 60_000);

    const lost = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo started; sleep 600\n",
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(lost);
    await events.until(lost.id, (es) => logText(es).includes("started"), 180_000, "the step's first line");
    const vms = await td.db.query<{ id: string; pid: number }>("select id, pid from vms where job_id = $1", [lost.id]);
    const vm = vms.rows[0];
    assert.ok(vm, "the running VM is recorded");
    assert.ok(isAlive(vm.pid), "its QEMU runs");

    first.child.kill("SIGKILL");
    await first.exited;
    // The dead orchestrator's lease, renewed no more: the job may be ended only after it expired.
    const lease = await td.db.query<{ expires_at: Date }>("select expires_at from leases where job_id = $1", [lost.id]);
    const leaseExpiresAt = lease.rows[0]!.expires_at.getTime();

    const second = spawnGnomon(["orchestrator"], {
      env: env({ GNOMON_METRICS_LISTEN: `127.0.0.1:${metricsPort}` }),
    });
    t.after(() => second.child.kill("SIGKILL"));
    await second.waitForLog(/orchestrator ready/, 60_000);

    const got = await events.finished(lost.id, (LEASE_TTL_S + 30) * 1000);
    const fin = resultOf(got);
    assert.equal(fin?.result, "failure");
    assert.match(fin?.reason ?? "", /orchestrator lost while running/);
    assert.ok(fin && fin.t >= leaseExpiresAt, "ended after the dead orchestrator's lease expired, not before");
    await until(() => !isAlive(vm.pid), "the lost VM's QEMU is killed", 30_000);
    assert.deepEqual(qemuPids(vm.id), [], "no QEMU process of the lost VM remains");
    await until(
      async () => (await td.db.query("select 1 from vms where id = $1", [vm.id])).rowCount === 0,
      "the VM record is removed",
      15_000,
    );
    assert.equal(existsSync(join(dataDir, "vms", vm.id)), false, "the lost VM's run folder is deleted");
    assert.equal(
      (await td.db.query<{ state: string }>("select state from jobs where id = $1", [lost.id])).rows[0]?.state,
      "failed",
    );

    const fine = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo all good\n",
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(fine);
    assert.equal(resultOf(await events.finished(fine.id, 180_000))?.result, "success");

    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const re of [
      /gnomon_jobs_finished_total\{result="failure",label="test"\} 1/,
      /gnomon_jobs_finished_total\{result="success",label="test"\} 1/,
      /gnomon_vms_reaped_total\{label="test"\} 1/,
      /gnomon_vms_running\{label="test"\} 0/,
      /gnomon_jobs\{state="running",label="test"\} 0/,
      /gnomon_job_queue_wait_seconds_count\{label="test"\} 1/,
      /gnomon_vm_boot_phase_seconds_count\{phase="booting",label="test"\} 1/,
      /gnomon_job_duration_seconds_count\{label="test",result="success"\} 1/,
    ])
      assert.match(text, re);
    const health = (await (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).json()) as Record<string, unknown>;
    assert.equal(health["ok"], true);

    second.child.kill("SIGTERM");
    assert.equal(await second.exited, 0, second.stderr().slice(-2_000));
    assert.deepEqual(qemuPids(dataDir), [], "no QEMU process of this test's orchestrators is left");
    assert.ok(isAlive(foreign.pid), "another gnomon's VM on this machine is left alone");
  });

  it("a SIGKILLed orchestrator restarted only after its lease expired: the reaper fails the job once and /metrics counts it", async (t) => {
    const { bus, prefix } = await startTestBus(t, "e2e-late");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const metricsPort = await freePort();
    // One data directory for both, as a service restarted on its host has.
    const dataDir = mkdtempSync(join(tmpdir(), "gnomon-late-"));
    const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
      AMQP_URL: RABBIT_URL,
      DATABASE_URL: td.location,
      GNOMON_AMQP_PREFIX: prefix,
      GNOMON_CLUSTER_KEY: SAMPLE_CLUSTER_KEY.toString("hex"),
      GNOMON_DATA_DIR: dataDir,
      GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
      GNOMON_LABELS: "test",
      GNOMON_MAX_VMS: "1",
      GNOMON_LEASE_TTL: `${LEASE_TTL_S}s`,
      ...extra,
    });
    const first = spawnGnomon(["orchestrator"], { env: env() });
    t.after(() => first.child.kill("SIGKILL"));
    await first.waitForLog(/orchestrator ready/, 60_000);
    const lost = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo started; sleep 600\n",
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(lost);
    await events.until(lost.id, (es) => logText(es).includes("started"), 180_000, "the step's first line");
    first.child.kill("SIGKILL");
    await first.exited;
    // As after a reboot or a systemd restart backoff: nobody is there until the lease has expired.
    await until(
      async () =>
        (await td.db.query("select 1 from leases where job_id = $1 and expires_at < now()", [lost.id])).rowCount === 1,
      "the dead orchestrator's lease expires",
      (LEASE_TTL_S + 10) * 1000,
    );
    const second = spawnGnomon(["orchestrator"], {
      env: env({ GNOMON_METRICS_LISTEN: `127.0.0.1:${metricsPort}` }),
    });
    t.after(() => second.child.kill("SIGKILL"));
    await second.waitForLog(/orchestrator ready/, 60_000);
    const fin = resultOf(await events.finished(lost.id, 60_000));
    assert.equal(fin?.result, "failure");
    assert.match(fin?.reason ?? "", /orchestrator lost while running/);
    // The redelivered request reaches the second orchestrator too; it repeats the result, no more.
    await until(
      async () =>
        (await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).includes("gnomon_jobs_finished_total{"),
      "the lost job is counted",
      15_000,
    );
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(text, /gnomon_jobs_finished_total\{result="failure",label="test"\} 1\n/);
    second.child.kill("SIGTERM");
    assert.equal(await second.exited, 0, second.stderr().slice(-2_000));
    assert.deepEqual(qemuPids(dataDir), [], "no QEMU process of this test's orchestrators is left");
  });

  it("a job whose orchestrator is SIGKILLed before its first step runs again on the next one, every line once", async (t) => {
    const { bus, prefix } = await startTestBus(t, "e2e-early");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const dataDir = mkdtempSync(join(tmpdir(), "gnomon-early-"));
    const env = (): NodeJS.ProcessEnv => ({
      AMQP_URL: RABBIT_URL,
      DATABASE_URL: td.location,
      GNOMON_AMQP_PREFIX: prefix,
      GNOMON_CLUSTER_KEY: SAMPLE_CLUSTER_KEY.toString("hex"),
      GNOMON_DATA_DIR: dataDir,
      GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
      GNOMON_LABELS: "test",
      GNOMON_MAX_VMS: "1",
      GNOMON_LEASE_TTL: `${LEASE_TTL_S}s`,
    });
    const first = spawnGnomon(["orchestrator"], { env: env() });
    t.after(() => first.child.kill("SIGKILL"));
    await first.waitForLog(/orchestrator ready/, 60_000);
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo the only run\n",
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(req);
    await events.until(
      req.id,
      (es) => es.some((e) => e.kind === "provisioning" && e.phase === "booting"),
      120_000,
      "its VM booting",
    );
    first.child.kill("SIGKILL");
    await first.exited;
    const second = spawnGnomon(["orchestrator"], { env: env() });
    t.after(() => second.child.kill("SIGKILL"));
    const got = await events.finished(req.id, 240_000);
    assert.equal(resultOf(got)?.result, "success", logText(got).join("\n"));
    assert.equal(logText(got).filter((l) => l === "the only run").length, 1);
    const owners = new Set(got.flatMap((e) => (e.kind === "accepted" ? [e.orchestrator] : [])));
    assert.equal(owners.size, 2, "accepted by the killed orchestrator, then by its successor");
    assert.equal(
      (await td.db.query<{ state: string }>("select state from jobs where id = $1", [req.id])).rows[0]?.state,
      "succeeded",
    );
    // The killed orchestrator's half-booted VM is reaped by its successor (every half lease).
    await until(() => qemuPids(dataDir).length === 0, "the first VM is reaped", (LEASE_TTL_S + 30) * 1000);
    await until(
      async () => (await td.db.query("select 1 from vms where job_id = $1", [req.id])).rowCount === 0,
      "no VM record of the job is left",
      15_000,
    );
    second.child.kill("SIGTERM");
    assert.equal(await second.exited, 0, second.stderr().slice(-2_000));
  });

  it("a job rides out PostgreSQL stopped while its VM boots and RabbitMQ restarted mid-step: success, every line once, in order", async (t) => {
    t.after(() => pgCluster("start").catch(() => {})); // never leave the services stopped
    t.after(() => rabbitmqctl("start_app"));
    const { bus, prefix } = await startTestBus(t, "e2e-outage");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const metricsPort = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), "gnomon-outage-"));
    const health = async () => {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const orch = spawnGnomon(["orchestrator"], {
      env: {
        AMQP_URL: RABBIT_URL,
        DATABASE_URL: td.location,
        GNOMON_AMQP_PREFIX: prefix,
        GNOMON_CLUSTER_KEY: SAMPLE_CLUSTER_KEY.toString("hex"),
        GNOMON_DATA_DIR: dataDir,
        GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
        GNOMON_LABELS: "test",
        GNOMON_MAX_VMS: "1",
        GNOMON_LEASE_TTL: "60s",
        GNOMON_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      },
    });
    t.after(() => orch.child.kill("SIGKILL"));
    await orch.waitForLog(/orchestrator ready/, 60_000);

    const job = await jobRequestFromYaml(
      [
        "on: push",
        "jobs:",
        "  j:",
        "    runs-on: test",
        "    steps:",
        "      - run: for i in 1 2 3 4 5 6 7 8 9 10; do echo tick $i; sleep 2; done",
        "      - run: echo second step",
        "",
      ].join("\n"),
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(job);
    await events.until(
      job.id,
      (es) => es.some((e) => e.kind === "provisioning" && e.phase === "booting"),
      120_000,
      "the VM booting",
    );
    // The job's next state change (running, once the VM is up) falls into the outage and waits it out.
    await pgCluster("stop");
    await orch.waitForLog(/the database is unreachable/, 120_000);
    const down = await health();
    assert.equal(down.status, 503, "unhealthy while the database is out of reach");
    assert.match(String(down.body["database"]), /^unreachable since /);
    await sleep(3_000);
    await pgCluster("start");
    await orch.waitForLog(/the database answers again/, 60_000);
    assert.equal((await health()).status, 200);
    await events.until(job.id, (es) => logText(es).includes("tick 2"), 120_000, "the step's second line");
    await rabbitmqctl("stop_app");
    await until(async () => (await health()).body["queue"] === "reconnecting", "unhealthy without RabbitMQ", 30_000);
    assert.equal((await health()).status, 503);
    await sleep(5_000);
    await rabbitmqctl("start_app");
    await orch.waitForLog(/reconnected to rabbitmq/, 60_000);
    await until(async () => (await health()).status === 200, "healthy again", 30_000);

    const got = await events.finished(job.id, 180_000);
    const lines = logText(got);
    assert.equal(resultOf(got)?.result, "success", `${lines.join("\n")}\n${orch.stderr().slice(-3_000)}`);
    assert.deepEqual(
      lines.filter((l) => /^tick \d+$|^second step$/.test(l)),
      [...Array.from({ length: 10 }, (_, i) => `tick ${i + 1}`), "second step"],
    );
    assert.deepEqual(
      got.map((e) => e.seq),
      got.map((_, i) => i),
      "no event is missing",
    );
    const row = await td.db.query<{ state: string }>("select state from jobs where id = $1", [job.id]);
    assert.equal(row.rows[0]?.state, "succeeded");
    await until(() => qemuPids(dataDir).length === 0, "the VM is gone", 30_000);
    // A restart while idle is shrugged off as well: the next job runs.
    await pgCluster("restart");
    const next = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo after the restarts\n",
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(next);
    assert.equal(resultOf(await events.finished(next.id, 180_000))?.result, "success");
    orch.child.kill("SIGTERM");
    assert.equal(await orch.exited, 0, orch.stderr().slice(-2_000));
  });
});
