// From workflow jobs to JobSpecs: matrix legs, runs-on, names, timeouts, job conditions, order.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JobSpec } from "../../src/contract/job-request.js";
import { evaluateJobIf, labelsOf, planJob } from "../../src/workflow/job-plan.js";
import { combineLegs, jobsInOrder, transitiveNeeds } from "../../src/workflow/run-plan.js";
import { parseWorkflowFile, type Workflow } from "../../src/workflow/workflow.js";

const github = { event_name: "push", repository: "octo/repo", sha: "abc" };

async function jobOf(text: string, id: string): Promise<[Workflow, NonNullable<Workflow["jobs"][number]>]> {
  const w = await parseWorkflowFile("ci.yml", text);
  const j = w.jobs.find((x) => x.id === id);
  assert.ok(j, `job ${id}`);
  return [w, j];
}

describe("job planning", () => {
  it("plans one leg per matrix combination, with names, labels, strategy and matrix contexts", async () => {
    const [w, j] = await jobOf(
      `on: push
env: { W: "1" }
jobs:
  build:
    runs-on: \${{ matrix.os }}
    env: { J: "2" }
    strategy:
      fail-fast: false
      matrix: { os: [ubuntu-22.04, debian-12], node: [18] }
    steps: [{ run: echo }]
`,
      "build",
    );
    const legs = planJob(w, j, { github });
    assert.deepEqual(
      legs.map((l) => [l.spec.job.name, l.runsOn, l.contexts.matrix, l.contexts.strategy]),
      [
        [
          "build (ubuntu-22.04, 18)",
          ["ubuntu-22.04"],
          { os: "ubuntu-22.04", node: 18 },
          { "fail-fast": false, "job-index": 0, "job-total": 2, "max-parallel": 2 },
        ],
        [
          "build (debian-12, 18)",
          ["debian-12"],
          { os: "debian-12", node: 18 },
          { "fail-fast": false, "job-index": 1, "job-total": 2, "max-parallel": 2 },
        ],
      ],
    );
    const spec = legs[0]?.spec;
    assert.ok(spec);
    assert.equal(spec.env.length, 2, "workflow env then job env");
    assert.equal(spec.timeoutMinutes, 360);
    assert.equal(legs[0]?.contexts.github["job"], "build");
    assert.doesNotThrow(() => JobSpec.parse(spec), "the spec is a valid contract JobSpec");
  });

  it("evaluates a matrix that comes from the outputs of a needed job", async () => {
    const [w, j] = await jobOf(
      `on: push
jobs:
  prepare:
    runs-on: x
    steps: [{ run: echo }]
  evalm:
    needs: prepare
    runs-on: x
    strategy:
      matrix:
        \${{ needs.prepare.outputs.key }}: \${{ fromJson(needs.prepare.outputs.values) }}
    steps: [{ run: echo }]
`,
      "evalm",
    );
    const legs = planJob(w, j, {
      github,
      needs: { prepare: { result: "success", outputs: { key: "pkg", values: '["a","b"]' } } },
    });
    assert.deepEqual(
      legs.map((l) => l.contexts.matrix),
      [{ pkg: "a" }, { pkg: "b" }],
    );
  });

  it("evaluates timeout-minutes, continue-on-error and a named job with matrix values", async () => {
    const [w, j] = await jobOf(
      `on: push
jobs:
  t:
    name: Test on \${{ matrix.v }}
    runs-on: [self-hosted, linux]
    timeout-minutes: \${{ matrix.v == 3 && 6 || 1 }}
    continue-on-error: \${{ matrix.v == 3 }}
    strategy: { matrix: { v: [3] } }
    steps: [{ run: echo }]
`,
      "t",
    );
    const [leg] = planJob(w, j, { github });
    assert.equal(leg?.spec.job.name, "Test on 3");
    assert.deepEqual(leg?.runsOn, ["self-hosted", "linux"]);
    assert.equal(leg?.spec.timeoutMinutes, 6);
    assert.equal(leg?.spec.continueOnError, true);
  });

  it("keeps only the matrix legs a filter asks for", async () => {
    const [w, j] = await jobOf(
      `on: push
jobs:
  t:
    runs-on: x
    strategy: { matrix: { node: [8.x, 10.x], os: [a, b] } }
    steps: [{ run: echo }]
`,
      "t",
    );
    assert.deepEqual(
      planJob(w, j, { github }, { matrixFilter: { node: "10.x" } }).map((l) => l.contexts.matrix),
      [
        { node: "10.x", os: "a" },
        { node: "10.x", os: "b" },
      ],
    );
  });

  it("names the job and field when an expression fails at planning time", async () => {
    const [w, j] = await jobOf(
      `on: push
jobs:
  t:
    runs-on: x
    timeout-minutes: \${{ fromJSON('not json') }}
    steps: [{ run: echo }]
`,
      "t",
    );
    assert.throws(() => planJob(w, j, { github }), /ci\.yml: jobs\.t\.timeout-minutes: the expression/);
  });

  it("refuses jobs that call reusable workflows with a sentence saying what to do", async () => {
    const [w, j] = await jobOf("on: push\njobs:\n  c:\n    uses: o/r/.github/workflows/x.yml@v1\n", "c");
    assert.throws(() => planJob(w, j, { github }), /reusable workflow o\/r\/\.github\/workflows\/x\.yml@v1.*inline/);
  });

  it("reads runs-on as a string, a list or a group mapping", () => {
    assert.deepEqual(labelsOf("ubuntu-latest"), ["ubuntu-latest"]);
    assert.deepEqual(labelsOf(["self-hosted", ["linux"]]), ["self-hosted", "linux"]);
    assert.deepEqual(labelsOf({ group: "g", labels: ["a", "b"] }), ["a", "b"]);
    assert.deepEqual(labelsOf(null), []);
  });
});

