// The reporter's schedule on a clock of plain numbers: when new rows go on their own, when they wait
// for company or for the last UpdateLog to be far enough back, and that a chatty job's calls stay
// bounded.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nextReportStep, type ReportState } from "../../../src/forge/forgejo/report-schedule.js";

const timings = { reportIntervalMs: 1_000, logDelayMs: 50, logIntervalMs: 100 };
const idle: ReportState = {
  nowMs: 10_000,
  reportDueMs: 10_800,
  rowsWaitingSinceMs: undefined,
  lastLogMs: undefined,
  failing: false,
};

describe("Forgejo report schedule", () => {
  it("sends the full report when it is due, rows waiting or not", () => {
    assert.deepEqual(nextReportStep({ ...idle, nowMs: 10_800 }, timings), { t: "report" });
    assert.deepEqual(nextReportStep({ ...idle, nowMs: 10_900, rowsWaitingSinceMs: 10_000 }, timings), {
      t: "report",
    });
  });

  it("with no row waiting, waits for the full report", () => {
    assert.deepEqual(nextReportStep(idle, timings), { t: "wait", ms: 800 });
  });

  it("sends a new row on its own once it waited logDelay, long before the full report", () => {
    const s = { ...idle, rowsWaitingSinceMs: 10_000 };
    assert.deepEqual(nextReportStep(s, timings), { t: "wait", ms: 50 });
    assert.deepEqual(nextReportStep({ ...s, nowMs: 10_050 }, timings), { t: "log" });
  });

  it("keeps logInterval between two UpdateLog calls", () => {
    const s = { ...idle, rowsWaitingSinceMs: 10_000, lastLogMs: 9_980 };
    assert.deepEqual(nextReportStep({ ...s, nowMs: 10_050 }, timings), { t: "wait", ms: 30 });
    assert.deepEqual(nextReportStep({ ...s, nowMs: 10_080 }, timings), { t: "log" });
  });

  it("leaves rows to the full report while reporting fails, so failures are retried at its pace only", () => {
    assert.deepEqual(nextReportStep({ ...idle, rowsWaitingSinceMs: 9_000, failing: true }, timings), {
      t: "wait",
      ms: 800,
    });
  });

  it("leaves rows due no sooner than the full report to it", () => {
    const s = { ...idle, nowMs: 10_770, rowsWaitingSinceMs: 10_760 };
    assert.deepEqual(nextReportStep(s, timings), { t: "wait", ms: 30 });
  });

  it("makes at most one UpdateLog per logInterval for a job printing a row every millisecond, and no row waits longer than logDelay + logInterval", () => {
    let now = 0;
    let reportDueMs = 0;
    let lastLogMs: number | undefined;
    let waitingSince: number | undefined;
    let logs = 0;
    let worst = 0;
    const oldest: number[] = []; // arrival times of rows not sent yet
    for (let row = 0; now < 10_000; ) {
      while (row <= now) {
        oldest.push(row);
        waitingSince ??= row;
        row += 1;
      }
      const step = nextReportStep(
        { nowMs: now, reportDueMs, rowsWaitingSinceMs: waitingSince, lastLogMs, failing: false },
        timings,
      );
      if (step.t === "wait") {
        now += Math.min(step.ms, 1);
        continue;
      }
      if (step.t === "report") reportDueMs = now + timings.reportIntervalMs;
      else logs += 1;
      lastLogMs = now;
      worst = Math.max(worst, ...oldest.map((t) => now - t));
      oldest.length = 0;
      waitingSince = undefined;
    }
    assert.ok(logs <= 10_000 / timings.logIntervalMs, `${logs} UpdateLog calls in 10 000 ms`);
    assert.ok(logs >= 10_000 / timings.logIntervalMs - 10 - 1, `${logs}: rows go on their own between reports`);
    assert.ok(worst <= timings.logDelayMs + timings.logIntervalMs, `a row waited ${worst} ms`);
  });
});
