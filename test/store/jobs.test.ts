// Job rows on both back ends: idempotent insert, the guarded transitions agreeing with the pure
// table pair by pair, and typed refusals that name the job and both states.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Db, Queryable } from "../../src/store/db.js";
import { IllegalTransitionError, JobIdConflictError, JobNotFoundError } from "../../src/store/errors.js";
import { JOB_STATES, type JobState, nextStates } from "../../src/store/job-state.js";
import {
  assignJob,
  finishJob,
  getJob,
  insertJob,
  type Job,
  markFirstStepStarted,
  markProvisioning,
  markRunning,
  requeueJob,
} from "../../src/store/jobs.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

/** The store operation that moves a job to each state. */
const MOVE_TO: Readonly<Record<JobState, (q: Queryable, id: string) => Promise<Job>>> = {
  queued: (q, id) => requeueJob(q, id),
  assigned: (q, id) => assignJob(q, id, "orch-a"),
  provisioning: (q, id) => markProvisioning(q, id),
  running: (q, id) => markRunning(q, id),
  succeeded: (q, id) => finishJob(q, id, { result: "success", outputs: { digest: "abc" } }),
  failed: (q, id) => finishJob(q, id, { result: "failure", reason: "step 2 exited with code 1" }),
  cancelled: (q, id) => finishJob(q, id, { result: "cancelled", reason: "cancelled on the forge" }),
};

/** Shortest path from queued to `target` through the transition table. */
function pathTo(target: JobState): JobState[] {
  const prev = new Map<JobState, JobState | undefined>([["queued", undefined]]);
  const todo: JobState[] = ["queued"];
  while (todo.length > 0) {
    const s = todo.shift()!;
    for (const n of nextStates(s))
      if (!prev.has(n)) {
        prev.set(n, s);
        todo.push(n);
      }
  }
  const path: JobState[] = [];
  for (let s: JobState | undefined = target; s !== undefined && s !== "queued"; s = prev.get(s)) path.unshift(s);
  return path;
}

async function jobIn(db: Db, state: JobState): Promise<string> {
  const { job } = await insertJob(db, sampleJobRequest());
  for (const s of pathTo(state)) await MOVE_TO[s](db, job.id);
  return job.id;
}

