// strategy.matrix expansion as GitHub documents it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkflowError } from "../../src/workflow/errors.js";
import { expandMatrix, filterMatrix } from "../../src/workflow/matrix.js";

const where = { file: "ci.yml", job: "build" };

describe("matrix expansion", () => {
  it("is one empty combination without a matrix", () => {
    assert.deepEqual(expandMatrix(null, where), [{}]);
  });

  it("crosses the vectors, first key slowest", () => {
    assert.deepEqual(expandMatrix({ os: ["linux", "mac"], node: [18, 20] }, where), [
      { os: "linux", node: 18 },
      { os: "linux", node: 20 },
      { os: "mac", node: 18 },
      { os: "mac", node: 20 },
    ]);
  });

  it("removes combinations an exclude entry matches partially", () => {
    assert.deepEqual(
      expandMatrix({ os: ["linux", "mac"], node: [18, 20], exclude: [{ os: "mac", node: 18 }, { os: "bsd" }] }, where),
      [
        { os: "linux", node: 18 },
        { os: "linux", node: 20 },
        { os: "mac", node: 20 },
      ],
    );
  });

  it("adds include values to matching combinations and makes new ones for the rest", () => {
    // The example of GitHub's documentation.
    const combos = expandMatrix(
      {
        fruit: ["apple", "pear"],
        animal: ["cat", "dog"],
        include: [
          { color: "green" },
          { color: "pink", animal: "cat" },
          { fruit: "apple", shape: "circle" },
          { fruit: "banana" },
          { fruit: "banana", animal: "cat" },
        ],
      },
      where,
    );
    assert.deepEqual(combos, [
      { fruit: "apple", animal: "cat", color: "pink", shape: "circle" },
      { fruit: "apple", animal: "dog", color: "green", shape: "circle" },
      { fruit: "pear", animal: "cat", color: "pink" },
      { fruit: "pear", animal: "dog", color: "green" },
      { fruit: "banana" },
      { fruit: "banana", animal: "cat" },
    ]);
  });

  it("makes one combination per include entry when there are no vectors", () => {
    assert.deepEqual(expandMatrix({ include: [{ def: "val" }, { x: 1 }] }, where), [{ def: "val" }, { x: 1 }]);
  });

  it("compares nested values of exclude entries deeply", () => {
    assert.deepEqual(expandMatrix({ cfg: [{ a: 1 }, { a: 2 }], exclude: [{ cfg: { a: 1 } }] }, where), [
      { cfg: { a: 2 } },
    ]);
  });

  it("refuses an empty vector, a non-sequence vector, and a matrix that yields nothing", () => {
    assert.throws(
      () => expandMatrix({ os: [] }, where),
      /ci\.yml: jobs\.build\.strategy\.matrix: matrix vector 'os' does not contain any values/s,
    );
    assert.throws(() => expandMatrix({ os: "linux" }, where), WorkflowError);
    assert.throws(() => expandMatrix({ os: ["a"], exclude: [{ os: "a" }] }, where), /no job/);
  });

  it("refuses more than 256 combinations", () => {
    const v = Array.from({ length: 17 }, (_, i) => i);
    assert.throws(() => expandMatrix({ a: v, b: v }, where), /289 jobs; at most 256/);
  });

  it("filters combinations by value as text", () => {
    const combos = expandMatrix({ os: ["linux", "mac"], node: [18, 20] }, where);
    assert.deepEqual(filterMatrix(combos, { node: "20" }), [
      { os: "linux", node: 20 },
      { os: "mac", node: 20 },
    ]);
    assert.deepEqual(filterMatrix(combos, { os: "mac", node: "18" }), [{ os: "mac", node: 18 }]);
  });
});
