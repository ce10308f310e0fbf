// The recovery paths docs/fleet.md promises, with in-process orchestrators on real RabbitMQ and
// PostgreSQL (VMs where the path involves one): a redelivered job that had ended, a job past its
// start deadline, a job another orchestrator still holds, a job arriving while the database is
// unreachable, a running job whose lease is taken over, and stopping mid-job (the drain, its
// deadline, and jobs handed back to the queue).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it, type TestContext } from "node:test";
import { capturedLog } from "../support/captured-log.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { isAlive, qemuPids, until } from "../support/qemu-processes.js";
import { startTestBus } from "../support/rabbit.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { testImage } from "../support/test-image.js";

const HOST = "local:host";
/** A one-job workflow; each step is "key: value" lines. */
const job = (steps: readonly string[], runsOn = "local") =>
  `on: push\njobs:\n  j:\n    runs-on: ${runsOn}\n    steps:\n${steps
    .map((step) =>
      step
        .split("\n")
        .map((line, i) => `${i === 0 ? "      - " : "        "}${line}`)
        .join("\n"),
    )
    .join("\n")}\n`;
const LONG_WITH_CLEANUP = ["run: echo started; sleep 600", "if: always()\nrun: echo cleanup ran"];

describe("orchestrator recovery (RabbitMQ, PostgreSQL)", () => {
  let td: TestDatabase;
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  async function bus(t: TestContext, name: string) {
    const b = await startTestBus(t, name);
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, b.bus, replyTo);
    return { ...b, replyTo, events };
  }

  it("repeats the result of a redelivered job that had ended, and runs nothing of it again", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-redeliver");
    const { store } = await startOrchestrator(t, { bus: b, databaseUrl: td.location, labels: [], hostLabels: [HOST] });
    const req = await jobRequestFromYaml(job(["run: echo ran once"]), { runsOn: HOST, replyTo });
    await b.publishJob(req);
    await events.finished(req.id, 30_000);
    const before = await store.jobs.get(req.id);
    await b.publishJob(req); // a redelivery after a lost ack, or a runner publishing twice
    const got = await events.until(
      req.id,
      (es) => es.filter((e) => e.kind === "job-finished").length === 2,
      30_000,
      "the result again",
    );
    assert.deepEqual(
      got.filter((e) => e.kind === "job-finished").map((e) => (e.kind === "job-finished" ? e.result : "")),
      ["success", "success"],
    );
    assert.equal(logText(got).filter((l) => l === "ran once").length, 1, "the step ran once");
    assert.equal(got.filter((e) => e.kind === "accepted").length, 1);
    const after = await store.jobs.get(req.id);
    assert.equal(after?.attempts, before?.attempts);
    assert.equal(after?.state, "succeeded");
  });

  it("fails a job that arrives after its start deadline, saying so, without a machine", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-late");
    const { store } = await startOrchestrator(t, { bus: b, databaseUrl: td.location, labels: ["test"] });
    const req = await jobRequestFromYaml(job(["run: echo should-not-run"], "test"), { runsOn: "test", replyTo });
    await b.publishJob({ ...req, startBy: new Date(Date.now() - 1_000).toISOString() });
    const got = await events.finished(req.id, 30_000);
    assert.equal(resultOf(got)?.result, "failure");
    assert.match(resultOf(got)?.reason ?? "", /waited in the queue past its start deadline/);
    assert.ok(!got.some((e) => e.kind === "provisioning" || e.kind === "step-started"));
    assert.equal((await store.db.query("select 1 from vms where job_id = $1", [req.id])).rowCount, 0);
    assert.equal((await store.jobs.get(req.id))?.state, "failed");
  });

  it("waits while another live orchestrator holds the job, and runs nothing when that one ends it", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-held");
    const { store, orchestrator } = await startOrchestrator(t, {
      bus: b,
      databaseUrl: td.location,
      labels: [],
      hostLabels: [HOST],
    });
    const req = await jobRequestFromYaml(job(["run: echo should-not-run"]), { runsOn: HOST, replyTo });
    // Another orchestrator already has it (this delivery is a duplicate of one it is running).
    await store.jobs.insert(req);
    await store.jobs.assign(req.id, "the-other-one");
    await store.leases.acquire(req.id, "the-other-one", 60_000);
    await b.publishJob(req);
    await until(() => orchestrator.runningJobs.includes(req.id), "the orchestrator takes the delivery", 15_000);
    await store.jobs.markProvisioning(req.id);
    await store.jobs.markRunning(req.id);
    await store.jobs.finish(req.id, { result: "success", outputs: {} });
    await store.leases.release(req.id, "the-other-one");
    await until(() => !orchestrator.runningJobs.includes(req.id), "the orchestrator lets the delivery go", 15_000);
    assert.deepEqual(events.events(req.id), [], "it sent nothing for a job it did not run");
    assert.equal((await store.jobs.get(req.id))?.state, "succeeded");
    // Its slot is free again: the next job runs.
    const next = await jobRequestFromYaml(job(["run: echo next"]), { runsOn: HOST, replyTo });
    await b.publishJob(next);
    assert.equal(resultOf(await events.finished(next.id, 30_000))?.result, "success");
  });

  it("takes over a held job whose holder vanished before any step, and runs it", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-takeover");
    const { store } = await startOrchestrator(t, {
      bus: b,
      databaseUrl: td.location,
      labels: [],
      hostLabels: [HOST],
      leaseTtlMs: 2_000,
    });
    const req = await jobRequestFromYaml(job(["run: echo ran after the takeover"]), { runsOn: HOST, replyTo });
    await store.jobs.insert(req);
    await store.jobs.assign(req.id, "the-vanished-one");
    await store.leases.acquire(req.id, "the-vanished-one", 2_000);
    await b.publishJob(req);
    const got = await events.finished(req.id, 30_000);
    assert.equal(resultOf(got)?.result, "success", logText(got).join("\n"));
    assert.ok(logText(got).includes("ran after the takeover"));
    assert.ok(got[0] && got[0].seq > 0, "a takeover continues above the vanished owner's seqs");
  });

  it("gives a job back to the queue while the database is unreachable, and runs it once it answers", async (t) => {
    const proxy = new TcpProxy({ host: "127.0.0.1", port: 5432 });
    await proxy.listen();
    t.after(() => proxy.close());
    const url = new URL(td.location);
    url.host = `127.0.0.1:${proxy.port}`;
    const { bus: b, replyTo, events } = await bus(t, "rec-dbdown");
    const captured = capturedLog();
    const { store } = await startOrchestrator(t, {
      bus: b,
      databaseUrl: url.href,
      labels: [],
      hostLabels: [HOST],
      outageToleranceMs: 1_000,
      log: captured.log,
    });
    proxy.dropAll();
    await proxy.refuse();
    const req = await jobRequestFromYaml(job(["run: echo ran after the outage"]), { runsOn: HOST, replyTo });
    await b.publishJob(req);
    const givenBack = /job could not be recorded while the database is unreachable; giving it back to the queue/;
    // Twice: given back, delivered again, given back again; never dead-lettered.
    await until(() => captured.count(givenBack) >= 2, "the job is given back to the queue twice", 60_000);
    assert.equal(captured.count(/dead-letter/), 0);
    assert.deepEqual(events.events(req.id), [], "nothing of the job ran while the database was away");
    assert.equal((await td.db.query("select 1 from jobs where id = $1", [req.id])).rowCount, 0);
    await proxy.accept();
    const got = await events.finished(req.id, 60_000);
    assert.equal(resultOf(got)?.result, "success", logText(got).join("\n"));
    assert.equal(logText(got).filter((l) => l === "ran after the outage").length, 1);
    assert.equal((await store.jobs.get(req.id))?.state, "succeeded");
  });

  it("stops a running job whose lease another orchestrator took over, and destroys its VM", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-leaselost");
    const { store } = await startOrchestrator(t, {
      bus: b,
      databaseUrl: td.location,
      labels: ["test"],
      leaseTtlMs: 3_000,
    });
    const req = await jobRequestFromYaml(job(LONG_WITH_CLEANUP, "test"), { runsOn: "test", replyTo });
    await b.publishJob(req);
    await events.until(req.id, (es) => logText(es).includes("started"), 240_000, "the step's first line");
    const vm = (
      await store.db.query<{ id: string; pid: number }>("select id, pid from vms where job_id = $1", [req.id])
    ).rows[0];
    assert.ok(vm && isAlive(vm.pid));
    // What a successor does after this orchestrator could not renew for longer than the TTL.
    await store.db.query(
      "update leases set owner = 'usurper', expires_at = now() + interval '1 hour' where job_id = $1",
      [req.id],
    );
    const got = await events.finished(req.id, 60_000);
    assert.equal(resultOf(got)?.result, "cancelled");
    assert.match(resultOf(got)?.reason ?? "", /gnomon lost this job's lease/);
    await until(() => !isAlive(vm.pid) && qemuPids(vm.id).length === 0, "the VM is gone", 30_000);
  });

  it("a stop lets a running job finish within the drain time", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-drain");
    const { orchestrator } = await startOrchestrator(t, {
      bus: b,
      databaseUrl: td.location,
      labels: [],
      hostLabels: [HOST],
      drainTimeoutMs: 60_000,
    });
    const req = await jobRequestFromYaml(job(["run: echo started; sleep 3; echo finished"]), { runsOn: HOST, replyTo });
    await b.publishJob(req);
    await events.until(req.id, (es) => logText(es).includes("started"), 30_000, "the step's first line");
    await orchestrator.stop(AbortSignal.timeout(60_000));
    const got = events.events(req.id);
    assert.equal(resultOf(got)?.result, "success", "the job ended before the stop did");
    assert.ok(logText(got).includes("finished"));
  });

  it("a stop whose drain time runs out cancels the running job with that reason, runs its cleanup, destroys its VM", async (t) => {
    const { bus: b, replyTo, events } = await bus(t, "rec-drain-out");
    const { orchestrator, store } = await startOrchestrator(t, {
      bus: b,
      databaseUrl: td.location,
      labels: ["test"],
      drainTimeoutMs: 2_000,
    });
    const req = await jobRequestFromYaml(job(LONG_WITH_CLEANUP, "test"), { runsOn: "test", replyTo });
    await b.publishJob(req);
    await events.until(req.id, (es) => logText(es).includes("started"), 240_000, "the step's first line");
    const vm = (
      await store.db.query<{ id: string; pid: number }>("select id, pid from vms where job_id = $1", [req.id])
    ).rows[0];
    assert.ok(vm);
    await orchestrator.stop(AbortSignal.timeout(120_000));
    const got = events.events(req.id);
    assert.equal(resultOf(got)?.result, "cancelled");
    assert.equal(
      resultOf(got)?.reason,
      "the gnomon orchestrator running this job was stopped (its drain time ran out)",
    );
    assert.ok(logText(got).includes("cleanup ran"));
    assert.ok(!isAlive(vm.pid) && qemuPids(vm.id).length === 0, "the VM is gone when stop() returns");
  });

  it("a stop hands a job still waiting for capacity back to the queue, and another orchestrator runs it", async (t) => {
    const { bus: first, prefix, replyTo, events } = await bus(t, "rec-handback");
    // Two deliveries at once, memory for one VM: the second job waits for capacity here.
    const a = await startOrchestrator(t, {
      bus: first,
      databaseUrl: td.location,
      labels: ["test"],
      maxVms: 2,
      memoryMiB: 1_500,
      drainTimeoutMs: 120_000,
      id: `handback-a-${prefix}`,
    });
    const running = await jobRequestFromYaml(job(["run: echo A started; sleep 20; echo A finished"], "test"), {
      runsOn: "test",
      replyTo,
    });
    const waiting = await jobRequestFromYaml(job(["run: echo B ran"], "test"), { runsOn: "test", replyTo });
    await first.publishJob(running);
    await events.until(running.id, (es) => logText(es).includes("A started"), 240_000, "A's step");
    await first.publishJob(waiting);
    await events.until(
      waiting.id,
      (es) => es.some((e) => e.kind === "provisioning" && e.phase === "waiting-for-capacity"),
      30_000,
      "B waiting for capacity",
    );
    const { bus: second } = await startTestBus(t, "rec-handback-b", prefix);
    const b = await startOrchestrator(t, {
      bus: second,
      databaseUrl: td.location,
      labels: ["test"],
      maxVms: 1,
      id: `handback-b-${prefix}`,
    });
    const stopped = a.orchestrator.stop(AbortSignal.timeout(180_000));
    const got = await events.finished(waiting.id, 240_000);
    assert.equal(resultOf(got)?.result, "success", logText(got).join("\n"));
    assert.ok(logText(got).includes("B ran"));
    const accepted = got.filter((e) => e.kind === "accepted").map((e) => (e.kind === "accepted" ? e.orchestrator : ""));
    assert.equal(accepted.at(-1), b.orchestrator.id, "the other orchestrator ran it");
    await stopped;
    assert.equal(resultOf(events.events(running.id))?.result, "success", "the running job drained");
  });
});
