// The pure model of what GitHub shows for a job, built from JobEvents: records in order, lines in
// the right record, duplicates ignored, masking on the way in, and endings without steps.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import type { JobEvent, JobEventBody } from "../../../src/contract/job-event.js";
import { JobReport, logTimestamp } from "../../../src/forge/github/job-report.js";
import type { GitHubJob } from "../../../src/forge/github/to-job-request.js";
import { LogMasker } from "../../../src/forge/log-masker.js";

const jobId = randomUUID();
const job: GitHubJob = {
  flow: "run-service",
  contractId: jobId,
  jobId,
  planId: randomUUID(),
  timelineId: randomUUID(),
  scopeIdentifier: "00000000-0000-0000-0000-000000000000",
  planType: "actions",
  planVersion: 0,
  requestId: 0,
  displayName: "build",
  billingOwnerId: undefined,
  serviceUrl: "https://run.example/1/",
  accessToken: "job-token",
  resultsUrl: undefined,
  feedStreamUrl: undefined,
  cacheUrl: undefined,
  steps: [
    {
      recordId: randomUUID(),
      displayName: "Run actions/checkout@v4",
      actionName: "actions/checkout",
      ref: "v4",
      contextName: "__actions_checkout",
    },
    { recordId: randomUUID(), displayName: "Run make", actionName: "", ref: "", contextName: "__run" },
  ],
  maskValues: ["sekrit"],
  maskPatterns: [],
};

function events(...bodies: JobEventBody[]): JobEvent[] {
  return bodies.map((b, seq) => ({ ...b, v: 1, jobId, seq, t: 1_000 + seq }) as JobEvent);
}

