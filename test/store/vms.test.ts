// VM records on both back ends: they round-trip field for field, and the reaper's query finds
// exactly the VMs on its host whose owner no longer holds a live lease.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Db } from "../../src/store/db.js";
import { insertJob } from "../../src/store/jobs.js";
import { acquireLease, releaseLease } from "../../src/store/leases.js";
import {
  assignPooledVm,
  deleteVm,
  getVm,
  listOrphanVms,
  listVmsOnHost,
  type NewVm,
  recordPooledVm,
  recordVm,
  renewPooledVms,
  setVmPid,
} from "../../src/store/vms.js";
import { BACKENDS, createTestDatabase, expireLease, type TestDatabase } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

const TTL_MS = 30_000;

/** A job leased to `owner` and a VM of it on `host`. */
async function leasedVm(db: Db, owner: string, host: string): Promise<NewVm> {
  const { job } = await insertJob(db, sampleJobRequest());
  assert.ok((await acquireLease(db, job.id, owner, TTL_MS)).acquired);
  const id = randomUUID();
  const vm: NewVm = {
    id,
    jobId: job.id,
    owner,
    host,
    overlayPath: `/var/lib/gnomon/vms/${id}/overlay.qcow2`,
    seedPath: `/var/lib/gnomon/vms/${id}/seed.img`,
    sshPort: 40_000 + Math.floor(Math.random() * 20_000),
    qmpSocket: `/var/lib/gnomon/vms/${id}/qmp.sock`,
  };
  await recordVm(db, vm);
  return vm;
}

for (const backend of BACKENDS) {
  describe(`vms (${backend})`, () => {
    let td: TestDatabase;
    before(async () => {
      td = await createTestDatabase(backend);
    });
    after(() => td?.drop());

    it("reads a recorded VM back field for field, and its pid once spawned", async () => {
      const vm = await leasedVm(td.db, "orch-a", "host-roundtrip");
      const stored = await getVm(td.db, vm.id);
      assert.ok(stored);
      assert.ok(stored.createdAt instanceof Date);
      const { createdAt: _, ...fields } = stored;
      assert.deepEqual(fields, { ...vm, pid: null });
      assert.equal(await setVmPid(td.db, vm.id, 4242), true);
      assert.equal((await getVm(td.db, vm.id))?.pid, 4242);
      assert.deepEqual(
        (await listVmsOnHost(td.db, "host-roundtrip")).map((v) => v.id),
        [vm.id],
      );
    });

    it("forgets a torn-down VM, and says when there was nothing to forget", async () => {
      const vm = await leasedVm(td.db, "orch-a", "host-delete");
      assert.equal(await deleteVm(td.db, vm.id), true);
      assert.equal(await getVm(td.db, vm.id), undefined);
      assert.equal(await deleteVm(td.db, vm.id), false);
      assert.equal(await setVmPid(td.db, vm.id, 1), false);
    });

    it("finds the VMs on its host whose owner lost the lease, and none that are still owned or elsewhere", async () => {
      const host = `host-${randomUUID().slice(0, 8)}`;
      const owned = await leasedVm(td.db, "orch-live", host);
      const expired = await leasedVm(td.db, "orch-dead", host);
      await expireLease(td.db, expired.jobId);
      const released = await leasedVm(td.db, "orch-done", host);
      await releaseLease(td.db, released.jobId, "orch-done");
      const takenOver = await leasedVm(td.db, "orch-slow", host);
      await expireLease(td.db, takenOver.jobId);
      assert.ok((await acquireLease(td.db, takenOver.jobId, "orch-new", TTL_MS)).acquired);
      const elsewhere = await leasedVm(td.db, "orch-dead", "another-host");
      await expireLease(td.db, elsewhere.jobId);

      const orphans = (await listOrphanVms(td.db, host)).map((v) => v.id).sort();
      assert.deepEqual(orphans, [expired.id, released.id, takenOver.id].sort());
      assert.equal(orphans.includes(owned.id), false);
      assert.deepEqual(
        (await listOrphanVms(td.db, "another-host")).map((v) => v.id),
        [elsewhere.id],
      );
    });

    it("stops listing an orphan once the reaper has deleted it", async () => {
      const host = `host-${randomUUID().slice(0, 8)}`;
      const vm = await leasedVm(td.db, "orch-dead", host);
      await expireLease(td.db, vm.jobId);
      assert.deepEqual(
        (await listOrphanVms(td.db, host)).map((v) => v.id),
        [vm.id],
      );
      await deleteVm(td.db, vm.id);
      assert.deepEqual(await listOrphanVms(td.db, host), []);
    });

    it("a pooled VM (no job yet) is an orphan only once its pool stopped renewing it; given a job, its lease decides", async () => {
      const host = `host-${randomUUID().slice(0, 8)}`;
      const pooled = (id: string) => ({
        id,
        owner: "orch-pool",
        host,
        pid: 4242,
        overlayPath: `/var/lib/gnomon/vms/${id}/disk.qcow2`,
        seedPath: `/var/lib/gnomon/vms/${id}/seed.iso`,
        sshPort: 40_123,
        qmpSocket: `/var/lib/gnomon/vms/${id}/qmp.sock`,
      });
      const live = await recordPooledVm(td.db, pooled(randomUUID()), TTL_MS);
      assert.equal(live.jobId, "", "a pooled VM has no job");
      const lapsed = await recordPooledVm(td.db, pooled(randomUUID()), 1);
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        (await listOrphanVms(td.db, host)).map((v) => v.id),
        [lapsed.id],
        "only the one whose expiry passed",
      );
      // Renewing moves only the VMs named, of that owner.
      assert.equal(await renewPooledVms(td.db, "orch-pool", [lapsed.id], TTL_MS), 1);
      assert.equal(await renewPooledVms(td.db, "orch-other", [live.id], TTL_MS), 0);
      assert.deepEqual(await listOrphanVms(td.db, host), []);

      // Handed to a job: the job's lease decides from then on, the pool's expiry no longer.
      const { job } = await insertJob(td.db, sampleJobRequest());
      assert.ok((await acquireLease(td.db, job.id, "orch-pool", TTL_MS)).acquired);
      assert.equal(await assignPooledVm(td.db, live.id, job.id), true);
      assert.equal(await assignPooledVm(td.db, live.id, job.id), false, "a VM is handed out once");
      assert.equal((await getVm(td.db, live.id))?.jobId, job.id);
      assert.equal(await renewPooledVms(td.db, "orch-pool", [live.id], TTL_MS), 0, "no longer the pool's");
      assert.deepEqual(await listOrphanVms(td.db, host), []);
      await expireLease(td.db, job.id);
      assert.deepEqual(
        (await listOrphanVms(td.db, host)).map((v) => v.id),
        [live.id],
      );
    });
  });
}
