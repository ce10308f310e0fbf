// The orchestrator's additions on both back ends: the recorded event seq only grows, cancellation
// requests are kept for jobs not yet recorded, and VM ids are the VM layer's short hex names.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { getCancellation, requestCancellation } from "../../src/store/cancellations.js";
import { getJob, insertJob, recordEventSeq } from "../../src/store/jobs.js";
import { getVm, recordVm } from "../../src/store/vms.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

for (const backend of BACKENDS) {
  describe(`orchestrator tables (${backend})`, () => {
    let td: TestDatabase;
    before(async () => {
      td = await createTestDatabase(backend);
    });
    after(() => td?.drop());

    it("records a job's next event seq and never lets it go back", async () => {
      const { job } = await insertJob(td.db, sampleJobRequest());
      assert.equal(job.eventSeq, 0);
      assert.equal(await recordEventSeq(td.db, job.id, 12), true);
      await recordEventSeq(td.db, job.id, 7);
      assert.equal((await getJob(td.db, job.id))?.eventSeq, 12);
      assert.equal(await recordEventSeq(td.db, randomUUID(), 3), false);
    });

    it("keeps a cancellation for a job no orchestrator has recorded yet, first reason first", async () => {
      const id = randomUUID();
      assert.equal(await getCancellation(td.db, id), undefined);
      await requestCancellation(td.db, id, "cancelled on Forgejo");
      await requestCancellation(td.db, id, "a second broadcast");
      const c = await getCancellation(td.db, id);
      assert.equal(c?.reason, "cancelled on Forgejo");
      assert.ok(c?.requestedAt instanceof Date);
    });

    it("records a VM under the VM layer's short hex id", async () => {
      const { job } = await insertJob(td.db, sampleJobRequest());
      await recordVm(td.db, {
        id: "babe7208a1e0",
        jobId: job.id,
        owner: "o",
        host: "h",
        pid: 4242,
        overlayPath: "/x/overlay.qcow2",
      });
      assert.equal((await getVm(td.db, "babe7208a1e0"))?.pid, 4242);
    });
  });
}
