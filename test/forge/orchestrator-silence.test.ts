// When a forge runner calls a job's orchestrator silent: only for a job an orchestrator accepted
// and announced heartbeats for, after the silence limit (never under three heartbeats), counting
// from the last event heard and not while the runner itself could hear nothing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobEvent, JobEventBody } from "../../src/contract/job-event.js";
import { OrchestratorSilence, silenceReason } from "../../src/forge/orchestrator-silence.js";

const JOB = "00000000-0000-4000-8000-000000000001";
let seq = 0;
const ev = (body: JobEventBody): JobEvent => ({ v: 1, jobId: JOB, seq: seq++, t: 0, ...body }) as JobEvent;
const accepted = (heartbeatMs?: number) =>
  ev({ kind: "accepted", orchestrator: "host-a-1", ...(heartbeatMs ? { heartbeatMs } : {}) });

describe("orchestrator silence", () => {
  it("never calls a job silent that no orchestrator accepted yet, however long it waits", () => {
    const s = new OrchestratorSilence(1_000);
    assert.equal(s.check(10_000_000), undefined);
    s.heard(ev({ kind: "provisioning", phase: "waiting-for-capacity", label: "x" }), 0);
    assert.equal(s.check(10_000_000), undefined);
  });

  it("calls silent an accepted job that heard nothing for the limit, naming its orchestrator and when it was last heard", () => {
    const s = new OrchestratorSilence(5_000);
    s.heard(accepted(1_000), 1_000);
    s.heard(ev({ kind: "heartbeat" }), 2_000);
    assert.equal(s.check(6_999), undefined);
    const silence = s.check(7_000);
    assert.deepEqual(silence, { orchestrator: "host-a-1", lastHeardMs: 2_000, silentForMs: 5_000, heartbeatMs: 1_000 });
    assert.match(
      silenceReason(silence),
      /^The orchestrator host-a-1 stopped reporting on this job: nothing was heard from it since 1970-01-01T00:00:02\.000Z \(5 s, while it sends a heartbeat every 1 s\)\..*Re-run the job\.$/,
    );
  });

  it("leaves alone the jobs of an orchestrator that announces no heartbeats (an older version)", () => {
    const s = new OrchestratorSilence(1_000);
    s.heard(accepted(), 0);
    assert.equal(s.watching, false);
    assert.equal(s.check(10_000_000), undefined);
  });

  it("waits at least three heartbeat intervals of an orchestrator that beats slower than the limit allows", () => {
    const s = new OrchestratorSilence(10_000);
    s.heard(accepted(20_000), 0);
    assert.equal(s.limitMs, 60_000);
    assert.equal(s.check(59_999), undefined);
    assert.ok(s.check(60_000));
  });

  it("stops watching a finished job, and a job taken over by an orchestrator without heartbeats", () => {
    const done = new OrchestratorSilence(1_000);
    done.heard(accepted(100), 0);
    done.heard(ev({ kind: "job-finished", result: "success", outputs: {} }), 10);
    assert.equal(done.check(1_000_000), undefined);

    const taken = new OrchestratorSilence(1_000);
    taken.heard(accepted(100), 0);
    taken.heard(ev({ kind: "accepted", orchestrator: "old-host" }), 500);
    assert.equal(taken.check(1_000_000), undefined);
  });

  it("does not count the time the runner itself could hear nothing (its queue connection was down)", () => {
    const s = new OrchestratorSilence(5_000);
    s.heard(accepted(1_000), 0);
    for (let t = 1_000; t <= 60_000; t += 1_000) s.deaf(t);
    assert.equal(s.check(64_999), undefined, "a full limit from when it could hear again");
    assert.equal(s.check(65_000)?.lastHeardMs, 60_000);
  });
});
