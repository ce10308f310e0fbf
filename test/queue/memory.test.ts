// The in-process bus: the shared JobBus contract on one in-process broker, plus what only it has.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobRequest } from "../../src/contract/job-request.js";
import { MemoryBroker, MemoryBus } from "../../src/queue/memory.js";
import { type BusHarness, jobBusContract, type TestBus } from "./bus-contract.js";
import { job, uid, until } from "./helpers.js";

jobBusContract("in-process", async (t) => {
  const broker = new MemoryBroker();
  const harness: BusHarness = {
    bus: async () => {
      const bus: TestBus = new MemoryBus({ broker });
      await bus.start();
      t.after(() => bus.stop(AbortSignal.timeout(5_000)));
      return bus;
    },
    label: () => `l-${uid()}`,
    instance: () => `i-${uid()}`,
    readyJobs: async (label) => broker.readyCount(`jobs.${label}`),
  };
  return harness;
});

describe("in-process bus", () => {
  it("keeps only the newest dead letters beyond its limit", async (t) => {
    const broker = new MemoryBroker({ maxDeadLetters: 2 });
    const bus = new MemoryBus({ broker });
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(1_000)));
    const bad = (n: number) => ({ ...job("l"), id: `not-a-uuid-${n}` }) as unknown as JobRequest;
    for (const n of [1, 2, 3]) await bus.publishJob(bad(n));
    // Recorded, not thrown: the bus catches (and only logs) what a job callback throws.
    const reached: string[] = [];
    const c = await bus.consumeJobs(["l"], 1, (d) => reached.push(d.request.id));
    t.after(() => c.cancel());
    await until(async () => (await bus.peekDeadLetters()).some((d) => d.messageId === "not-a-uuid-3"), "the third");
    assert.deepEqual(
      (await bus.peekDeadLetters()).map((d) => d.messageId),
      ["not-a-uuid-2", "not-a-uuid-3"],
    );
    assert.deepEqual(reached, [], "no invalid job reached the consumer");
  });
});