describe("the job report", () => {
  it("puts provisioning in 'Set up job', steps in their records, post stages after, tear-down in 'Complete job'", () => {
    const r = new JobReport(job, { masker: new LogMasker(job.maskValues) });
    for (const ev of events(
      { kind: "accepted", orchestrator: "h1" },
      { kind: "log", step: null, stage: "pre", lines: [{ t: 1, text: "booting" }] },
      { kind: "step-started", step: 0, stage: "main", name: "Checkout" },
      { kind: "log", step: 0, stage: "main", lines: [{ t: 2, text: "cloning with sekrit" }] },
      { kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} },
      { kind: "step-started", step: 1, stage: "main", name: "Run make" },
      { kind: "annotation", step: 1, level: "error", message: "boom sekrit", file: "Makefile", line: 3 },
      { kind: "step-finished", step: 1, stage: "main", outcome: "failure", conclusion: "failure", outputs: {} },
      { kind: "step-started", step: 0, stage: "post", name: "Post Checkout" },
      { kind: "step-finished", step: 0, stage: "post", outcome: "success", conclusion: "success", outputs: {} },
      { kind: "log", step: null, stage: "post", lines: [{ t: 3, text: "destroying the VM" }] },
      { kind: "job-finished", result: "failure", outputs: { o: "sekrit!" }, reason: "step Run make failed" },
    ))
      r.apply(ev);
    assert.deepEqual(
      r.records.map((x) => [x.order, x.name, x.state, x.result]),
      [
        [1, "Set up job", "completed", "succeeded"],
        [2, "Checkout", "completed", "succeeded"],
        [3, "Run make", "completed", "failed"],
        [4, "Post Checkout", "completed", "succeeded"],
        [5, "Complete job", "completed", "failed"],
      ],
    );
    assert.equal(r.records[1]?.id, job.steps[0]?.recordId);
    assert.notEqual(r.records[3]?.id, job.steps[0]?.recordId, "a post stage has its own record");
    assert.deepEqual(r.records[0]?.lines, [
      `${logTimestamp(1_000)} gnomon: job accepted by h1`,
      `${logTimestamp(1)} booting`,
    ]);
    assert.deepEqual(r.records[1]?.lines, [`${logTimestamp(2)} cloning with ***`]);
    assert.equal(r.records[2]?.issues[0]?.message, "boom ***");
    assert.equal(r.records[2]?.issues[0]?.stepNumber, 3);
    assert.match(r.records[4]?.lines.join("\n") ?? "", /destroying the VM[\s\S]*##\[error\]step Run make failed/);
    assert.deepEqual(r.outcome?.outputs, { o: "***!" });
  });

  it("puts gnomon's own notes in 'Set up job' while no step has started, masked, and none after", () => {
    const r = new JobReport(job, { masker: new LogMasker(job.maskValues) });
    r.note("waiting for sekrit", 500);
    const [started] = events({ kind: "step-started", step: 1, stage: "main", name: "Run make" });
    r.apply(started!);
    r.note("too late", 2_000);
    assert.deepEqual(r.records[0]?.name, "Set up job");
    assert.deepEqual(r.records[0]?.lines, [`${logTimestamp(500)} gnomon: waiting for ***`]);
    assert.ok(!r.records.some((x) => x.lines.some((l) => l.includes("too late"))));
  });

  it("ignores an event it has seen (same seq) and anything after the job finished", () => {
    const r = new JobReport(job, { masker: new LogMasker([]) });
    const [started, log, finished] = events(
      { kind: "step-started", step: 1, stage: "main", name: "Run make" },
      { kind: "log", step: 1, stage: "main", lines: [{ t: 5, text: "once" }] },
      { kind: "job-finished", result: "success", outputs: {} },
    );
    assert.ok(r.apply(started!));
    assert.ok(r.apply(log!));
    assert.equal(r.apply(log!), false);
    assert.ok(r.apply(finished!));
    assert.equal(r.apply({ ...log!, seq: 99 }), false);
    assert.deepEqual(r.records.find((x) => x.name === "Run make")?.lines, [`${logTimestamp(5)} once`]);
  });

  it("fails 'Set up job' with the reason when the job ends before any step (a VM that did not boot), skipping every step", () => {
    const r = new JobReport(job, { masker: new LogMasker([]) });
    for (const ev of events(
      { kind: "provisioning", phase: "booting", label: "omnios" },
      { kind: "job-finished", result: "failure", outputs: {}, reason: "the VM did not reach ssh within 300 s" },
    ))
      r.apply(ev);
    assert.deepEqual(
      r.records.map((x) => [x.name, x.result]),
      [
        ["Set up job", "failed"],
        ["Run actions/checkout@v4", "skipped"],
        ["Run make", "skipped"],
        ["Complete job", "succeeded"],
      ],
    );
    assert.equal(r.records[0]?.issues[0]?.message, "the VM did not reach ssh within 300 s");
  });

  it("writes a reason of several lines as one error line each (a rejected job's problems)", () => {
    const r = new JobReport(job, { masker: new LogMasker([]) });
    r.finish("failure", {}, "gnomon cannot run this job: 2 problems:\n  a.yml:1:1: one\n  a.yml:2:1: two", 5_000);
    const setUp = r.records[0];
    assert.deepEqual(
      setUp?.lines.map((l) => l.slice(logTimestamp(5_000).length + 1)),
      ["##[error]gnomon cannot run this job: 2 problems:", "##[error]  a.yml:1:1: one", "##[error]  a.yml:2:1: two"],
    );
    assert.equal(setUp?.issues.length, 1, "one issue, with the whole reason");
  });

  it("marks steps still running as cancelled when the job is cancelled", () => {
    const r = new JobReport(job, { masker: new LogMasker([]) });
    r.apply(events({ kind: "step-started", step: 1, stage: "main", name: "Run make" })[0]!);
    r.finish("cancelled", {}, "the job was cancelled on GitHub", 5_000);
    assert.equal(r.records.find((x) => x.name === "Run make")?.result, "canceled");
    assert.equal(r.outcome?.result, "cancelled");
  });

  it("reports the steps that never started as skipped and keeps 'Complete job' last when the daemon ends a job", () => {
    const r = new JobReport(job, { masker: new LogMasker([]) });
    for (const ev of events(
      { kind: "step-started", step: 0, stage: "main", name: "Checkout" },
      { kind: "log", step: null, stage: "main", lines: [{ t: 2, text: "stopping the VM" }] },
      { kind: "annotation", step: null, level: "warning", message: "the host is shutting down" },
    ))
      r.apply(ev);
    assert.equal(r.records.at(-1)?.name, "Complete job", "job-level lines made 'Complete job' early");
    r.finish("cancelled", {}, "the gnomon runner was stopped", 5_000);
    assert.deepEqual(
      r.records.map((x) => [x.order, x.name, x.state, x.result, x.startTime]),
      [
        [1, "Checkout", "completed", "canceled", 1_000],
        [2, "Run make", "completed", "skipped", null],
        [3, "Complete job", "completed", "succeeded", 1_001],
      ],
    );
    assert.deepEqual(
      r.records[2]?.issues.map((i) => [i.message, i.stepNumber]),
      [
        ["the host is shutting down", 3],
        ["the gnomon runner was stopped", 3],
      ],
      "its annotations moved with it",
    );
  });

  it("restores a previous process's progress without its lines and ends it from there", () => {
    const first = new JobReport(job, { masker: new LogMasker([]) });
    for (const ev of events(
      { kind: "accepted", orchestrator: "h1" },
      { kind: "step-started", step: 0, stage: "main", name: "Checkout" },
      { kind: "log", step: 0, stage: "main", lines: [{ t: 2, text: "cloning" }] },
      { kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} },
      { kind: "step-started", step: 1, stage: "main", name: "Run make" },
    ))
      first.apply(ev);
    const saved = JSON.parse(JSON.stringify(first.progress()));
    const r = new JobReport(job, { masker: new LogMasker([]), progress: saved });
    assert.ok(r.records.every((x) => x.inherited && x.lines.length === 0));
    r.note("not shown: steps had started", 9_000);
    r.finish("failure", {}, "the runner died", 9_000);
    r.warnAtEnd("the log of Run make could not be uploaded");
    assert.deepEqual(
      r.records.map((x) => [x.order, x.name, x.result, x.inherited]),
      [
        [1, "Set up job", "succeeded", true],
        [2, "Checkout", "succeeded", true],
        [3, "Run make", "failed", true],
        [4, "Complete job", "failed", false],
      ],
    );
    assert.equal(r.startTime, 1_000);
    assert.deepEqual(
      r.issues().map((i) => [i.level, i.message]),
      [
        ["error", "the runner died"],
        ["warning", "the log of Run make could not be uploaded"],
      ],
    );
  });
});
