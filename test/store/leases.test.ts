// Leases on both back ends: one winner among truly concurrent owners (separate connections, many
// rounds), renewal only by the owner, expiry listed and taken over, all on the database's clock.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Db } from "../../src/store/db.js";
import { JobNotFoundError, LeaseLostError } from "../../src/store/errors.js";
import { assignJob, insertJob, markFirstStepStarted, markProvisioning, markRunning } from "../../src/store/jobs.js";
import { acquireLease, getLease, listExpiredLeases, releaseLease, renewLease } from "../../src/store/leases.js";
import { BACKENDS, createTestDatabase, expireLease, type TestDatabase } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

const TTL_MS = 30_000;
const RACERS = 8;
const ROUNDS = 100;

async function newJob(db: Db): Promise<string> {
  return (await insertJob(db, sampleJobRequest())).job.id;
}

for (const backend of BACKENDS) {
  describe(`leases (${backend})`, () => {
    let td: TestDatabase;
    /** One handle per racing orchestrator: separate pools, so the race is between connections. */
    let racers: Db[];
    before(async () => {
      td = await createTestDatabase(backend);
      racers = await Promise.all(Array.from({ length: RACERS }, () => td.open({ poolMax: 1 })));
    });
    after(() => td?.drop());

    it("gives a job's lease to exactly one of several orchestrators racing for it, every round", async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const jobId = await newJob(td.db);
        const results = await Promise.all(racers.map((db, i) => acquireLease(db, jobId, `orch-${i}`, TTL_MS)));
        const winners = results.flatMap((r, i) => (r.acquired ? [i] : []));
        assert.equal(winners.length, 1, `round ${round}: winners ${winners.join(", ")}`);
        const winner = `orch-${winners[0]}`;
        for (const r of results)
          if (!r.acquired) assert.equal(r.holder?.owner, winner, `round ${round}: losers see the winner`);
        assert.equal((await getLease(td.db, jobId))?.owner, winner);
      }
    });

    it("gives an expired lease to exactly one of several orchestrators taking it over, every round", async () => {
      for (let round = 0; round < ROUNDS / 2; round++) {
        const jobId = await newJob(td.db);
        assert.ok((await acquireLease(td.db, jobId, "orch-dead", TTL_MS)).acquired);
        await expireLease(td.db, jobId);
        const results = await Promise.all(racers.map((db, i) => acquireLease(db, jobId, `orch-${i}`, TTL_MS)));
        const winners = results.filter((r) => r.acquired);
        assert.equal(winners.length, 1, `round ${round}`);
        const { rows } = await td.db.query<{ owner: string; fullTerm: boolean }>(
          `select owner, expires_at > now() + interval '20 seconds' as "fullTerm" from leases where job_id = $1`,
          [jobId],
        );
        assert.notEqual(rows[0]?.owner, "orch-dead");
        assert.equal(rows[0]?.fullTerm, true, "the new owner has a full term");
      }
    });

    it("refuses a live lease to another orchestrator and names the holder", async () => {
      const jobId = await newJob(td.db);
      await acquireLease(td.db, jobId, "orch-a", TTL_MS);
      const second = await acquireLease(td.db, jobId, "orch-b", TTL_MS);
      assert.equal(second.acquired, false);
      assert.equal(second.acquired ? undefined : second.holder?.owner, "orch-a");
    });

    it("lets the owner acquire its own lease again, as a redelivery does", async () => {
      const jobId = await newJob(td.db);
      const first = await acquireLease(td.db, jobId, "orch-a", TTL_MS);
      const again = await acquireLease(td.db, jobId, "orch-a", TTL_MS);
      assert.ok(first.acquired && again.acquired);
      assert.equal(again.lease.owner, "orch-a");
      assert.ok(again.lease.expiresAt >= first.lease.expiresAt);
    });

    it("renews for the owner from the database's clock", async () => {
      const jobId = await newJob(td.db);
      const got = await acquireLease(td.db, jobId, "orch-a", 1_000);
      assert.ok(got.acquired);
      const renewed = await renewLease(td.db, jobId, "orch-a", 60_000);
      assert.equal(renewed.owner, "orch-a");
      assert.ok(renewed.expiresAt.getTime() >= got.lease.expiresAt.getTime() + 58_000);
      assert.ok(renewed.renewedAt >= got.lease.renewedAt);
      const { rows } = await td.db.query<{ ok: boolean }>(
        "select expires_at between now() + interval '59 seconds' and now() + interval '61 seconds' as ok from leases where job_id = $1",
        [jobId],
      );
      assert.equal(rows[0]?.ok, true);
    });

    it("refuses renewal by an orchestrator that does not own the lease, and leaves the lease alone", async () => {
      const jobId = await newJob(td.db);
      const got = await acquireLease(td.db, jobId, "orch-a", TTL_MS);
      assert.ok(got.acquired);
      await assert.rejects(renewLease(td.db, jobId, "orch-b", TTL_MS), (err: unknown) => {
        assert.ok(err instanceof LeaseLostError);
        assert.equal(err.code, "store.lease-lost");
        assert.equal(err.jobId, jobId);
        assert.equal(err.owner, "orch-b");
        assert.equal(err.holder, "orch-a");
        assert.match(err.message, /Stop working on this job/);
        return true;
      });
      assert.deepEqual(await getLease(td.db, jobId), got.lease);
    });

    it("tells the old owner its lease is lost once another orchestrator took it over", async () => {
      const jobId = await newJob(td.db);
      await acquireLease(td.db, jobId, "orch-a", TTL_MS);
      await expireLease(td.db, jobId);
      assert.ok((await acquireLease(td.db, jobId, "orch-b", TTL_MS)).acquired);
      await assert.rejects(renewLease(td.db, jobId, "orch-a", TTL_MS), (err: unknown) => {
        assert.ok(err instanceof LeaseLostError);
        assert.equal(err.holder, "orch-b");
        return true;
      });
    });

    it("lists expired leases with their job's state and first-step flag, and no live ones", async () => {
      const live = await newJob(td.db);
      const lostEarly = await newJob(td.db);
      const lostLate = await newJob(td.db);
      for (const id of [live, lostEarly, lostLate]) {
        await assignJob(td.db, id, "orch-a");
        await acquireLease(td.db, id, "orch-a", TTL_MS);
      }
      await markProvisioning(td.db, lostEarly);
      await markProvisioning(td.db, lostLate);
      await markRunning(td.db, lostLate);
      await markFirstStepStarted(td.db, lostLate);
      await expireLease(td.db, lostEarly);
      await expireLease(td.db, lostLate);

      const expired = await listExpiredLeases(td.db, 1_000);
      const ours = new Map(expired.map((l) => [l.jobId, l]));
      assert.equal(ours.has(live), false);
      assert.deepEqual(
        [ours.get(lostEarly)?.jobState, ours.get(lostEarly)?.firstStepStarted, ours.get(lostEarly)?.owner],
        ["provisioning", false, "orch-a"],
      );
      assert.deepEqual([ours.get(lostLate)?.jobState, ours.get(lostLate)?.firstStepStarted], ["running", true]);
      const { rows } = await td.db.query<{ live: number }>(
        "select count(*)::int as live from leases where job_id = any($1::uuid[]) and expires_at > now()",
        [expired.map((l) => l.jobId)],
      );
      assert.equal(rows[0]?.live, 0, "only expired leases are listed");
    });

    it("frees a released lease for anyone, and ignores a release by someone who does not hold it", async () => {
      const jobId = await newJob(td.db);
      await acquireLease(td.db, jobId, "orch-a", TTL_MS);
      assert.equal(await releaseLease(td.db, jobId, "orch-b"), false);
      assert.equal((await getLease(td.db, jobId))?.owner, "orch-a");
      assert.equal(await releaseLease(td.db, jobId, "orch-a"), true);
      assert.equal(await getLease(td.db, jobId), undefined);
      await assert.rejects(renewLease(td.db, jobId, "orch-a", TTL_MS), LeaseLostError);
      assert.ok((await acquireLease(td.db, jobId, "orch-b", TTL_MS)).acquired);
    });

    it("refuses a lease on a job the store does not know", async () => {
      const jobId = randomUUID();
      await assert.rejects(acquireLease(td.db, jobId, "orch-a", TTL_MS), (err: unknown) => {
        assert.ok(err instanceof JobNotFoundError);
        assert.equal(err.jobId, jobId);
        return true;
      });
    });

    it("refuses a term that is not a whole number of milliseconds ≥ 1", async () => {
      const jobId = await newJob(td.db);
      await assert.rejects(acquireLease(td.db, jobId, "orch-a", 0), RangeError);
      await assert.rejects(renewLease(td.db, jobId, "orch-a", 1.5), RangeError);
    });
  });
}
