// The runner skeleton both forges share, on the in-process bus with a real in-flight file: a held
// job's events reach its reporter and nobody else's, a job nobody holds is stopped, what is held is
// on disk until it ended (or kept for the next process when the adapter says so), what a dead
// predecessor left is ended, and a drain waits until the deadline and then abandons what is left.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { pino } from "pino";
import type { Cancel } from "../../src/contract/cancel.js";
import type { JobEvent } from "../../src/contract/job-event.js";
import { HeldJobs, type Reporter } from "../../src/forge/held-jobs.js";
import { InFlightFile } from "../../src/forge/in-flight-file.js";
import { ORPHAN_REASON } from "../../src/forge/orphan-jobs.js";
import { Slots } from "../../src/lifecycle/slots.js";
import { MemoryBus } from "../../src/queue/memory.js";
import { until } from "../support/qemu-processes.js";

const log = pino({ level: "silent" });
const REPLY_TO = "forge-test";

interface Entry {
  readonly jobId: string;
  readonly note?: string;
}

/** A reporter the test ends by hand (or that ends itself when abandoned). */
class ScriptedReporter implements Reporter<string> {
  readonly jobId = randomUUID();
  readonly seen: JobEvent[] = [];
  abandoned: string | undefined;
  cancelReason: string | undefined;
  readonly done: Promise<string>;
  readonly #end: (how: string) => void;

  constructor() {
    let end!: (how: string) => void;
    this.done = new Promise((resolve) => {
      end = resolve;
    });
    this.#end = end;
  }

  apply(event: JobEvent): void {
    this.seen.push(event);
  }

  abandon(reason: string): void {
    this.abandoned = reason;
    this.cancelReason = reason;
    this.#end("abandoned");
  }

  end(how = "finished"): void {
    this.#end(how);
  }
}

const logEvent = (jobId: string, seq: number): JobEvent => ({
  v: 1,
  jobId,
  seq,
  t: 0,
  kind: "log",
  step: 0,
  stage: "main",
  lines: [{ t: 0, text: `line ${seq}` }],
});

async function setUp(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-held-"));
  const path = join(dir, "held.json");
  const bus = new MemoryBus();
  await bus.start();
  const cancels: Cancel[] = [];
  await bus.consumeCancels((c) => void cancels.push(c));
  const isEntry = (x: unknown): x is Entry => typeof (x as Entry | null)?.jobId === "string";
  const file = () => new InFlightFile<Entry>(path, isEntry, (e) => e.jobId, log);
  const held = new HeldJobs<ScriptedReporter, Entry>({ bus, log, inFlight: file(), jobIdOf: (e) => e.jobId });
  await held.listen(REPLY_TO);
  t.after(async () => {
    await held.settled();
    await held.close();
    await bus.stop(AbortSignal.timeout(1_000));
    await rm(dir, { recursive: true, force: true });
  });
  const onDisk = async (): Promise<Entry[]> =>
    (JSON.parse(await readFile(path, "utf8").catch(() => '{"held":[]}')) as { held: Entry[] }).held;
  return { bus, cancels, held, file, onDisk };
}

