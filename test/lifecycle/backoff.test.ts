// The one backoff of every retry loop: doubling from the base up to the cap, with ±20 % jitter that
// never passes the cap; the broker's reconnect default; and the forge pollers' defaults, which poll
// a forge that is back again within 10 s.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/load.js";
import { DEFAULT_TIMINGS } from "../../src/forge/github/runner.js";
import { backoffMs, jitter, nextDelayMs, randomBetween } from "../../src/lifecycle/backoff.js";
import { DEFAULT_RECONNECT_BACKOFF } from "../../src/queue/amqp-connection.js";

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

  it("doubles up to the maximum however far it is, and huge streaks cannot overflow", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 30].map((n) => backoffMs({ baseMs: 100, maxMs: 1_000 }, n)),
      [100, 200, 400, 800, 1_000, 1_000],
    );
    assert.equal(backoffMs({ baseMs: 100, maxMs: 15_000 }, 9), 15_000, "past 32 × base when the maximum is");
    assert.equal(backoffMs({ baseMs: 1, maxMs: Number.MAX_SAFE_INTEGER }, 10_000), 2 ** 30);
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
    assert.equal(
      jitter(1_000, () => 1),
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

describe("nextDelayMs", () => {
  it("jitters below the cap but never above it", () => {
    const intervals = { baseMs: 2_000, maxMs: 10_000 };
    assert.equal(
      nextDelayMs(intervals, 1, () => 0),
      1_600,
    );
    assert.equal(
      nextDelayMs(intervals, 3, () => 0.999_999),
      9_600,
    );
    assert.equal(
      nextDelayMs(intervals, 4, () => 0.999_999),
      10_000,
      "16 s jittered is capped",
    );
    assert.equal(
      nextDelayMs(intervals, 50, () => 0),
      8_000,
      "at the cap, jitter still spreads downwards",
    );
  });
});

describe("poll backoff after a forge outage", () => {
  const worstCase = (intervals: { baseMs: number; maxMs: number }) =>
    Math.max(...[1, 2, 3, 4, 5, 6, 10, 1_000].map((streak) => nextDelayMs(intervals, streak, () => 0.999_999)));

  it("polls a Forgejo that is back again within 10 s, however long the outage was (default settings)", () => {
    const f = loadConfig({ env: {} }).forgejo;
    assert.ok(worstCase({ baseMs: f.fetchInterval, maxMs: f.fetchIntervalMax }) <= 10_000);
  });

  it("polls a GitHub that is back again within 10 s, however long the outage was (default timings)", () => {
    assert.ok(worstCase(DEFAULT_TIMINGS.pollErrors) <= 10_000);
  });
});

describe("randomBetween", () => {
  it("spans the range from its minimum to its maximum", () => {
    assert.equal(
      randomBetween(1_000, 5_000, () => 0),
      1_000,
    );
    assert.equal(
      randomBetween(1_000, 5_000, () => 1),
      5_000,
    );
    assert.equal(
      randomBetween(1_000, 5_000, () => 0.5),
      3_000,
    );
  });
});

describe("broker reconnect backoff", () => {
  it("retries after 100 ms at first and reaches its 10 s cap after a few failures", () => {
    assert.deepEqual(
      [1, 2, 8, 50].map((n) => backoffMs(DEFAULT_RECONNECT_BACKOFF, n)),
      [100, 200, 10_000, 10_000],
    );
  });
});
