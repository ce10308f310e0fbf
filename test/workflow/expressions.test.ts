// Template tokens and their evaluation with @actions/expressions.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SerializedToken } from "../../src/contract/template-token.js";
import { ExpressionFailedError } from "../../src/workflow/errors.js";
import {
  coerceString,
  evaluateCondition,
  evaluateExpression,
  evaluateNumber,
  evaluateStringMap,
  evaluateToken,
  type Scope,
  statusFunctions,
} from "../../src/workflow/expressions.js";
import { toSerializedToken, toTemplateToken } from "../../src/workflow/tokens.js";

const scope: Scope = {
  contexts: {
    github: { event_name: "push", event: { commits: [{ id: "a" }, { id: "b" }] } },
    matrix: { node: 18, os: "linux" },
    env: { NAME: "world" },
  },
};

describe("template tokens", () => {
  it("survive a round trip through the contract's serialized form", () => {
    const wire: SerializedToken = {
      type: 2,
      map: [
        { Key: "a", Value: { type: 3, expr: "format('x{0}', 1)" } },
        { Key: { type: 4, expr: "insert" }, Value: { type: 2, map: [{ Key: "b", Value: true }] } },
        { Key: "c", Value: { type: 1, seq: [1, "two", null, false] } },
      ],
    };
    assert.deepEqual(toSerializedToken(toTemplateToken(wire)), wire);
  });

  it("accept GitHub's long forms of literals", () => {
    const parsed = SerializedToken.parse({
      type: 1,
      seq: [{ type: 0, lit: "s", file: 1, line: 2, col: 3 }, { type: 5, bool: true }, { type: 6, num: 4 }, { type: 7 }],
    });
    assert.deepEqual(evaluateToken(parsed, scope), ["s", true, 4, null]);
  });
});

describe("expressions", () => {
  it("evaluate against the contexts, case-insensitively, with GitHub's functions", () => {
    assert.equal(evaluateExpression("format('hello {0}', env.name)", scope), "hello world");
    assert.equal(evaluateExpression("MATRIX.Node == 18 && startsWith(matrix.os, 'lin')", scope), true);
    assert.deepEqual(evaluateExpression("github.event.commits.*.id", scope), ["a", "b"]);
    assert.equal(evaluateExpression("toJSON(matrix)", scope), '{\n  "node": 18,\n  "os": "linux"\n}');
    assert.equal(evaluateExpression("github.nope.deeper", scope), null);
  });

  it("evaluate a template: splice arrays from expressions into sequences, merge insert mappings, evaluate keys", () => {
    const token: SerializedToken = {
      type: 2,
      map: [
        { Key: "list", Value: { type: 1, seq: ["first", { type: 3, expr: "fromJSON('[1,2]')" }] } },
        { Key: { type: 4, expr: "insert" }, Value: { type: 3, expr: 'fromJSON(\'{"k":"v"}\')' } },
        { Key: { type: 3, expr: "matrix.os" }, Value: { type: 3, expr: "matrix.node" } },
      ],
    };
    assert.deepEqual(evaluateToken(token, scope), { list: ["first", 1, 2], k: "v", linux: 18 });
  });

  it("coerce values in string positions as GitHub prints them", () => {
    assert.deepEqual(
      [coerceString(18), coerceString(1.5), coerceString(true), coerceString(null), coerceString("s")],
      ["18", "1.5", "true", "", "s"],
    );
    assert.deepEqual(
      evaluateStringMap({ type: 2, map: [{ Key: "N", Value: { type: 3, expr: "matrix.node" } }] }, scope),
      { N: "18" },
    );
  });

  it("read numbers from numbers and numeric strings, and refuse anything else with the value", () => {
    assert.equal(evaluateNumber({ type: 3, expr: "'2.5'" }, scope, "timeout-minutes"), 2.5);
    assert.throws(
      () => evaluateNumber("soon", scope, "timeout-minutes"),
      /timeout-minutes must be a number, got "soon"/,
    );
  });

  it("report an unknown function or a bad expression as ExpressionFailedError naming it", () => {
    assert.throws(
      () => evaluateExpression("nosuch(1)", scope),
      (err: unknown) =>
        err instanceof ExpressionFailedError && /nosuch\(1\).*Unrecognized function: 'nosuch'/.test(err.message),
    );
    assert.throws(() => evaluateExpression("fromJSON('{')", scope), ExpressionFailedError);
    assert.throws(() => evaluateExpression("secrets.X", scope), /Unrecognized named-value: 'secrets'/);
  });

  it("call the status functions a scope provides", () => {
    const s: Scope = {
      ...scope,
      functions: statusFunctions({ success: () => false, failure: () => true, cancelled: () => false }),
    };
    assert.equal(evaluateCondition("failure() && !cancelled()", s), true);
    assert.equal(evaluateCondition("success()", s), false);
    assert.equal(evaluateCondition("always()", s), true);
  });
});