describe("the held jobs of a forge runner", () => {
  it("routes each job's events to its reporter, and stops a job nobody holds", async (t) => {
    const { bus, cancels, held } = await setUp(t);
    const slots = new Slots(2);
    const a = new ScriptedReporter();
    held.hold(a, { entry: { jobId: a.jobId }, slot: slots.tryAcquire()! });
    const stranger = randomUUID();
    await bus.publishEvent(REPLY_TO, logEvent(a.jobId, 0));
    await bus.publishEvent(REPLY_TO, logEvent(stranger, 0));
    await bus.publishEvent(REPLY_TO, logEvent(a.jobId, 1));
    await until(async () => a.seen.length === 2 && cancels.length === 1, "both events routed", 5_000, 10);
    assert.deepEqual(
      a.seen.map((e) => e.seq),
      [0, 1],
    );
    assert.deepEqual(
      cancels.map((c) => [c.jobId, c.reason]),
      [[stranger, ORPHAN_REASON]],
    );
    assert.equal(held.holds(a.jobId), true);
    a.end();
  });

  it("keeps a held job on disk until its reporter is done, then frees its slot and lets the adapter go on", async (t) => {
    const { held, onDisk } = await setUp(t);
    const slots = new Slots(1);
    const a = new ScriptedReporter();
    const ends: string[] = [];
    held.hold(a, { entry: { jobId: a.jobId }, slot: slots.tryAcquire()!, ended: (how) => ends.push(how) });
    await until(async () => (await onDisk()).some((e) => e.jobId === a.jobId), "the job on disk", 5_000, 10);
    assert.equal(slots.free, 0);
    a.end();
    await held.settled();
    assert.deepEqual(await onDisk(), []);
    assert.deepEqual([slots.free, held.size, ends], [1, 0, ["finished"]]);
  });

  it("keeps on disk what the adapter says the next process must still end", async (t) => {
    const { held, onDisk } = await setUp(t);
    const a = new ScriptedReporter();
    held.hold(a, {
      entry: { jobId: a.jobId },
      slot: new Slots(1).tryAcquire()!,
      keep: (how) => (how === "cut-short" ? { jobId: a.jobId, note: "complete me" } : undefined),
    });
    a.end("cut-short");
    await held.settled();
    assert.deepEqual(await onDisk(), [{ jobId: a.jobId, note: "complete me" }]);
  });

  it("stops a job it ended without its result again when its events keep coming", async (t) => {
    const { bus, cancels, held } = await setUp(t);
    const a = new ScriptedReporter();
    held.hold(a, { entry: { jobId: a.jobId }, slot: new Slots(1).tryAcquire()! });
    a.cancelReason = "the orchestrator stopped reporting";
    a.end();
    await held.settled();
    await bus.publishEvent(REPLY_TO, logEvent(a.jobId, 7)); // it runs on after all
    await until(async () => cancels.length === 1, "a Cancel", 5_000, 10);
    assert.deepEqual(
      cancels.map((c) => [c.jobId, c.reason]),
      [[a.jobId, "the orchestrator stopped reporting"]],
    );
  });

  it("ends what a dead predecessor left, stopping each job, and keeps on disk only what it could not end", async (t) => {
    const { cancels, held, file, onDisk } = await setUp(t);
    const ended = { jobId: randomUUID() };
    const kept = { jobId: randomUUID() };
    const before = file();
    await before.add(ended);
    await before.add(kept);
    const leftovers = await held.leftovers();
    assert.deepEqual(
      leftovers.map((e) => e.jobId),
      [ended.jobId, kept.jobId],
    );
    await held.endLeftovers(leftovers, async (e) => (e.jobId === ended.jobId ? "ended" : "kept"));
    await held.settled();
    assert.deepEqual(await onDisk(), [kept]);
    await until(async () => cancels.length === 2, "two Cancels", 5_000, 10);
    assert.deepEqual(cancels.map((c) => c.jobId).sort(), [ended.jobId, kept.jobId].sort());
  });

  it("drains: a job that ends in time is left alone, the rest is abandoned with the reason once the deadline passes", async (t) => {
    const { held } = await setUp(t);
    const slots = new Slots(2);
    const quick = new ScriptedReporter();
    const slow = new ScriptedReporter();
    for (const r of [quick, slow]) held.hold(r, { entry: { jobId: r.jobId }, slot: slots.tryAcquire()! });
    const deadline = new AbortController();
    const drained = held.drain(deadline.signal, "stopped before the job finished");
    quick.end();
    await quick.done;
    await new Promise((r) => setImmediate(r));
    assert.equal(slow.abandoned, undefined, "nothing is abandoned before the deadline");
    deadline.abort();
    await drained;
    assert.deepEqual([quick.abandoned, slow.abandoned], [undefined, "stopped before the job finished"]);
    assert.equal(held.size, 0);
  });
});
