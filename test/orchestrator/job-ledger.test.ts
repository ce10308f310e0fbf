// The job ledger on PostgreSQL and the in-process bus: it moves the job's row only forward, in the
// order run-job's phases call it; its one exit writes the ending down (result, counted, published,
// lease released) before it settles the delivery; an error nothing expected fails a job only once
// the lease is held; and a job's VMs are forgotten when its machine is gone, booted or not.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { pino } from "pino";
import {
  type Ending,
  JobLedger,
  LedgerStateError,
  STORE_DOWN_REQUEUE_DELAY_MS,
} from "../../src/orchestrator/job-ledger.js";
import type { JobDelivery } from "../../src/queue/bus.js";
import { MemoryBus } from "../../src/queue/memory.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { Store } from "../../src/store/store.js";
import { createMetrics, type Metrics } from "../../src/telemetry/metrics.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, resultOf } from "../support/orchestrators.js";
import { within } from "../support/within.js";

const LABEL = "ledger-test";
const YAML = `on: push\njobs:\n  j:\n    runs-on: ${LABEL}\n    steps:\n      - run: echo hi\n`;
const ORCHESTRATOR = "ledger-orchestrator";

describe("job ledger (PostgreSQL, in-process bus)", () => {
  let td: TestDatabase;
  before(async () => {
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  /** A store, a bus, one job delivered to a consumer, and a ledger for it. */
  async function setup(t: TestContext) {
    const store = new Store({ databaseUrl: td.location, dataDir: mkdtempSync(join(tmpdir(), "gnomon-ledger-")) });
    await store.start();
    t.after(() => store.stop(AbortSignal.timeout(5_000)));
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(5_000)));
    const replyTo = `runner-${Math.random().toString(16).slice(2, 10)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const deliveries: JobDelivery[] = [];
    let delivered: () => void = () => {};
    const consumer = await bus.consumeJobs([LABEL], 10, (d) => {
      deliveries.push(d);
      delivered();
    });
    /** The next job the consumer gets. */
    const nextDelivery = (): Promise<JobDelivery> =>
      new Promise((resolve) => {
        const take = () => {
          const d = deliveries.shift();
          if (d) resolve(d);
          else delivered = take;
        };
        take();
      });
    t.after(() => consumer.cancel());
    /** Whether the job is still in its queue: a consumer that goes away gives back what it did not settle. */
    const queued = async () => {
      await consumer.cancel();
      return bus.broker.readyCount(`jobs.${LABEL}`) + deliveries.length;
    };
    const req = await jobRequestFromYaml(YAML, { runsOn: LABEL, replyTo });
    await bus.publishJob(req);
    const delivery = await nextDelivery();
    const metrics = createMetrics({ defaultMetrics: false });
    const cancel = new AbortController();
    const ledger = new JobLedger(
      delivery,
      {
        orchestratorId: ORCHESTRATOR,
        host: "ledger-host",
        bus,
        store,
        leaseTtlMs: 5_000,
        heartbeatMs: 60_000,
        metrics,
        log: pino({ level: "silent" }),
      },
      cancel.signal,
    );
    return { store, bus, events, nextDelivery, req, metrics, ledger, cancel, queued };
  }

  const metricValue = async (metrics: Metrics, name: string, labels: Record<string, string>) => {
    const m = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
    const hit = m.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
    return hit?.value ?? 0;
  };

  it("closes a result once: recorded, counted, published and the lease released, then the delivery acked", async (t) => {
    const { store, events, req, metrics, ledger, queued } = await setup(t);
    assert.deepEqual(await ledger.record(), { kind: "recorded" });
    assert.deepEqual(await ledger.lease(AbortSignal.timeout(5_000)), { kind: "held" });
    await ledger.accept();
    assert.equal(await metricValue(metrics, "gnomon_jobs", { state: "assigned", label: LABEL }), 1);
    await ledger.provisioning();
    await ledger.running();
    assert.equal(ledger.state, "running");
    assert.equal(await metricValue(metrics, "gnomon_jobs", { state: "running", label: LABEL }), 1);
    ledger.apply({ kind: "step-started", step: 0, stage: "main", name: "echo hi" });
    ledger.apply({ kind: "job-finished", result: "failure", outputs: {} }); // the engine's: withheld
    for (let i = 0; i < 100 && !(await store.jobs.get(req.id))?.firstStepAt; i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok((await store.jobs.get(req.id))?.firstStepAt, "the first step's start is recorded");

    await ledger.close({ kind: "result", result: "success", outputs: { x: "1" } });
    await ledger.close({ kind: "result", result: "failure", reason: "a second close changes nothing" });

    const job = await store.jobs.get(req.id);
    assert.equal(job?.state, "succeeded");
    assert.deepEqual(job?.outputs, { x: "1" });
    assert.equal(await store.leases.get(req.id), undefined, "the lease is released");
    assert.equal(await metricValue(metrics, "gnomon_jobs_finished_total", { result: "success", label: LABEL }), 1);
    assert.equal(await metricValue(metrics, "gnomon_jobs_finished_total", { result: "failure", label: LABEL }), 0);
    assert.equal(await metricValue(metrics, "gnomon_jobs", { state: "running", label: LABEL }), 0);
    const got = await events.finished(req.id, 5_000);
    assert.deepEqual(
      got.map((e) => e.kind),
      ["accepted", "step-started", "job-finished"],
    );
    assert.deepEqual(resultOf(got)?.outputs, { x: "1" });
    assert.ok((job?.eventSeq ?? 0) >= 3, "the next seq is recorded for a successor");
    assert.equal(await queued(), 0, "acked: the job left its queue");
  });

  it("refuses a step out of order: the phases' order is the ledger's", async (t) => {
    const { ledger } = await setup(t);
    await assert.rejects(ledger.accept(), LedgerStateError);
    assert.deepEqual(await ledger.record(), { kind: "recorded" });
    await assert.rejects(ledger.running(), LedgerStateError);
    await ledger.close({ kind: "requeue" });
  });

  it("gives the job back or dead-letters it for an error before the lease is held, and fails it after", async (t) => {
    const { bus, req, ledger, nextDelivery, cancel } = await setup(t);
    assert.deepEqual(await ledger.record(), { kind: "recorded" });
    const down = new StoreUnavailableError("postgres://db", "try again later");
    assert.deepEqual(ledger.crashed(down), { kind: "requeue", afterMs: STORE_DOWN_REQUEUE_DELAY_MS });
    assert.deepEqual(ledger.crashed(new Error("boom")), {
      kind: "dead-letter",
      reason: "gnomon could not take the job: boom",
    });
    assert.deepEqual(await ledger.lease(AbortSignal.timeout(5_000)), { kind: "held" });
    const ending: Ending = ledger.crashed(new Error("boom"));
    assert.deepEqual(ending, {
      kind: "result",
      result: "failure",
      reason: "gnomon failed while running the job: boom",
    });

    // The pause before a requeue ends early when the job is cancelled (a stop past its deadline).
    cancel.abort();
    await within(ledger.close({ kind: "requeue", afterMs: 60_000 }), "the requeue, without its pause", 10_000);
    const again = await nextDelivery();
    assert.equal(again.request.id, req.id, "the job is delivered again");
    assert.equal(again.redelivered, true);
    const dead = await bus.peekDeadLetters();
    assert.equal(dead.length, 0);
  });

  it("dead-letters with the reason", async (t) => {
    const { bus, req, ledger } = await setup(t);
    await ledger.close({ kind: "dead-letter", reason: "could not be recorded: no" });
    const dead = await bus.peekDeadLetters();
    assert.deepEqual(
      dead.map((d) => [d.messageId, d.reason]),
      [[req.id, "could not be recorded: no"]],
    );
  });

  it("forgets the job's VMs when its machine is gone, also after a boot that failed: no record left, none counted running", async (t) => {
    const { store, metrics, ledger } = await setup(t);
    await ledger.record();
    await ledger.lease(AbortSignal.timeout(5_000));
    await ledger.accept();
    await ledger.provisioning();
    const dir = mkdtempSync(join(tmpdir(), "gnomon-ledger-vm-"));
    const vm = {
      id: `ledger-vm-${Math.random().toString(16).slice(2, 10)}`,
      pid: 999_999,
      sshPort: 2222,
      dir,
      overlay: join(dir, "overlay.qcow2"),
      seed: join(dir, "seed.img"),
      qmpSocket: join(dir, "qmp.sock"),
    };
    await ledger.vmSpawned(vm);
    assert.ok(await store.vms.get(vm.id), "recorded for the reaper");
    assert.equal(await metricValue(metrics, "gnomon_vms_running", { label: LABEL }), 1);
    await ledger.machineGone();
    assert.equal(await store.vms.get(vm.id), undefined, "its record is deleted");
    assert.equal(await metricValue(metrics, "gnomon_vms_running", { label: LABEL }), 0);
    await ledger.machineGone(); // once only
    assert.equal(await metricValue(metrics, "gnomon_vms_running", { label: LABEL }), 0);
    await ledger.close({ kind: "result", result: "failure", reason: "the machine could not be started" });
  });
});
