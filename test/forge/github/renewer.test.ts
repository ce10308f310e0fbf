// The renewal cadence (pure): every interval while GitHub's lock is long, and well inside a lock
// shorter than two intervals, never spinning when the lock looks over already (clock skew).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MIN_RENEW_WAIT_MS, nextRenewalInMs } from "../../../src/forge/github/renewer.js";

describe("github renewal cadence", () => {
  const now = 1_000_000;

  it("renews every interval while the lock is long (GitHub's 10 minutes)", () => {
    assert.equal(nextRenewalInMs(now + 10 * 60_000, now, 60_000), 60_000);
  });

  it("renews at half the lock that is left when the lock is shorter than two intervals", () => {
    assert.equal(nextRenewalInMs(now + 60_000, now, 60_000), 30_000);
    assert.equal(nextRenewalInMs(now + 15_000, now, 60_000), 7_500);
  });

  it("never waits less than the floor, even for a lock that looks expired", () => {
    assert.equal(nextRenewalInMs(now - 5_000, now, 60_000), MIN_RENEW_WAIT_MS);
    assert.equal(nextRenewalInMs(now + 500, now, 60_000), MIN_RENEW_WAIT_MS);
  });

  it("keeps a configured interval below the floor (fast test timings)", () => {
    assert.equal(nextRenewalInMs(now + 600, now, 150), 150);
  });
});
