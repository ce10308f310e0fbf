// The e2e tests' EventCollector sees what a forge runner would get wrong: it keeps arrival order,
// drops repeats as the runners do, and fails every wait on a reordered event or one after the end.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobEvent } from "../../src/contract/job-event.js";
import { EventCollector } from "../support/orchestrators.js";

const jobId = "00000000-0000-4000-8000-000000000001";
const log = (seq: number, text: string): JobEvent => ({
  v: 1,
  jobId,
  seq,
  t: 0,
  kind: "log",
  step: 0,
  stage: "main",
  lines: [{ text, t: 0 }],
});
const fin = (seq: number, result: "success" | "failure" = "success"): JobEvent => ({
  v: 1,
  jobId,
  seq,
  t: 0,
  kind: "job-finished",
  result,
  outputs: {},
});

describe("the e2e event collector", () => {
  it("keeps arrival order and drops a redelivered seq", () => {
    const c = new EventCollector();
    for (const e of [log(0, "a"), log(1, "b"), log(1, "b"), log(2, "c"), fin(3)]) c.add(e);
    assert.deepEqual(
      c.events(jobId).map((e) => e.seq),
      [0, 1, 2, 3],
    );
  });

  it("fails on a new seq that arrives after a higher one", async () => {
    const c = new EventCollector();
    for (const e of [log(0, "a"), log(2, "c"), log(1, "b"), fin(3)]) c.add(e);
    assert.throws(() => c.events(jobId), /log seq 1 arrived after seq 2/);
    await assert.rejects(c.finished(jobId, 1_000), /out of order/);
  });

  it("fails on an event after job-finished, but not on the same result repeated", () => {
    const again = new EventCollector();
    for (const e of [log(0, "a"), fin(1), fin(100_001)]) again.add(e);
    assert.equal(again.events(jobId).length, 3);
    const late = new EventCollector();
    for (const e of [log(0, "a"), fin(1), log(2, "lost")]) late.add(e);
    assert.throws(() => late.events(jobId), /log seq 2 arrived after job-finished/);
    const other = new EventCollector();
    for (const e of [fin(0), fin(1, "failure")]) other.add(e);
    assert.throws(() => other.events(jobId), /job-finished seq 1 arrived after job-finished/);
  });
});
