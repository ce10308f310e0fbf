// The pure task record: job events become log rows with absolute numbers, per-step ranges that
// Forgejo's viewer can use, outputs, and a result; acknowledgements move the buffer, nothing else.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import type { JobEvent, JobEventBody } from "../../../src/contract/job-event.js";
import { LogsLostError } from "../../../src/forge/forgejo/errors.js";
import { rowContent, TaskRecord } from "../../../src/forge/forgejo/task-record.js";
import { LogMasker } from "../../../src/forge/log-masker.js";

const NO_SECRETS = new LogMasker([]);

import { runJob } from "../../engine/run-job.js";

const jobId = randomUUID();
let seq = 0;
const ev = (body: JobEventBody, t = 1_000 + seq): JobEvent => ({ v: 1, jobId, seq: seq++, t, ...body }) as JobEvent;
const lines = (step: number | null, ...texts: string[]): JobEventBody => ({
  kind: "log",
  step,
  stage: "main",
  lines: texts.map((text, i) => ({ t: 2_000 + i, text })),
});

function twoStepJob(): TaskRecord {
  const r = new TaskRecord(7n, 2, NO_SECRETS);
  r.apply(ev({ kind: "accepted", orchestrator: "host-a" }));
  r.apply(ev(lines(null, "booting")));
  r.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "one" }));
  r.apply(ev(lines(0, "a1", "a2")));
  r.apply(
    ev({ kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} }),
  );
  r.apply(ev({ kind: "step-started", step: 1, stage: "main", name: "two" }));
  r.apply(ev(lines(1, "b1")));
  r.apply(
    ev({ kind: "step-finished", step: 1, stage: "main", outcome: "failure", conclusion: "failure", outputs: {} }),
  );
  r.apply(ev({ kind: "job-finished", result: "failure", outputs: { x: "1" }, reason: "step two failed" }));
  return r;
}