describe("job conditions", () => {
  const text = `on: push
jobs:
  fail: { runs-on: x, steps: [{ run: exit 1 }] }
  suc: { needs: fail, if: success() || failure(), runs-on: x, steps: [{ run: echo }] }
  next: { needs: suc, runs-on: x, steps: [{ run: echo }] }
  always: { needs: next, if: always(), runs-on: x, steps: [{ run: echo }] }
  onpush: { if: github.event_name == 'push', runs-on: x, steps: [{ run: echo }] }
`;

  it("skips a job by default when any job it depends on, even indirectly, did not succeed", async () => {
    const w = await parseWorkflowFile("ci.yml", text);
    const byId = (id: string) => w.jobs.find((j) => j.id === id)!;
    assert.equal(
      evaluateJobIf(w, byId("next"), { github }, { upstream: ["failure", "success"], cancelled: false }),
      false,
    );
    assert.equal(evaluateJobIf(w, byId("suc"), { github }, { upstream: ["failure"], cancelled: false }), true);
    assert.equal(evaluateJobIf(w, byId("always"), { github }, { upstream: ["skipped"], cancelled: true }), true);
    assert.equal(
      evaluateJobIf(w, byId("next"), { github }, { upstream: ["success", "skipped"], cancelled: false }),
      false,
    );
    assert.equal(evaluateJobIf(w, byId("next"), { github }, { upstream: ["success"], cancelled: true }), false);
    assert.equal(evaluateJobIf(w, byId("onpush"), { github }, { upstream: [], cancelled: false }), true);
    assert.equal(
      evaluateJobIf(w, byId("onpush"), { github: { event_name: "pull_request" } }, { upstream: [], cancelled: false }),
      false,
    );
  });

  it("orders jobs after the jobs they need, and selects one job with what it depends on", async () => {
    const w = await parseWorkflowFile(
      "ci.yml",
      `on: push
jobs:
  c: { needs: [a, b], runs-on: x, steps: [{ run: echo }] }
  b: { needs: a, runs-on: x, steps: [{ run: echo }] }
  a: { runs-on: x, steps: [{ run: echo }] }
  d: { runs-on: x, steps: [{ run: echo }] }
`,
    );
    assert.deepEqual(
      jobsInOrder(w)?.map((j) => j.id),
      ["a", "b", "c", "d"],
    );
    assert.deepEqual(
      jobsInOrder(w, "b")?.map((j) => j.id),
      ["a", "b"],
    );
    assert.equal(jobsInOrder(w, "nope"), undefined);
    assert.deepEqual(transitiveNeeds(w, "c"), ["b", "a"]);
  });

  it("combines matrix legs into one result for the jobs that need them", () => {
    assert.deepEqual(
      combineLegs([
        { result: "success", outputs: { a: "1", b: "x" } },
        { result: "failure", outputs: { a: "2", b: "" } },
      ]),
      { result: "failure", outputs: { a: "2", b: "x" } },
    );
    assert.equal(combineLegs([{ result: "skipped", outputs: {} }]).result, "skipped");
    assert.equal(
      combineLegs([
        { result: "success", outputs: {} },
        { result: "cancelled", outputs: {} },
      ]).result,
      "cancelled",
    );
  });
});
