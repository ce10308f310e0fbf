// The schedule of a local run (gnomon exec), as a table: a workflow, where its labels run, each
// leg's outcome (success unless the row says otherwise) and when the run is stopped, against the
// decisions in order and each job's result. Pure: nothing runs.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type LegOutcome, RunSchedule, ScheduleOrderError } from "../../src/workflow/run-schedule.js";
import { parseWorkflowFile } from "../../src/workflow/workflow.js";

const github = { event_name: "push", repository: "octo/repo", sha: "abc" };

interface Row {
  readonly name: string;
  readonly jobs: string;
  /** runs-on label → target; default ubuntu-latest runs on host. */
  readonly targets?: Record<string, string>;
  /** Leg name → its outcome; others succeed. */
  readonly outcomes?: Record<string, LegOutcome["result"]>;
  /** Leg name → its outputs. */
  readonly outputs?: Record<string, Record<string, string>>;
  /** The run is stopped once this leg ended. */
  readonly stopAfter?: string;
  readonly only?: string;
  readonly matrixFilter?: Record<string, string>;
  readonly decisions: readonly string[];
  readonly results: Record<string, string>;
}

const TABLE: readonly Row[] = [
  {
    name: "runs every job once, each after the jobs it needs, file order otherwise",
    jobs: `
  test: { needs: build, runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  build: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  lint: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    decisions: ["run ci / build on host", "run ci / test on host", "run ci / lint on host"],
    results: { build: "success", test: "success", lint: "success" },
  },
  {
    name: "skips the jobs that need a failed one, directly or not, and runs the others",
    jobs: `
  a: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  b: { needs: a, runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  c: { needs: b, runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  d: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    outcomes: { "ci / a": "failure" },
    decisions: ["run ci / a on host", "skipped ci / b: needs a", "skipped ci / c: needs b", "run ci / d on host"],
    results: { a: "failure", b: "skipped", c: "skipped", d: "success" },
  },
  {
    name: "runs a job after a failed need when its if: says always() or failure()",
    jobs: `
  a: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  report: { needs: a, if: "\${{ failure() }}", runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  cleanup: { needs: a, if: "\${{ always() }}", runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    outcomes: { "ci / a": "failure" },
    decisions: ["run ci / a on host", "run ci / report on host", "run ci / cleanup on host"],
    results: { a: "failure", report: "success", cleanup: "success" },
  },
  {
    name: "lets a continue-on-error job's failure count as success for what needs it",
    jobs: `
  flaky: { runs-on: ubuntu-latest, continue-on-error: true, steps: [{ run: "true" }] }
  after: { needs: flaky, runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    outcomes: { "ci / flaky": "failure" },
    decisions: ["run ci / flaky on host", "run ci / after on host"],
    results: { flaky: "failure", after: "success" },
  },
  {
    name: "cancels the legs not started yet once a leg fails (fail-fast), and fails the job",
    jobs: `
  m:
    runs-on: ubuntu-latest
    strategy: { matrix: { n: [1, 2, 3] } }
    steps: [{ run: "true" }]
  after: { needs: m, runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    outcomes: { "ci / m (1)": "failure" },
    decisions: [
      "run ci / m (1) on host",
      "cancelled ci / m (2): fail-fast: another leg failed",
      "cancelled ci / m (3): fail-fast: another leg failed",
      "skipped ci / after: needs m",
    ],
    results: { m: "failure", after: "skipped" },
  },
  {
    name: "runs every leg when fail-fast is false, or the failing leg may fail",
    jobs: `
  m:
    runs-on: ubuntu-latest
    strategy: { fail-fast: false, matrix: { n: [1, 2] } }
    steps: [{ run: "true" }]
  k:
    runs-on: ubuntu-latest
    continue-on-error: "\${{ matrix.n == 1 }}"
    strategy: { matrix: { n: [1, 2] } }
    steps: [{ run: "true" }]`,
    outcomes: { "ci / m (1)": "failure", "ci / k (1)": "failure" },
    decisions: ["run ci / m (1) on host", "run ci / m (2) on host", "run ci / k (1) on host", "run ci / k (2) on host"],
    results: { m: "failure", k: "failure" },
  },
  {
    name: "names the --label a leg lacks, skips it, and the job with it when no leg ran",
    targets: { "ubuntu-latest": "host" },
    jobs: `
  illumos: { runs-on: omnios, steps: [{ run: "true" }] }
  both: { runs-on: [ubuntu-latest, big], steps: [{ run: "true" }] }
  after: { needs: illumos, runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    decisions: [
      "no-runner ci / illumos: no --label for runs-on omnios; add --label omnios=host to run it here",
      "no-runner ci / both: no --label for runs-on big; add --label big=host to run it here",
      "skipped ci / after: needs illumos",
    ],
    results: { illumos: "skipped", both: "skipped", after: "skipped" },
  },
  {
    name: "runs a leg on the target of its first label",
    targets: { "ubuntu-latest": "debian-12", big: "host" },
    jobs: `
  j: { runs-on: [ubuntu-latest, big], steps: [{ run: "true" }] }`,
    decisions: ["run ci / j on debian-12"],
    results: { j: "success" },
  },
  {
    name: "once stopped, cancels the legs not started and skips the jobs that do not say always()",
    jobs: `
  m:
    runs-on: ubuntu-latest
    strategy: { matrix: { n: [1, 2] } }
    steps: [{ run: "true" }]
  next: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  last: { if: "\${{ always() }}", runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    stopAfter: "ci / m (1)",
    decisions: [
      "run ci / m (1) on host",
      "cancelled ci / m (2): cancelled",
      "skipped ci / next: if: false",
      "cancelled ci / last: cancelled",
    ],
    results: { m: "cancelled", next: "skipped", last: "cancelled" },
  },
  {
    name: "runs only the wanted job and what it needs",
    only: "wanted",
    jobs: `
  base: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  wanted: { needs: base, runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  other: { runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    decisions: ["run ci / base on host", "run ci / wanted on host"],
    results: { base: "success", wanted: "success" },
  },
  {
    name: "keeps only the matrix legs the filter names; a job with none left is skipped without a word",
    matrixFilter: { n: "2" },
    jobs: `
  m:
    runs-on: ubuntu-latest
    strategy: { matrix: { n: [1, 2] } }
    steps: [{ run: "true" }]
  other:
    runs-on: ubuntu-latest
    strategy: { matrix: { k: [a] } }
    steps: [{ run: "true" }]`,
    decisions: ["run ci / m (2) on host"],
    results: { m: "success", other: "skipped" },
  },
  {
    name: "fails a job whose if: cannot be evaluated, with the reason, and skips what needs it",
    jobs: `
  bad: { if: "\${{ fromJSON('{') }}", runs-on: ubuntu-latest, steps: [{ run: "true" }] }
  after: { needs: bad, runs-on: ubuntu-latest, steps: [{ run: "true" }] }`,
    decisions: ["invalid ci / bad: …", "skipped ci / after: needs bad"],
    results: { bad: "failure", after: "skipped" },
  },
];

/** Runs the schedule with the row's outcomes; each decision as one line. */
function drive(schedule: RunSchedule, row: Row): string[] {
  const seen: string[] = [];
  let stopped = false;
  for (let d = schedule.next(stopped); d; d = schedule.next(stopped)) {
    switch (d.kind) {
      case "run":
        seen.push(`run ${d.name} on ${d.target}`);
        schedule.finished({ result: row.outcomes?.[d.name] ?? "success", outputs: row.outputs?.[d.name] ?? {} });
        if (row.stopAfter === d.name) stopped = true;
        break;
      case "invalid":
        seen.push(`invalid ${d.name}: …`);
        break;
      case "skipped":
      case "cancelled":
        seen.push(`${d.kind} ${d.name}: ${d.note}`);
        break;
      case "no-runner":
        seen.push(`no-runner ${d.name}: ${d.hint}`);
        break;
    }
  }
  return seen;
}

describe("run schedule", () => {
  for (const row of TABLE)
    it(row.name, async () => {
      const w = await parseWorkflowFile("ci.yml", `name: ci\non: push\njobs:${row.jobs}\n`);
      const schedule = new RunSchedule(w, {
        github,
        only: row.only,
        matrixFilter: row.matrixFilter,
        targets: row.targets ?? { "ubuntu-latest": "host" },
      });
      assert.deepEqual(drive(schedule, row), row.decisions);
      assert.deepEqual(Object.fromEntries([...schedule.results].map(([id, r]) => [id, r.result])), row.results);
    });

  it("gives a job the results and outputs of the jobs it needs", async () => {
    const w = await parseWorkflowFile(
      "ci.yml",
      `name: ci\non: push\njobs:
  a: { runs-on: ubuntu-latest, outputs: { v: "\${{ steps.s.outputs.v }}" }, steps: [{ id: s, run: "true" }] }
  b: { needs: a, runs-on: ubuntu-latest, steps: [{ run: "true" }] }
`,
    );
    const schedule = new RunSchedule(w, { github, targets: { "ubuntu-latest": "host" } });
    const a = schedule.next(false);
    assert.equal(a?.kind, "run");
    schedule.finished({ result: "success", outputs: { v: "42" } });
    const b = schedule.next(false);
    assert.ok(b?.kind === "run");
    assert.deepEqual(b.leg.contexts.needs, { a: { result: "success", outputs: { v: "42" } } });
    schedule.finished({ result: "success", outputs: {} });
    assert.equal(schedule.next(false), undefined);
  });

  it("refuses to hand out the next step while a leg it handed out has no outcome", async () => {
    const w = await parseWorkflowFile(
      "ci.yml",
      "name: ci\non: push\njobs:\n  a: { runs-on: ubuntu-latest, steps: [{ run: 'true' }] }\n",
    );
    const schedule = new RunSchedule(w, { github, targets: { "ubuntu-latest": "host" } });
    assert.equal(schedule.next(false)?.kind, "run");
    assert.throws(() => schedule.next(false), ScheduleOrderError);
  });
});
