// Output bytes into lines: endings, UTF-8 split across chunks, and lines too long to keep whole.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LineSplitter, MAX_LINE_CHARS } from "../../src/executor/lines.js";

function split(chunks: readonly (string | Buffer)[], max?: number): string[] {
  const out: string[] = [];
  const s = new LineSplitter((l) => out.push(l), max);
  for (const c of chunks) s.push(typeof c === "string" ? Buffer.from(c) : c);
  s.end();
  return out;
}

describe("line splitting", () => {
  it("drops \\n and \\r\\n endings, keeps empty lines and a last unterminated line", () => {
    assert.deepEqual(split(["a\nb\r\n\nc"]), ["a", "b", "", "c"]);
    assert.deepEqual(split(["par", "t\r", "\nx\n"]), ["part", "x"]);
  });

  it("decodes a character whose bytes arrive in two chunks", () => {
    const euro = Buffer.from("€\n");
    assert.deepEqual(split([euro.subarray(0, 1), euro.subarray(1)]), ["€"]);
  });

  it("cuts a line longer than the limit into pieces of the limit, in order, nothing lost", () => {
    assert.deepEqual(split(["abcdefghij\n"], 4), ["abcd", "efgh", "ij"]);
    assert.deepEqual(split(["abcd\n"], 4), ["abcd"], "a line of exactly the limit stays whole");
    assert.deepEqual(split(["abcd\r\n"], 4), ["abcd"], "also with a CRLF ending");
    assert.deepEqual(split(["ab", "cd", "ef", "gh", "i"], 4), ["abcd", "efgh", "i"]);
  });

  it("cuts after the last blank of a piece, so a token is never split (masking works per line)", () => {
    assert.deepEqual(split(["aa bb cccc dd\n"], 8), ["aa bb ", "cccc dd"]);
    assert.deepEqual(
      split(["aaa bbbbbbbbbb\n"], 8),
      ["aaa bbbb", "bbbbbb"],
      "a blank in the first half is no cut point",
    );
  });

  // How fast (linear, not quadratic in the pending text) is measured by bench/lines.ts.
  it("cuts megabytes without a newline into pieces of at most the limit, nothing lost", () => {
    const chunk = Buffer.alloc(64 * 1024, "x");
    const out = split(Array.from({ length: 160 }, () => chunk)); // 10 MiB
    assert.equal(out.join("").length, 10 * 1024 * 1024);
    assert.ok(out.every((l) => l.length <= MAX_LINE_CHARS));
    assert.equal(out.length, 10, "pieces of exactly the limit when there is no blank");
  });
});
