// The failed-login throttle, with the time passed in: a key may fail `failures` times within the
// period, is refused after that, and may try again once its oldest failure has aged out.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ADDRESS_LIMIT, AttemptLimiter, JOB_LIMIT } from "../../src/debug-ssh/attempt-limiter.js";

describe("attempt limiter", () => {
  it("allows five failures a minute from an address, then refuses it until the oldest is a minute old", () => {
    const l = new AttemptLimiter(ADDRESS_LIMIT);
    const t0 = 1_000_000;
    for (let i = 0; i < 5; i += 1) {
      assert.equal(l.allows("192.0.2.1", t0 + i * 1_000), true, `attempt ${i + 1}`);
      l.failed("192.0.2.1", t0 + i * 1_000);
    }
    assert.equal(l.allows("192.0.2.1", t0 + 5_000), false, "the sixth is throttled");
    assert.equal(l.retryAt("192.0.2.1", t0 + 5_000), t0 + 60_000);
    assert.equal(l.allows("192.0.2.2", t0 + 5_000), true, "another address is not");
    assert.equal(l.allows("192.0.2.1", t0 + 59_999), false);
    assert.equal(l.allows("192.0.2.1", t0 + 60_000), true, "the first failure aged out");
    l.failed("192.0.2.1", t0 + 60_000);
    assert.equal(l.allows("192.0.2.1", t0 + 60_001), false, "four recent ones and a new one make five again");
  });

  it("gives a job more failures than an address, from all addresses together", () => {
    assert.ok(JOB_LIMIT.failures > ADDRESS_LIMIT.failures);
    const l = new AttemptLimiter(JOB_LIMIT);
    for (let i = 0; i < JOB_LIMIT.failures; i += 1) l.failed("job", 0);
    assert.equal(l.allows("job", 1), false);
    assert.equal(l.allows("job", JOB_LIMIT.periodMs), true);
  });

  it("forgets keys whose failures are all older than the period", () => {
    const l = new AttemptLimiter({ failures: 2, periodMs: 100 });
    l.failed("a", 0);
    l.failed("b", 50);
    l.prune(120);
    assert.equal(l.size, 1, "only b has a recent failure");
    l.prune(200);
    assert.equal(l.size, 0);
  });
});
