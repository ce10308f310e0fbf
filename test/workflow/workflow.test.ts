// Parsing workflow files into plain data, with the official schema's located errors.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkflowError } from "../../src/workflow/errors.js";
import { parseWorkflowFile } from "../../src/workflow/workflow.js";

const wf = (text: string) => parseWorkflowFile(".github/workflows/ci.yml", text);

async function problems(text: string): Promise<string> {
  try {
    await wf(text);
  } catch (err) {
    assert.ok(err instanceof WorkflowError, `a WorkflowError, got ${String(err)}`);
    return err.message;
  }
  assert.fail("the workflow was accepted");
}

describe("workflow files", () => {
  it("reads triggers, workflow env and defaults, and jobs in file order with their needs", async () => {
    const w = await wf(`name: CI
on: [push, pull_request]
env: { A: "1" }
defaults:
  run: { shell: sh }
jobs:
  build:
    runs-on: ubuntu-latest
    steps: [{ run: echo build }]
  test:
    needs: build
    runs-on: ubuntu-latest
    steps: [{ run: echo test }]
`);
    assert.equal(w.name, "CI");
    assert.deepEqual(w.events, ["push", "pull_request"]);
    assert.deepEqual(w.env, { type: 2, map: [{ Key: "A", Value: "1" }] });
    assert.deepEqual(
      w.jobs.map((j) => [j.id, j.needs]),
      [
        ["build", []],
        ["test", ["build"]],
      ],
    );
  });

  it("turns steps into StepSpecs with GitHub's generated ids and explicit status functions", async () => {
    const w = await wf(`on: push
jobs:
  a:
    runs-on: x
    steps:
      - run: echo \${{ github.sha }}
        shell: bash
        working-directory: sub
        timeout-minutes: 2
        continue-on-error: true
      - uses: actions/checkout@v4
        with: { fetch-depth: 0 }
        if: github.event_name == 'push'
      - id: mine
        run: echo two
      - run: echo three
`);
    const steps = w.jobs[0]?.steps ?? [];
    assert.deepEqual(
      steps.map((s) => [s.id, s.kind, s.if]),
      [
        ["__run", "run", "success()"],
        ["__actions_checkout", "uses", "success() && (github.event_name == 'push')"],
        ["mine", "run", "success()"],
        ["__run_2", "run", "success()"],
      ],
    );
    const [first, second] = steps;
    assert.ok(first?.kind === "run" && second?.kind === "uses");
    assert.deepEqual(first.run, { type: 3, expr: "format('echo {0}', github.sha)" });
    assert.equal(first.shell, "bash");
    assert.equal(first.workingDirectory, "sub");
    assert.equal(first.timeoutMinutes, 2);
    assert.equal(first.continueOnError, true);
    assert.equal(second.uses, "actions/checkout@v4");
    assert.deepEqual(second.with, { type: 2, map: [{ Key: "fetch-depth", Value: "0" }] });
  });

  it("keeps the value of multi-line strings with expressions, whatever the line ends and block style", async () => {
    for (const nl of ["\n", "\r\n"]) {
      const text = [
        "on: push",
        "jobs:",
        "  a:",
        "    runs-on: x",
        "    steps:",
        "      - run: |",
        `          echo \${{ github.sha }}`,
        "          cat <<EOF",
        "          x",
        "          EOF",
        "      - run: >-",
        `          folded \${{ 1 }}`,
        "          line",
        "",
      ].join(nl);
      const steps = (await wf(text)).jobs[0]?.steps ?? [];
      assert.deepEqual(
        steps.map((s) => (s.kind === "run" ? s.run : null)),
        [
          { type: 3, expr: "format('echo {0}\ncat <<EOF\nx\nEOF\n', github.sha)" },
          { type: 3, expr: "format('folded {0} line', 1)" },
        ],
        `line ends ${JSON.stringify(nl)}`,
      );
    }
  });

  it("refuses malformed YAML with file, line and column", async () => {
    const msg = await problems("on: push\njobs:\n  a: [unclosed\n");
    assert.match(msg, /^\.github\/workflows\/ci\.yml:\d+:\d+: /);
  });

  it("refuses an unknown function in an expression, located at the expression", async () => {
    const msg = await problems(`on: push
jobs:
  a:
    runs-on: x
    steps:
      - run: echo \${{ nosuchfunction(1) }}
`);
    assert.match(msg, /ci\.yml:6:\d+: Unrecognized function: 'nosuchfunction'/);
  });

  it("lists every problem the schema finds", async () => {
    const msg = await problems(`on: push
jobs:
  a:
    steps:
      - runn: x
  b:
    needs: nope
    runs-on: x
    steps: [{ run: echo }]
`);
    assert.match(msg, /problems:/);
    assert.match(msg, /ci\.yml:5:9: Unexpected value 'runn'/);
    assert.match(msg, /Required property is missing: runs-on/);
    assert.match(msg, /nope/);
  });

  it("marks a job that calls a reusable workflow", async () => {
    const w = await wf(`on: push
jobs:
  call:
    uses: octo/repo/.github/workflows/x.yml@main
`);
    assert.equal(w.jobs[0]?.uses, "octo/repo/.github/workflows/x.yml@main");
  });
});
