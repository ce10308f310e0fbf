import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Capacity, DoesNotFitError } from "../../src/orchestrator/capacity.js";

const small = { cpus: 1, memoryMiB: 512 };

describe("host capacity", () => {
  it("tryReserve (a warm pool's) takes only what nobody waits for, and never queues", async () => {
    const c = new Capacity({ maxVms: 2, cpus: 4, memoryMiB: 1024 });
    const pooled = c.tryReserve(small);
    assert.ok(pooled, "free capacity is taken at once");
    assert.equal(c.usedVms, 1);
    const job = await c.reserve("l", small);
    assert.equal(c.tryReserve(small), undefined, "full: nothing, and nothing waits");
    assert.equal(c.waiting, 0);
    const ac = new AbortController();
    const waiting = c.reserve("l", small, ac.signal);
    assert.equal(c.waiting, 1);
    job.release();
    const got = await waiting;
    pooled.release();
    assert.equal(c.waiting, 0);
    assert.ok(c.tryReserve(small), "free again once the pooled VM gave its place up");
    got.release();
  });

  it("counts free VMs for the queue prefetch", async () => {
    const c = new Capacity({ maxVms: 2, cpus: 4, memoryMiB: 4096 });
    assert.equal(c.freeVms, 2);
    const a = await c.reserve("l", small);
    assert.equal(c.freeVms, 1);
    a.release();
    a.release();
    assert.equal(c.freeVms, 2);
  });

  it("tells whether a job would wait: free VM slots are not enough when memory or CPUs are taken", async () => {
    const c = new Capacity({ maxVms: 4, cpus: 4, memoryMiB: 1024 });
    assert.equal(c.wouldWait({ cpus: 1, memoryMiB: 768 }), false);
    const a = await c.reserve("l", { cpus: 1, memoryMiB: 768 });
    assert.equal(c.freeVms, 3);
    assert.equal(c.wouldWait({ cpus: 1, memoryMiB: 512 }), true);
    assert.equal(c.wouldWait({ cpus: 1, memoryMiB: 256 }), false);
    a.release();
  });

  it("makes a job wait until memory frees, first come first served", async () => {
    const c = new Capacity({ maxVms: 4, cpus: 4, memoryMiB: 1024 });
    const a = await c.reserve("l", { cpus: 1, memoryMiB: 768 });
    const order: string[] = [];
    const big = c.reserve("l", { cpus: 1, memoryMiB: 1024 }).then((r) => {
      order.push("big");
      return r;
    });
    const tiny = c.reserve("l", { cpus: 1, memoryMiB: 128 }).then((r) => {
      order.push("tiny");
      return r;
    });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, []);
    assert.equal(c.wouldWait({ cpus: 1, memoryMiB: 64 }), true, "behind the waiting ones");
    a.release();
    (await big).release();
    (await tiny).release();
    assert.deepEqual(order, ["big", "tiny"]);
  });

  it("refuses at once an image larger than the whole budget, saying what to change", async () => {
    const c = new Capacity({ maxVms: 1, cpus: 2, memoryMiB: 1024 });
    await assert.rejects(
      c.reserve("omnios", { cpus: 4, memoryMiB: 512 }),
      (e: unknown) => e instanceof DoesNotFitError && /orchestrator\.cpus/.test(e.message),
    );
  });

  it("stops waiting when the signal aborts and gives the place up", async () => {
    const c = new Capacity({ maxVms: 1, cpus: 2, memoryMiB: 1024 });
    const a = await c.reserve("l", small);
    const ac = new AbortController();
    const waiting = c.reserve("l", small, ac.signal);
    assert.equal(c.freeVms, 0);
    ac.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
    a.release();
    assert.equal(c.freeVms, 1);
  });
});