for (const backend of BACKENDS) {
  describe(`jobs (${backend})`, () => {
    let td: TestDatabase;
    before(async () => {
      td = await createTestDatabase(backend);
    });
    after(() => td?.drop());

    it("records a JobRequest as a queued job with its source, label and times", async () => {
      const request = sampleJobRequest({
        runsOn: "omnios-r151050",
        startBy: new Date(Date.now() + 60_000).toISOString(),
      });
      const { job, created } = await insertJob(td.db, request);
      assert.equal(created, true);
      assert.equal(job.id, request.id);
      assert.equal(job.state, "queued");
      assert.equal(job.runsOn, "omnios-r151050");
      assert.equal(job.forge, "forgejo");
      assert.equal(job.instance, "https://forgejo.example");
      assert.equal(job.runner, "r-1");
      assert.deepEqual(job.sourceRef, { taskId: 7 });
      assert.equal(job.replyTo, "forgejo-r-1");
      assert.equal(job.attempts, 0);
      assert.equal(job.result, null);
      assert.equal(job.firstStepAt, null);
      assert.ok(job.queuedAt instanceof Date);
      assert.equal(job.queuedAt.toISOString(), new Date(request.queuedAt).toISOString());
      assert.equal(job.startBy?.toISOString(), new Date(request.startBy!).toISOString());
      assert.deepEqual(await getJob(td.db, request.id), job);
    });

    it("returns the existing job untouched when the same JobRequest is delivered again", async () => {
      const request = sampleJobRequest();
      await insertJob(td.db, request);
      const assigned = await assignJob(td.db, request.id, "orch-a");
      const again = await insertJob(td.db, request);
      assert.equal(again.created, false);
      assert.deepEqual(again.job, assigned);
    });

    it("treats many simultaneous deliveries of one JobRequest as one job", async () => {
      const request = sampleJobRequest();
      const results = await Promise.all(Array.from({ length: 8 }, () => insertJob(td.db, request)));
      assert.equal(results.filter((r) => r.created).length, 1);
      for (const r of results) assert.equal(r.job.id, request.id);
    });

    it("refuses a request that reuses the id of a job for another label", async () => {
      const request = sampleJobRequest();
      await insertJob(td.db, request);
      await assert.rejects(insertJob(td.db, { ...request, runsOn: "other-label" }), (err: unknown) => {
        assert.ok(err instanceof JobIdConflictError);
        assert.equal(err.jobId, request.id);
        assert.match(err.message, /other-label/);
        return true;
      });
    });

    it("walks a job from queued to succeeded, stamping each step and counting the attempt", async () => {
      const { job } = await insertJob(td.db, sampleJobRequest());
      const assigned = await assignJob(td.db, job.id, "orch-a");
      assert.equal(assigned.state, "assigned");
      assert.equal(assigned.assignedTo, "orch-a");
      assert.equal(assigned.attempts, 1);
      assert.ok(assigned.assignedAt instanceof Date);
      assert.equal((await markProvisioning(td.db, job.id)).state, "provisioning");
      const running = await markRunning(td.db, job.id);
      assert.equal(running.state, "running");
      assert.ok(running.startedAt instanceof Date);
      assert.equal(running.firstStepAt, null);
      const done = await finishJob(td.db, job.id, { result: "success", outputs: { version: "1.2.3" } });
      assert.equal(done.state, "succeeded");
      assert.equal(done.result, "success");
      assert.deepEqual(done.outputs, { version: "1.2.3" });
      assert.equal(done.failureReason, null);
      assert.ok(done.finishedAt instanceof Date);
      assert.ok(done.finishedAt >= running.startedAt!);
    });

    it("agrees with the transition table for every pair of states", async () => {
      const disagreements: string[] = [];
      for (const from of JOB_STATES)
        for (const to of JOB_STATES) {
          const id = await jobIn(td.db, from);
          const allowed = nextStates(from).includes(to);
          try {
            const job = await MOVE_TO[to](td.db, id);
            if (!allowed) disagreements.push(`${from} → ${to} was accepted`);
            else if (job.state !== to) disagreements.push(`${from} → ${to} ended in ${job.state}`);
          } catch (err) {
            if (!(err instanceof IllegalTransitionError)) throw err;
            if (allowed) disagreements.push(`${from} → ${to} was refused`);
            else if (err.current !== from || err.attempted !== to)
              disagreements.push(`${from} → ${to} refused as ${err.current} → ${err.attempted}`);
          }
          const now = (await getJob(td.db, id))!.state;
          if (now !== (allowed ? to : from)) disagreements.push(`${from} → ${to} left the job ${now}`);
        }
      assert.deepEqual(disagreements, []);
    });

    it("refuses an illegal transition with an error naming the job, its state and the attempted one", async () => {
      const id = await jobIn(td.db, "succeeded");
      await assert.rejects(markRunning(td.db, id), (err: unknown) => {
        assert.ok(err instanceof IllegalTransitionError);
        assert.equal(err.code, "store.illegal-transition");
        assert.equal(err.jobId, id);
        assert.equal(err.current, "succeeded");
        assert.equal(err.attempted, "running");
        assert.match(err.message, new RegExp(`Job ${id} is succeeded; it cannot become running`));
        assert.match(err.message, /drop it/);
        return true;
      });
    });

    it("says so when the job to change does not exist", async () => {
      const id = randomUUID();
      await assert.rejects(assignJob(td.db, id, "orch-a"), (err: unknown) => {
        assert.ok(err instanceof JobNotFoundError);
        assert.equal(err.jobId, id);
        return true;
      });
    });

    it("records the first step once, only while the job runs", async () => {
      const id = await jobIn(td.db, "provisioning");
      await assert.rejects(markFirstStepStarted(td.db, id), IllegalTransitionError);
      await markRunning(td.db, id);
      const first = await markFirstStepStarted(td.db, id);
      assert.ok(first.firstStepAt instanceof Date);
      const second = await markFirstStepStarted(td.db, id);
      assert.equal(second.firstStepAt?.getTime(), first.firstStepAt.getTime());
    });

    it("requeues an assigned job for another orchestrator, which then counts a second attempt", async () => {
      const id = await jobIn(td.db, "provisioning");
      const queued = await requeueJob(td.db, id);
      assert.equal(queued.state, "queued");
      assert.equal(queued.assignedTo, null);
      const again = await assignJob(td.db, id, "orch-b");
      assert.equal(again.attempts, 2);
      assert.equal(again.assignedTo, "orch-b");
    });

    it("keeps the failure reason of a failed job", async () => {
      const id = await jobIn(td.db, "running");
      const failed = await finishJob(td.db, id, { result: "failure", reason: "the VM did not boot within 300 s" });
      assert.equal(failed.state, "failed");
      assert.equal(failed.result, "failure");
      assert.equal(failed.failureReason, "the VM did not boot within 300 s");
    });

    it("lets exactly one of several simultaneous finishes of a job win", async () => {
      const others = await Promise.all([td.open(), td.open()]);
      for (let round = 0; round < 20; round++) {
        const id = await jobIn(td.db, "running");
        const outcomes = await Promise.allSettled([
          finishJob(td.db, id, { result: "success" }),
          finishJob(others[0]!, id, { result: "failure", reason: "lease lost" }),
          finishJob(others[1]!, id, { result: "cancelled", reason: "cancelled" }),
        ]);
        const won = outcomes.filter((o) => o.status === "fulfilled");
        assert.equal(won.length, 1, `round ${round}`);
        for (const o of outcomes)
          if (o.status === "rejected") assert.ok(o.reason instanceof IllegalTransitionError, String(o.reason));
      }
      await Promise.all(others.map((d) => d.close()));
    });
  });
}
