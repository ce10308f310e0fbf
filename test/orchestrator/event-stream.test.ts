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

  it("sends a heartbeat every interval once started, and none after job-finished", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(1_000)));
    const got: JobEvent[] = [];
    await bus.consumeEvents("beats", (d) => {
      got.push(d.event);
      void d.ack();
    });
    const s = new EventStream({ jobId: randomUUID(), replyTo: "beats", sink: bus });
    s.emit({ kind: "accepted", orchestrator: "h1", heartbeatMs: 50 });
    s.startHeartbeat(50);
    s.startHeartbeat(50); // a second start changes nothing
    const beats = () => got.filter((e) => e.kind === "heartbeat").length;
    while (beats() < 3) await new Promise((r) => setTimeout(r, 10));
    s.emit({ kind: "job-finished", result: "success", outputs: {} });
    await s.flush();
    while (!got.some((e) => e.kind === "job-finished")) await new Promise((r) => setTimeout(r, 10));
    const atEnd = got.length;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.length, atEnd, "nothing after job-finished");
    assert.deepEqual(
      got.map((e) => e.seq),
      got.map((_, i) => i),
      "heartbeats take their place in the seq",
    );
    assert.equal(got.at(-1)?.kind, "job-finished");
    for (const e of got) assert.ok(JobEvent.safeParse(e).success);
  });

  it("stopHeartbeat stops the heartbeats of a job it hands back without a result", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(1_000)));
    const s = new EventStream({ jobId: randomUUID(), replyTo: "quiet", sink: bus });
    s.startHeartbeat(20);
    await new Promise((r) => setTimeout(r, 70));
    s.stopHeartbeat();
    const sent = s.nextSeq;
    assert.ok(sent >= 2, `beat ${sent} times in 70 ms`);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(s.nextSeq, sent);
  });
});
