// action.yml files, and Forgejo's single-job workflow payload.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JobSpec } from "../../src/contract/job-request.js";
import { parseActionFile } from "../../src/workflow/action-file.js";
import { WorkflowError } from "../../src/workflow/errors.js";
import { parseSingleJobWorkflow, planSingleJob, singleJobShouldRun } from "../../src/workflow/single-job.js";

describe("action files", () => {
  it("read a composite action's inputs, outputs and steps; name and description are optional", () => {
    const a = parseActionFile(
      "act/action.yml",
      `inputs:
  who: { description: x, required: true }
  greeting: { default: "hi \${{ github.actor }}" }
outputs:
  said: { value: "\${{ steps.say.outputs.text }}" }
runs:
  using: composite
  steps:
    - id: say
      run: echo "\${{ inputs.greeting }} \${{ inputs.who }}"
      shell: bash
`,
    );
    assert.deepEqual(a.inputs, [
      { id: "who", required: true, default: undefined, deprecationMessage: undefined },
      {
        id: "greeting",
        required: false,
        default: { type: 3, expr: "format('hi {0}', github.actor)" },
        deprecationMessage: undefined,
      },
    ]);
    assert.deepEqual(a.outputs, [{ id: "said", value: { type: 3, expr: "steps.say.outputs.text" } }]);
    assert.equal(a.runs.using, "composite");
    assert.ok(a.runs.using === "composite" && a.runs.steps[0]?.kind === "run" && a.runs.steps[0].shell === "bash");
  });

  it("read a JavaScript action's entry points and conditions", () => {
    const a = parseActionFile(
      "a.yml",
      "name: n\ndescription: d\nruns:\n  using: node20\n  main: dist/index.js\n  post: dist/post.js\n  post-if: success()\n",
    );
    assert.deepEqual(a.runs, {
      using: "node20",
      main: "dist/index.js",
      pre: undefined,
      preIf: undefined,
      post: "dist/post.js",
      postIf: "success()",
    });
  });

  it("refuse an invalid composite step and a composite without steps, located", () => {
    assert.throws(
      () =>
        parseActionFile("bad/action.yml", "runs:\n  using: composite\n  steps:\n  - name: Foo\n  - uses: Foo/Bar\n"),
      /bad\/action\.yml:4:5: There's not enough info/,
    );
    assert.throws(() => parseActionFile("none/action.yml", "runs:\n  using: composite\n"), WorkflowError);
    assert.throws(
      () => parseActionFile("x.yml", "runs:\n  using: go\n  main: x\n"),
      /x\.yml:2:10: Unexpected value 'go'/,
    );
  });
});

describe("Forgejo single-job payloads", () => {
  const payload = `name: ci
on:
  push:
jobs:
  test:
    name: test (ubuntu-22.04, 1.17)
    runs-on: ubuntu-22.04
    needs: [build]
    incomplete_matrix: false
    strategy:
      fail-fast: "true"
      max-parallel: "5"
      matrix:
        os: [ubuntu-22.04]
        go: ["1.17"]
    steps:
      - null
      - run: echo \${{ matrix.go }} \${{ needs.build.outputs.v }}
      - uses: actions/checkout@v4
`;

  it("drops what is not GitHub syntax, null steps and needs, and reads string strategy scalars", async () => {
    const single = await parseSingleJobWorkflow(payload);
    assert.deepEqual([...single.dropped].sort(), ["jobs.test.incomplete_matrix", "jobs.test.needs"]);
    assert.equal(single.job.id, "test");
    assert.deepEqual(
      single.job.steps.map((s) => s.kind),
      ["run", "uses"],
    );
  });

  it("plans exactly one leg with the task's needs and the reduced matrix", async () => {
    const single = await parseSingleJobWorkflow(payload);
    const leg = planSingleJob(single, {
      github: { event_name: "push" },
      needs: { build: { result: "success", outputs: { v: "7" } } },
    });
    assert.deepEqual(leg.contexts.matrix, { os: "ubuntu-22.04", go: "1.17" });
    assert.deepEqual(leg.contexts.strategy, { "fail-fast": true, "job-index": 0, "job-total": 1, "max-parallel": 5 });
    assert.equal(leg.spec.job.name, "test (ubuntu-22.04, 1.17)");
    assert.deepEqual(leg.runsOn, ["ubuntu-22.04"]);
    assert.deepEqual(leg.contexts.needs, { build: { result: "success", outputs: { v: "7" } } });
    assert.doesNotThrow(() => JobSpec.parse(leg.spec));
  });

  it("decides the job's if: from the needed jobs' results the task lists", async () => {
    const single = await parseSingleJobWorkflow(payload);
    const needs = (result: "success" | "failure") => ({ build: { result, outputs: {} } });
    assert.equal(singleJobShouldRun(single, { github: {}, needs: needs("success") }), true);
    assert.equal(singleJobShouldRun(single, { github: {}, needs: needs("failure") }), false);
    const always = await parseSingleJobWorkflow(payload.replace("    steps:", "    if: failure()\n    steps:"));
    assert.equal(singleJobShouldRun(always, { github: {}, needs: needs("failure") }), true);
  });

  it("refuse a payload with an alias that names no anchor as a WorkflowError, not a ReferenceError", async () => {
    await assert.rejects(
      parseSingleJobWorkflow(
        `on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n        env: { A: *nowhere }\n`,
        "ci.yml",
      ),
      (err: unknown) => {
        assert.ok(err instanceof WorkflowError, String(err));
        assert.match(err.message, /^ci\.yml:7:\d+: the alias \*nowhere has no anchor &nowhere before it$/);
        return true;
      },
    );
  });

  it("read a payload that reuses one anchor many times, which yaml's own alias budget refused", async () => {
    const uses = Array.from({ length: 150 }, (_, i) => `      - run: echo ${i}\n        env: *common\n`).join("");
    const single = await parseSingleJobWorkflow(
      `on: push\njobs:\n  a:\n    runs-on: x\n    env: &common { A: "1", B: "2" }\n    steps:\n${uses}`,
    );
    assert.equal(single.job.steps.length, 150);
    assert.deepEqual(single.job.steps[149]?.env, {
      type: 2,
      map: [
        { Key: "A", Value: "1" },
        { Key: "B", Value: "2" },
      ],
    });
  });

  it("accepts a payload without `on:` and refuses one with two jobs", async () => {
    await parseSingleJobWorkflow("jobs:\n  a:\n    runs-on: x\n    steps: [{ run: echo }]\n");
    await assert.rejects(
      parseSingleJobWorkflow(
        "on: push\njobs:\n  a: { runs-on: x, steps: [{ run: echo }] }\n  b: { runs-on: x, steps: [{ run: echo }] }\n",
      ),
      /exactly one job/,
    );
  });
});
