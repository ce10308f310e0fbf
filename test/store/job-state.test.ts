// The job state machine as a table: every (from, to) pair, the reaper's decision, and agreement
// with the states the metrics know.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  afterLostOwner,
  canTransition,
  isTerminal,
  JOB_STATES,
  type JobState,
  nextStates,
  sourcesOf,
  stateForResult,
} from "../../src/store/job-state.js";

/** The design's transitions, written out independently of the implementation. */
const ALLOWED: ReadonlySet<string> = new Set([
  "queued→assigned",
  "queued→cancelled",
  "queued→failed",
  "assigned→provisioning",
  "assigned→queued",
  "assigned→cancelled",
  "assigned→failed",
  "provisioning→running",
  "provisioning→queued",
  "provisioning→cancelled",
  "provisioning→failed",
  "running→succeeded",
  "running→failed",
  "running→cancelled",
]);

describe("job state machine", () => {
  it("allows exactly the transitions of the design and no other pair of states", () => {
    for (const from of JOB_STATES)
      for (const to of JOB_STATES)
        assert.equal(canTransition(from, to), ALLOWED.has(`${from}→${to}`), `${from} → ${to}`);
  });

  it("never lets an ended job change again", () => {
    const ended: JobState[] = ["succeeded", "failed", "cancelled"];
    for (const s of JOB_STATES) assert.equal(isTerminal(s), ended.includes(s), s);
    for (const s of ended) assert.deepEqual(nextStates(s), []);
  });

  it("gives each state's guard as exactly the states that may precede it", () => {
    for (const to of JOB_STATES)
      assert.deepEqual(
        [...sourcesOf(to)].sort(),
        JOB_STATES.filter((from) => ALLOWED.has(`${from}→${to}`)).sort(),
        `guard of ${to}`,
      );
  });

  it("maps each contract result to its terminal state", () => {
    assert.equal(stateForResult("success"), "succeeded");
    assert.equal(stateForResult("failure"), "failed");
    assert.equal(stateForResult("cancelled"), "cancelled");
  });

  it("requeues a lost job whose steps never started, fails one whose steps may have run, leaves the rest", () => {
    const cases: [JobState, boolean, ReturnType<typeof afterLostOwner>][] = [
      ["queued", false, "none"],
      ["assigned", false, "requeue"],
      ["provisioning", false, "requeue"],
      ["running", false, "fail"],
      ["running", true, "fail"],
      ["succeeded", true, "none"],
      ["failed", false, "none"],
      ["cancelled", false, "none"],
    ];
    for (const [state, started, action] of cases)
      assert.equal(afterLostOwner(state, started), action, `${state}, first step started: ${started}`);
  });

  it("every requeue it decides on is a transition the table allows", () => {
    for (const s of JOB_STATES) if (afterLostOwner(s, false) === "requeue") assert.ok(canTransition(s, "queued"), s);
  });
});
