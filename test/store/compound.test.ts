// The job ledger's compound statements on both back ends: a first delivery recorded and leased in
// one statement (and a redelivery left alone), and a job's end recorded with its seq and its lease
// released in one, all or nothing.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { requestCancellation } from "../../src/store/cancellations.js";
import { IllegalTransitionError } from "../../src/store/errors.js";
import {
  assignJob,
  finishJob,
  finishJobReleasing,
  getJob,
  insertJob,
  insertJobLeased,
  markProvisioning,
  markRunning,
} from "../../src/store/jobs.js";
import { acquireLease, getLease } from "../../src/store/leases.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

const TTL_MS = 30_000;

for (const backend of BACKENDS) {
  describe(`compound job statements (${backend})`, () => {
    let td: TestDatabase;
    before(async () => {
      td = await createTestDatabase(backend);
    });
    after(() => td?.drop());

    it("records a first delivery as queued and takes its lease for the orchestrator, in one statement", async () => {
      const request = sampleJobRequest();
      const taken = await insertJobLeased(td.db, request, "orch-a", TTL_MS);
      assert.ok(taken);
      assert.equal(taken.job.id, request.id);
      assert.equal(taken.job.state, "queued");
      assert.equal(taken.job.replyTo, request.replyTo);
      assert.equal(taken.cancelReason, null);
      assert.deepEqual(await getJob(td.db, request.id), taken.job);
      const lease = await getLease(td.db, request.id);
      assert.equal(lease?.owner, "orch-a");
      assert.ok(lease && lease.expiresAt.getTime() > Date.now() + TTL_MS / 2, "the lease runs for its TTL");
    });

    it("says the reason of a Cancel recorded while the job waited in the queue", async () => {
      const request = sampleJobRequest();
      await requestCancellation(td.db, request.id, "cancelled on the forge while queued");
      const taken = await insertJobLeased(td.db, request, "orch-a", TTL_MS);
      assert.equal(taken?.cancelReason, "cancelled on the forge while queued");
    });

    it("leaves a redelivered job, its state and its lease as they are", async () => {
      const request = sampleJobRequest();
      await insertJob(td.db, request);
      await acquireLease(td.db, request.id, "orch-a", TTL_MS);
      await assignJob(td.db, request.id, "orch-a");
      assert.equal(await insertJobLeased(td.db, request, "orch-b", TTL_MS), undefined);
      assert.equal((await getJob(td.db, request.id))?.state, "assigned");
      assert.equal((await getLease(td.db, request.id))?.owner, "orch-a");

      const unleased = sampleJobRequest();
      await insertJob(td.db, unleased);
      assert.equal(await insertJobLeased(td.db, unleased, "orch-b", TTL_MS), undefined);
      assert.equal(await getLease(td.db, unleased.id), undefined, "a recorded job's lease is not taken here");
    });

    it("gives a job raced by two deliveries to exactly one of them", async () => {
      const other = await td.open({ poolMax: 1 });
      try {
        for (let round = 0; round < 20; round++) {
          const request = sampleJobRequest();
          const [a, b] = await Promise.all([
            insertJobLeased(td.db, request, "orch-a", TTL_MS),
            insertJobLeased(other, request, "orch-b", TTL_MS),
          ]);
          assert.equal([a, b].filter((t) => t !== undefined).length, 1, `round ${round}`);
          assert.equal((await getLease(td.db, request.id))?.owner, a ? "orch-a" : "orch-b");
        }
      } finally {
        await other.close();
      }
    });

    it("records a job's result and seq and releases its owner's lease, in one statement", async () => {
      const request = sampleJobRequest();
      await insertJobLeased(td.db, request, "orch-a", TTL_MS);
      await assignJob(td.db, request.id, "orch-a");
      await markProvisioning(td.db, request.id);
      await markRunning(td.db, request.id);
      const { job, leaseReleased } = await finishJobReleasing(
        td.db,
        request.id,
        { result: "success", outputs: { digest: "abc" } },
        "orch-a",
        7,
      );
      assert.equal(job.state, "succeeded");
      assert.deepEqual(job.outputs, { digest: "abc" });
      assert.equal(job.eventSeq, 7);
      assert.equal(leaseReleased, true);
      assert.equal(await getLease(td.db, request.id), undefined);
    });

    it("keeps a greater recorded seq and leaves a lease that another orchestrator took over", async () => {
      const request = sampleJobRequest();
      await insertJobLeased(td.db, request, "orch-b", TTL_MS);
      await td.db.query("update jobs set event_seq = 100010 where id = $1", [request.id]);
      const { job, leaseReleased } = await finishJobReleasing(
        td.db,
        request.id,
        { result: "failure", reason: "lost" },
        "orch-a",
        3,
      );
      assert.equal(job.state, "failed");
      assert.equal(job.eventSeq, 100010);
      assert.equal(leaseReleased, false);
      assert.equal((await getLease(td.db, request.id))?.owner, "orch-b");
    });

    it("changes nothing when the job had ended: the result, the seq and the lease stay", async () => {
      const request = sampleJobRequest();
      await insertJobLeased(td.db, request, "orch-a", TTL_MS);
      await finishJob(td.db, request.id, { result: "cancelled", reason: "cancelled on the forge" });
      await assert.rejects(
        finishJobReleasing(td.db, request.id, { result: "failure", reason: "late" }, "orch-a", 9),
        IllegalTransitionError,
      );
      const job = await getJob(td.db, request.id);
      assert.equal(job?.result, "cancelled");
      assert.equal(job?.eventSeq, 0);
      assert.equal((await getLease(td.db, request.id))?.owner, "orch-a");
    });
  });
}