describe("TaskRecord", () => {
  it("puts set-up rows first, each step's rows in its range, and the closing line after the steps", () => {
    const r = twoStepJob();
    const rows = r.pendingRows().rows.map((x) => x.content);
    assert.deepEqual(rows, ["Job accepted by orchestrator host-a", "booting", "a1", "a2", "b1", "step two failed"]);
    const rep = r.report();
    assert.equal(rep.result, "failure");
    assert.deepEqual(
      rep.steps.map((s) => [s.result, s.logIndex, s.logLength]),
      [
        ["success", 2, 2],
        ["failure", 4, 1],
      ],
    );
    assert.ok(rep.stoppedAtMs !== undefined && rep.startedAtMs !== undefined);
    assert.deepEqual(r.unsentOutputs(), { x: "1" });
  });

  it("ignores an event it has seen (same seq), so a redelivery cannot repeat a line", () => {
    const r = new TaskRecord(1n, 1, NO_SECRETS);
    const e = ev(lines(null, "once"));
    assert.equal(r.apply(e), true);
    assert.equal(r.apply(e), false);
    assert.equal(r.rowCount, 1);
  });

  it("keeps job-level lines that arrive while steps run inside the current step, so ranges stay contiguous", () => {
    const r = new TaskRecord(1n, 2, NO_SECRETS);
    r.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "one" }));
    r.apply(ev(lines(0, "a")));
    r.apply(ev(lines(null, "serial console line")));
    r.apply(
      ev({ kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} }),
    );
    r.apply(ev({ kind: "step-started", step: 1, stage: "main", name: "two" }));
    r.apply(ev(lines(1, "b")));
    const [s0, s1] = r.report().steps;
    assert.deepEqual([s0?.logIndex, s0?.logLength, s1?.logIndex, s1?.logLength], [0, 2, 2, 1]);
  });

  it("gives a step without rows the current end of the log and length 0", () => {
    const r = new TaskRecord(1n, 2, NO_SECRETS);
    r.apply(ev(lines(null, "setup")));
    r.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "quiet" }));
    r.apply(
      ev({ kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} }),
    );
    assert.deepEqual(r.report().steps[0], {
      result: "success",
      startedAtMs: r.report().steps[0]?.startedAtMs,
      stoppedAtMs: r.report().steps[0]?.stoppedAtMs,
      logIndex: 1,
      logLength: 0,
    });
  });

  it("closes steps left open: started ones as cancelled, never-started ones skipped after success", () => {
    const failed = new TaskRecord(1n, 3, NO_SECRETS);
    failed.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "one" }));
    failed.finish("cancelled", 9_000, { reason: "cancelled on Forgejo" });
    assert.deepEqual(
      failed.report().steps.map((s) => s.result),
      ["cancelled", "cancelled", "cancelled"],
    );
    const ok = new TaskRecord(2n, 2, NO_SECRETS);
    ok.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "one" }));
    ok.apply(
      ev({ kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} }),
    );
    ok.finish("success", 9_000);
    assert.deepEqual(
      ok.report().steps.map((s) => s.result),
      ["success", "skipped"],
    );
  });

  it("reports a step by its conclusion (continue-on-error turns a failure into success)", () => {
    const r = new TaskRecord(1n, 1, NO_SECRETS);
    r.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "flaky" }));
    r.apply(
      ev({ kind: "step-finished", step: 0, stage: "main", outcome: "failure", conclusion: "success", outputs: {} }),
    );
    assert.equal(r.report().steps[0]?.result, "success");
  });

  it("moves the buffer only by the server's ack index and refuses an ack that goes backwards", () => {
    const r = twoStepJob();
    r.confirm(2);
    assert.deepEqual(r.pendingRows().index, 2);
    assert.equal(r.pendingRows().rows.length, 4);
    r.confirm(99); // a server may count past what it was sent; never past what exists
    assert.equal(r.ackedRows, 6);
    assert.throws(() => r.confirm(3), LogsLostError);
  });

  it("keeps outputs until the server lists them, first value wins, oversized ones are dropped with a line", () => {
    const r = new TaskRecord(1n, 0, NO_SECRETS);
    r.finish("success", 1, { outputs: { a: "1", ["k".repeat(300)]: "x" } });
    assert.deepEqual(r.unsentOutputs(), { a: "1" });
    assert.ok(r.pendingRows().rows.some((x) => x.content.includes("dropped")));
    r.outputsAccepted(["a"]);
    assert.deepEqual(r.unsentOutputs(), {});
  });

  it("sends one line per row, valid UTF-8, and rewrites group commands for Forgejo's viewer", () => {
    assert.equal(rowContent("x\r\n"), "x");
    assert.equal(rowContent("bad \ud800 surrogate"), "bad ? surrogate");
    assert.equal(rowContent("::group::Build"), "##[group]Build");
    assert.equal(rowContent("::endgroup::"), "##[endgroup]");
  });

  it("masks the task's secrets in every row and output value, whatever the events carried", () => {
    const secret = "it's-a-s3cret/é";
    const r = new TaskRecord(1n, 1, new LogMasker([secret]));
    r.apply(ev({ kind: "provisioning", phase: "booting", label: "x", message: `console: ${secret}` }));
    r.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "one" }));
    r.apply(ev(lines(0, `plain ${secret}`, `quote ${encodeURIComponent(secret)}`, `json ${JSON.stringify(secret)}`)));
    r.apply(ev({ kind: "annotation", step: 0, level: "error", message: `failed with ${secret}` }));
    r.apply(
      ev({ kind: "job-finished", result: "failure", outputs: { o: `v=${secret}` }, reason: `because ${secret}` }),
    );
    assert.deepEqual(
      r.pendingRows().rows.map((x) => x.content),
      ['VM for runs-on "x": booting (console: ***)', "plain ***", "quote ***", 'json "***"', "because ***"],
    );
    assert.deepEqual(r.unsentOutputs(), { o: "v=***" });
  });

  it("writes a text of several lines (a rejected workflow's problems) as one row per line", () => {
    const r = new TaskRecord(1n, 0, NO_SECRETS);
    r.finish("failure", 5, { reason: "The workflow cannot be run: 2 problems:\n  ci.yml:7:9: a\r\n  ci.yml:9:9: b\n" });
    assert.deepEqual(
      r.pendingRows().rows.map((x) => x.content),
      ["The workflow cannot be run: 2 problems:", "  ci.yml:7:9: a", "  ci.yml:9:9: b"],
    );
  });

  it("shows a failed step's error once and the job's reason once, from the engine's own events", async (t) => {
    const run = await runJob(
      t,
      "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - name: Breaks\n        run: exit 3\n",
    );
    const r = new TaskRecord(1n, 1, NO_SECRETS);
    for (const body of run.events) r.apply(ev(body));
    const rows = r.pendingRows().rows.map((x) => x.content);
    assert.deepEqual(
      rows.filter((x) => x.includes("Process completed")),
      ["##[error]Process completed with exit code 3."],
    );
    assert.deepEqual(
      rows.filter((x) => x.includes("failed")),
      ["the step 'Breaks' failed"],
    );
    assert.equal(rows.at(-1), "the step 'Breaks' failed");
  });

  it("adds only the location of an annotation, whose message the engine logged already", () => {
    const r = new TaskRecord(1n, 1, NO_SECRETS);
    r.apply(ev({ kind: "step-started", step: 0, stage: "main", name: "one" }));
    r.apply(ev(lines(0, "##[warning]deprecated")));
    r.apply(ev({ kind: "annotation", step: 0, level: "warning", message: "deprecated" }));
    r.apply(ev(lines(0, "##[error]it broke")));
    r.apply(ev({ kind: "annotation", step: 0, level: "error", message: "it broke", file: "app.js", line: 10, col: 3 }));
    assert.deepEqual(
      r.pendingRows().rows.map((x) => x.content),
      ["##[warning]deprecated", "##[error]it broke", "  at app.js:10:3"],
    );
  });

  it("changes nothing after the result but remembers the seq", () => {
    const r = twoStepJob();
    const before = r.rowCount;
    assert.equal(r.apply(ev(lines(null, "late"))), true);
    assert.equal(r.rowCount, before);
  });
});
