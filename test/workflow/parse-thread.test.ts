// The parser thread: workflow and action files from jobs are read on a worker thread within a time
// budget, with the pure parsers' results and errors, while the caller's event loop goes on.
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { parseActionFile } from "../../src/workflow/action-file.js";
import { WorkflowError, WorkflowLimitError } from "../../src/workflow/errors.js";
import {
  ParseThread,
  readActionFile,
  readSingleJobWorkflow,
  readWorkflowFile,
} from "../../src/workflow/parse-thread.js";
import { parseSingleJobWorkflow } from "../../src/workflow/single-job.js";
import { parseWorkflowFile } from "../../src/workflow/workflow.js";
import { aliasBombWorkflow } from "../support/yaml-bombs.js";

const WORKFLOW = `name: ci
on: push
jobs:
  build:
    runs-on: linux
    env: &env { A: "1" }
    steps:
      - run: echo "\${{ github.sha }}"
        env: *env
      - uses: ./local
`;
const ACTION = "runs:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo ${{ inputs.who }}\n";

/** About 1 MiB of jobs in a needs chain: within every size limit, and seconds for the schema's checks. */
function slowWorkflow(): string {
  let s = "on: push\njobs:\n  j0:\n    runs-on: x\n    steps: [{ run: echo }]\n";
  for (let j = 1; s.length < 1_000_000; j++)
    s += `  j${j}:\n    needs: [j${j - 1}]\n    runs-on: x\n    steps: [{ run: echo }]\n`;
  return s;
}

function startThread(t: TestContext, budgetMs: number): ParseThread {
  const thread = new ParseThread({ budgetMs });
  t.after(() => thread.close());
  return thread;
}

describe("the parser thread", () => {
  it("reads a workflow, an action file and a Forgejo payload as the pure parsers do", async () => {
    assert.deepEqual(await readWorkflowFile("ci.yml", WORKFLOW), await parseWorkflowFile("ci.yml", WORKFLOW));
    assert.deepEqual(await readActionFile("a/action.yml", ACTION), parseActionFile("a/action.yml", ACTION));
    assert.deepEqual(
      await readSingleJobWorkflow(WORKFLOW, ".forgejo/workflows/ci.yml"),
      await parseSingleJobWorkflow(WORKFLOW, ".forgejo/workflows/ci.yml"),
    );
  });

  it("gives back the parsers' errors as their own classes: located problems, and the limit passed", async () => {
    const bad = "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{ runn: x }]\n";
    const pure = await parseWorkflowFile("bad.yml", bad).catch((err: unknown) => err);
    assert.ok(pure instanceof WorkflowError);
    await assert.rejects(readWorkflowFile("bad.yml", bad), (err) => {
      assert.ok(err instanceof WorkflowError && !(err instanceof WorkflowLimitError), String(err));
      assert.deepEqual(err.problems, pure.problems);
      assert.equal(err.message, pure.message);
      assert.match(err.message, /bad\.yml:5:15: Unexpected value 'runn'/);
      return true;
    });
    await assert.rejects(readWorkflowFile("bomb.yml", aliasBombWorkflow(8)), (err) => {
      assert.ok(err instanceof WorkflowLimitError, String(err));
      assert.equal(err.limit, "maxNodes");
      assert.equal(err.max, 250_000);
      assert.match(err.message, /^bomb\.yml:\d+:\d+: the YAML holds more than 250000 values/);
      return true;
    });
  });

  it("stops a read past its budget with the limit, keeps the event loop free meanwhile, and reads on", async (t) => {
    const thread = startThread(t, 3_000);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    t.after(() => clearInterval(ticker));
    await assert.rejects(thread.parse({ kind: "workflow", file: "slow.yml", text: slowWorkflow() }), (err) => {
      assert.ok(err instanceof WorkflowLimitError, String(err));
      assert.equal(err.limit, "maxParseMs");
      assert.equal(err.max, 3_000);
      assert.match(
        err.message,
        /^slow\.yml: reading the file took longer than 3 s, gnomon's limit for a workflow or action file \(maxParseMs\), so it was stopped; make it simpler/,
      );
      return true;
    });
    clearInterval(ticker);
    assert.ok(ticks > 10, `the caller's timers ran while the file was read (${ticks} ticks)`);
    const next = (await thread.parse({ kind: "workflow", file: "ci.yml", text: WORKFLOW })) as { jobs: unknown[] };
    assert.equal(next.jobs.length, 1, "a fresh worker reads the next file");
  });
});
