import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { JobEvent } from "../../src/contract/job-event.js";
import { EventStream } from "../../src/orchestrator/event-stream.js";
import { MemoryBus } from "../../src/queue/memory.js";

async function collect(bus: MemoryBus, replyTo: string, n: number): Promise<JobEvent[]> {
  const got: JobEvent[] = [];
  const deadline = AbortSignal.timeout(5_000);
  await new Promise<void>((resolve, reject) => {
    deadline.addEventListener("abort", () => reject(new Error(`only ${got.length} of ${n} events arrived`)));
    void bus.consumeEvents(replyTo, (d) => {
      got.push(d.event);
      void d.ack();
      if (got.length === n) resolve();
    });
  });
  return got;
}

describe("job event stream", () => {
  it("publishes valid contract events in order with a monotonic seq from firstSeq", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(1_000)));
    const jobId = randomUUID();
    const s = new EventStream({ jobId, replyTo: "runner-a", sink: bus, firstSeq: 5 });
    s.emit({ kind: "accepted", orchestrator: "h1" });
    s.log("booting test…");
    s.emit({ kind: "job-finished", result: "success", outputs: {} });
    await s.flush();
    const got = await collect(bus, "runner-a", 3);
    assert.deepEqual(
      got.map((e) => [e.seq, e.kind]),
      [
        [5, "accepted"],
        [6, "log"],
        [7, "job-finished"],
      ],
    );
    for (const e of got) assert.ok(JobEvent.safeParse(e).success);
    assert.equal(s.nextSeq, 8);
  });

  it("sends nothing after job-finished", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(1_000)));
    const s = new EventStream({ jobId: randomUUID(), replyTo: "r", sink: bus });
    s.emit({ kind: "job-finished", result: "failure", outputs: {}, reason: "boom" });
    s.log("late line");
    await s.flush();
    assert.ok(s.finished);
    assert.equal(s.nextSeq, 1);
  });

  it("reports a publish that failed for good and goes on", async () => {
    const failed: number[] = [];
    let calls = 0;
    const sink = {
      async publishEvent() {
        calls += 1;
        if (calls === 1) throw new Error("broker down");
      },
    };
    const s = new EventStream({
      jobId: randomUUID(),
      replyTo: "x",
      sink,
      onPublishError: (_e, ev) => failed.push(ev.seq),
    });
    s.emit({ kind: "heartbeat" });
    s.emit({ kind: "heartbeat" });
    await s.flush();
    assert.deepEqual(failed, [0]);
    assert.equal(calls, 2);
  });
});
