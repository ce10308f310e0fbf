// Events of a job no runner process holds any more: the job is stopped, once. A job the runner
// ended on the forge without its result is stopped again when it turns out to run still.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import type { Cancel } from "../../src/contract/cancel.js";
import type { JobEvent } from "../../src/contract/job-event.js";
import { ORPHAN_REASON, OrphanJobs } from "../../src/forge/orphan-jobs.js";

const ev = (jobId: string, seq: number, kind: "log" | "job-finished" = "log"): JobEvent =>
  (kind === "log"
    ? { v: 1, jobId, seq, t: 0, kind, step: 0, stage: "main", lines: [{ t: 0, text: "x" }] }
    : { v: 1, jobId, seq, t: 0, kind, result: "success", outputs: {} }) as JobEvent;

function orphans(now: () => number = Date.now) {
  const sent: Cancel[] = [];
  const o = new OrphanJobs({ publishCancel: async (c) => void sent.push(c) }, pino({ level: "silent" }), now);
  return { o, sent };
}

describe("orphaned jobs", () => {
  it("sends one Cancel per job however many of its events arrive", async () => {
    const { o, sent } = orphans();
    for (let i = 0; i < 5; i++) o.onEvent(ev("a", i));
    o.onEvent(ev("b", 0));
    await Promise.resolve();
    assert.deepEqual(
      sent.map((c) => [c.jobId, c.reason]),
      [
        ["a", ORPHAN_REASON],
        ["b", ORPHAN_REASON],
      ],
    );
  });

  it("leaves alone a job that has finished, or that this process saw to its end", async () => {
    const { o, sent } = orphans();
    o.onEvent(ev("done", 9, "job-finished"));
    o.ended("mine");
    o.onEvent(ev("mine", 3));
    await Promise.resolve();
    assert.deepEqual(sent, []);
  });

  it("asks again to stop a job it ended without the job's result when the job turns out to run still, at most every 30 s", async () => {
    let now = 1_000_000;
    const { o, sent } = orphans(() => now);
    o.ended("silent", "the orchestrator stopped reporting");
    o.onEvent(ev("silent", 40)); // it is back: its buffered events arrive
    o.onEvent(ev("silent", 41));
    now += 29_999;
    o.onEvent(ev("silent", 42));
    now += 1;
    o.onEvent(ev("silent", 43));
    o.onEvent(ev("silent", 44, "job-finished")); // it stopped at last
    now += 60_000;
    o.onEvent(ev("silent", 45));
    await Promise.resolve();
    assert.deepEqual(
      sent.map((c) => [c.jobId, c.reason]),
      [
        ["silent", "the orchestrator stopped reporting"],
        ["silent", "the orchestrator stopped reporting"],
      ],
    );
  });
});
