// What gnomon reads from a job or a forge is bounded before it is expanded: alias bombs, nesting
// bombs and oversized files are refused with the limit, its value and the fix, at every parser entry
// point (workflow files, action files, Forgejo's payload), and ordinary reuse of anchors still works.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseActionFile } from "../../src/workflow/action-file.js";
import { parseBoundedYaml } from "../../src/workflow/bounded-yaml.js";
import { DOCUMENT_LIMITS, nestsDeeperThan } from "../../src/workflow/document-limits.js";
import { WorkflowError, WorkflowLimitError } from "../../src/workflow/errors.js";
import { parseSingleJobWorkflow } from "../../src/workflow/single-job.js";
import { parseWorkflowFile } from "../../src/workflow/workflow.js";
import { aliasBombAction, aliasBombWorkflow } from "../support/yaml-bombs.js";

/** A predicate for assert.throws/rejects: a WorkflowLimitError for `limit` whose message matches. */
function limitError(limit: string, message: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof WorkflowLimitError, `expected a WorkflowLimitError, got ${String(err)}`);
    assert.equal(err.limit, limit);
    assert.equal(err.code, "workflow.limit");
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /\n/, "one line");
    return true;
  };
}

const WORKFLOW_HEAD = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n";

describe("document limits", () => {
  it("refuse an alias bomb in a workflow file, at the alias that passes the limit", async () => {
    await assert.rejects(
      parseWorkflowFile(".forgejo/workflows/bomb.yml", aliasBombWorkflow(6)),
      limitError(
        "maxNodes",
        /^\.forgejo\/workflows\/bomb\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded \(the alias \*l\d here repeats \d+ of them\), over gnomon's limit of 250000 .*\(maxNodes\); .*write the repeated parts out/,
      ),
    );
  });

  it("refuse an alias bomb in an action file (the one a step writes and the next uses)", () => {
    assert.throws(
      () => parseActionFile("./that/action.yml", aliasBombAction(6)),
      limitError("maxNodes", /^\.\/that\/action\.yml:\d+:\d+: the YAML holds more than 250000 values/),
    );
  });

  it("refuse an alias bomb in Forgejo's payload with the workflow's own error, not yaml's ReferenceError", async () => {
    await assert.rejects(
      parseSingleJobWorkflow(aliasBombWorkflow(6), ".forgejo/workflows/ci.yml"),
      limitError("maxNodes", /^\.forgejo\/workflows\/ci\.yml:\d+:\d+: /),
    );
  });

  it("refuse a file over maxBytes before parsing it, saying its size and the limit", () => {
    const text = `${WORKFLOW_HEAD}        env:\n          A: "${"x".repeat(DOCUMENT_LIMITS.maxBytes)}"\n`;
    assert.throws(
      () => parseBoundedYaml("big/action.yml", text),
      limitError(
        "maxBytes",
        /^big\/action\.yml: the file is 1 MiB \(\d+ bytes\), over gnomon's limit of 1 MiB for a workflow or action file \(maxBytes\); make it smaller/,
      ),
    );
  });

  it("refuse flow collections nested past maxDepth while parsing, however deep they go", () => {
    for (const n of [DOCUMENT_LIMITS.maxDepth + 1, 400_000])
      assert.throws(
        () => parseBoundedYaml("deep.yml", `a: ${"[".repeat(n)}${"]".repeat(n)}\n`),
        limitError(
          "maxDepth",
          /^deep\.yml:1:\d+: mappings and sequences nest more than 100 deep here, .*\(maxDepth\); flatten/,
        ),
      );
    parseBoundedYaml(
      "ok.yml",
      `a: ${"[".repeat(DOCUMENT_LIMITS.maxDepth - 1)}${"]".repeat(DOCUMENT_LIMITS.maxDepth - 1)}\n`,
    );
  });

  it("refuse block collections nested past maxDepth, and nesting that passes it through aliases", () => {
    const compact = `${"- ".repeat(DOCUMENT_LIMITS.maxDepth + 1)}x\n`;
    assert.throws(() => parseBoundedYaml("compact.yml", compact), limitError("maxDepth", /^compact\.yml:1:\d+: /));
    const half = DOCUMENT_LIMITS.maxDepth / 2 + 1;
    const viaAlias = `a: &deep ${"[".repeat(half)}${"]".repeat(half)}\nb: ${"[".repeat(half)}*deep${"]".repeat(half)}\n`;
    assert.throws(
      () => parseBoundedYaml("alias.yml", viaAlias),
      limitError("maxDepth", /^alias\.yml:2:\d+: .*nest more than 100 deep here \(through the alias \*deep\)/),
    );
  });

  it("refuse a long string repeated by aliases past maxExpandedBytes, though few values", () => {
    const text = `a: &s "${"x".repeat(500_000)}"\nb: [${Array(10).fill("*s").join(", ")}]\n`;
    assert.throws(
      () => parseBoundedYaml("long.yml", text),
      limitError(
        "maxExpandedBytes",
        /^long\.yml:2:\d+: the YAML's values add up to more than 4 MiB once its aliases are expanded \(the alias \*s here repeats 488\.3 KiB\), .*\(maxExpandedBytes\)/,
      ),
    );
  });

  it("refuse an alias inside the node it repeats, a key that is not a plain value, and a second document", () => {
    assert.throws(
      () => parseBoundedYaml("loop.yml", "a: &x [1, *x]\n"),
      /^WorkflowError: loop\.yml:1:\d+: the alias \*x is inside/,
    );
    assert.throws(
      () => parseBoundedYaml("key.yml", "? [a]\n: b\n"),
      /key\.yml:1:\d+: a mapping key must be a plain value/,
    );
    assert.throws(() => parseBoundedYaml("two.yml", "a: 1\n---\nb: 2\n"), /two\.yml:2:1: a second YAML document/);
  });

  it("report YAML syntax errors once each, on one line, located", () => {
    assert.throws(
      () => parseBoundedYaml("bad.yml", "on: push\njobs:\n  a: [unclosed\n"),
      (err: unknown) => {
        assert.ok(err instanceof WorkflowError && !(err instanceof WorkflowLimitError));
        for (const p of err.problems) {
          assert.doesNotMatch(p.message, /\n|at line \d+/, "the location is said once, by file:line:col");
          assert.equal(p.file, "bad.yml");
          assert.ok(p.line !== undefined && p.col !== undefined);
        }
        return true;
      },
    );
  });

  it("measure how deep plain data nests without recursion", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 200_000; i++) deep = [deep];
    assert.equal(nestsDeeperThan(deep, 100), true);
    assert.equal(nestsDeeperThan({ a: [{ b: 1 }], c: "d" }, 3), false);
    assert.equal(nestsDeeperThan({ a: [{ b: [] }] }, 3), true);
  });
});
