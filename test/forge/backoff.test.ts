// The shared poll backoff: doubling from the base, capped, with ±20 % jitter.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffMs, jitter } from "../../src/forge/backoff.js";

describe("backoffMs", () => {
  const intervals = { baseMs: 2_000, maxMs: 60_000 };
  const table: [streak: number, ms: number][] = [
    [0, 2_000],
    [1, 2_000],
    [2, 4_000],
    [3, 8_000],
    [4, 16_000],
    [5, 32_000],
    [6, 60_000],
    [50, 60_000],
  ];
  for (const [streak, ms] of table)
    it(`waits ${ms} ms after a streak of ${streak}`, () => assert.equal(backoffMs(intervals, streak), ms));

  it("never waits longer than the maximum, even with a tiny maximum", () => {
    assert.equal(backoffMs({ baseMs: 100, maxMs: 150 }, 3), 150);
  });

  it("stops doubling after five steps so that huge streaks cannot overflow", () => {
    assert.equal(backoffMs({ baseMs: 1, maxMs: Number.MAX_SAFE_INTEGER }, 10_000), 32);
  });
});

describe("jitter", () => {
  it("spreads a delay over 80 % to 120 % of it", () => {
    assert.equal(
      jitter(1_000, () => 0),
      800,
    );
    assert.equal(
      jitter(1_000, () => 0.5),
      1_000,
    );
    assert.equal(
      jitter(1_000, () => 0.999_999),
      1_200,
    );
  });

  it("uses Math.random by default and stays in range", () => {
    for (let i = 0; i < 100; i += 1) {
      const ms = jitter(10_000);
      assert.ok(ms >= 8_000 && ms <= 12_000, `${ms} out of range`);
    }
  });
});
