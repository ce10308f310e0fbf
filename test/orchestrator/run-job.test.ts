// One job's phases through a real orchestrator (in-process bus, PostgreSQL, QEMU): paths that end
// inside a phase still go through the one exit, so the machine is torn down and forgotten, and the
// job is ended with its reason, whichever phase it ended in.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { MemoryBus } from "../../src/queue/memory.js";
import type { ImageSpec } from "../../src/vm/catalog.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { qemuPids } from "../support/qemu-processes.js";
import { testImage } from "../support/test-image.js";

describe("running one job (in-process bus, PostgreSQL, QEMU)", () => {
  let td: TestDatabase;
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  it("fails a job whose machine does not boot with QEMU's reason, and leaves no VM record or running VM counted", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(5_000)));
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const base = await testImage();
    // QEMU starts (the VM is recorded for the reaper), then exits: it cannot load this kernel.
    const broken = { ...base, boot: { ...base.boot, kernel: "/nonexistent/vmlinuz" } } as ImageSpec;
    const { orchestrator, store, metrics } = await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: ["test"],
      provisioner: (vms) => ({ ...vms, resolve: async (label) => ({ kind: "vm", label, image: broken }) }),
    });
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo no\n",
      {
        runsOn: "test",
        replyTo,
      },
    );
    await bus.publishJob(req);
    const got = await events.finished(req.id, 120_000);
    const fin = resultOf(got);
    assert.equal(fin?.result, "failure");
    assert.match(fin?.reason ?? "", /^the machine for runs-on "test" could not be started: .*nonexistent\/vmlinuz/);
    assert.ok(
      got.some((e) => e.kind === "provisioning" && e.phase === "booting"),
      "QEMU was started before it failed",
    );

    const rows = await store.vms.listOnHost(orchestrator.host);
    assert.deepEqual(
      rows.filter((v) => v.jobId === req.id).map((v) => v.id),
      [],
      "the failed VM's record is gone with it: the reaper has nothing to 'reap'",
    );
    const text = await metrics.registry.metrics();
    assert.match(text, /gnomon_vms_running\{label="test"\} 0/);
    assert.match(text, /gnomon_jobs_finished_total\{result="failure",label="test"\} 1/);
    assert.equal((await store.jobs.get(req.id))?.state, "failed");
    for (const v of rows) assert.deepEqual(qemuPids(v.id), []);
  });
});
