import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import type { JobEvent } from "../../src/contract/job-event.js";
import { JobEvent as JobEventSchema } from "../../src/contract/job-event.js";
import { EventStream } from "../../src/orchestrator/event-stream.js";

function recorder(opts: { failFirst?: number } = {}) {
  const got: JobEvent[] = [];
  let failures = opts.failFirst ?? 0;
  return {
    got,
    sink: {
      async publishEvent(_replyTo: string, e: JobEvent) {
        if (failures > 0) {
          failures -= 1;
          throw new Error("broker down");
        }
        got.push(e);
      },
    },
  };
}

describe("job event stream", () => {
  it("stamps valid contract events with a monotonic seq starting at firstSeq", async () => {
    const r = recorder();
    const jobId = randomUUID();
    const s = new EventStream({ jobId, replyTo: "x", sink: r.sink, firstSeq: 5 });
    s.emit({ kind: "accepted", orchestrator: "h1" });
    s.emit({ kind: "step-started", step: 0, stage: "main", name: "build" });
    s.emit({ kind: "job-finished", result: "success", outputs: {} });
    await s.flush();
    assert.deepEqual(
      r.got.map((e) => e.seq),
      [5, 6, 7],
    );
    for (const e of r.got) assert.ok(JobEventSchema.safeParse(e).success);
    assert.equal(s.nextSeq, 8);
  });

  it("batches consecutive log lines of one step and flushes them before the next event", async () => {
    const r = recorder();
    const s = new EventStream({ jobId: randomUUID(), replyTo: "x", sink: r.sink, logFlushMs: 10_000 });
    for (let i = 0; i < 5; i++) s.log(0, "main", `line ${i}`);
    s.emit({ kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} });
    await s.flush();
    assert.equal(r.got.length, 2);
    const [log, fin] = r.got;
    assert.equal(log?.kind, "log");
    assert.deepEqual(log?.kind === "log" ? log.lines.map((l) => l.text) : [], [
      "line 0",
      "line 1",
      "line 2",
      "line 3",
      "line 4",
    ]);
    assert.equal(fin?.kind, "step-finished");
  });

  it("starts a new batch when the step changes and splits batches at the contract's line limit", async () => {
    const r = recorder();
    const s = new EventStream({ jobId: randomUUID(), replyTo: "x", sink: r.sink });
    for (let i = 0; i < 2_500; i++) s.log(0, "main", `a${i}`);
    s.log(1, "main", "b");
    await s.flush();
    const sizes = r.got.map((e) => (e.kind === "log" ? `${e.step}:${e.lines.length}` : e.kind));
    assert.deepEqual(sizes, ["0:1000", "0:1000", "0:500", "1:1"]);
  });

  it("sends lone log lines after the flush interval without an explicit flush", async () => {
    const r = recorder();
    const s = new EventStream({ jobId: randomUUID(), replyTo: "x", sink: r.sink, logFlushMs: 20 });
    s.log(null, "main", "booting");
    const deadline = Date.now() + 2_000;
    while (r.got.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
    assert.equal(r.got.length, 1);
  });

  it("reports a publish that failed for good and goes on", async () => {
    const r = recorder({ failFirst: 1 });
    const failed: number[] = [];
    const s = new EventStream({
      jobId: randomUUID(),
      replyTo: "x",
      sink: r.sink,
      onPublishError: (_e, ev) => failed.push(ev.seq),
    });
    s.emit({ kind: "heartbeat" });
    s.emit({ kind: "heartbeat" });
    await s.flush();
    assert.deepEqual(failed, [0]);
    assert.deepEqual(
      r.got.map((e) => e.seq),
      [1],
    );
  });
});
