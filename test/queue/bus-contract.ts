// The behaviour every JobBus must have, as node:test cases: call jobBusContract() with a harness for
// the implementation under test (the in-process bus, and RabbitMQ). Several bus instances on one
// harness share one broker, like several processes connected to one RabbitMQ.
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import type { Cancel } from "../../src/contract/cancel.js";
import type { JobEvent } from "../../src/contract/job-event.js";
import type { JobRequest } from "../../src/contract/job-request.js";
import type { JobBus, JobDelivery } from "../../src/queue/bus.js";
import type { DeadLetterInspector } from "../../src/queue/dead-letters.js";
import { BusStoppedError } from "../../src/queue/errors.js";
import { event, holdsFor, job, Recorder, until } from "./helpers.js";

export type TestBus = JobBus & DeadLetterInspector;

export interface BusHarness {
  /** A started bus on the harness's broker; stopped when the test ends. */
  bus(): Promise<TestBus>;
  /** A label / runner instance name of this test alone. */
  label(): string;
  instance(): string;
  /** Jobs waiting in a label's queue, not delivered to anyone. */
  readyJobs(label: string): Promise<number>;
}

export type HarnessFactory = (t: TestContext) => Promise<BusHarness>;

const ids = (ds: readonly JobDelivery[]): string[] => ds.map((d) => d.request.id);

async function publishAll(bus: JobBus, jobs: readonly JobRequest[]): Promise<void> {
  await Promise.all(jobs.map((j) => bus.publishJob(j)));
}

export function jobBusContract(name: string, harness: HarnessFactory): void {
  describe(`JobBus contract: ${name}`, () => {
    it("delivers the jobs of one label in the order they were published, also to a consumer that came later", async (t) => {
      const h = await harness(t);
      const [forge, orchestrator] = [await h.bus(), await h.bus()];
      const label = h.label();
      const jobs = Array.from({ length: 30 }, () => job(label));
      for (const j of jobs) await forge.publishJob(j); // strictly one after the other: a defined order
      const got = new Recorder<JobDelivery>();
      const c = await orchestrator.consumeJobs([label], 4, (d) => {
        got.push(d);
        void d.ack();
      });
      t.after(() => c.cancel());
      assert.deepEqual(
        ids(await got.count(30)),
        jobs.map((j) => j.id),
      );
      assert.ok(
        got.items.every((d) => !d.redelivered),
        "first deliveries are not marked redelivered",
      );
    });

    it("gives the jobs a consumer held unacknowledged to another consumer, marked redelivered, when it is cancelled", async (t) => {
      const h = await harness(t);
      const [forge, a, b] = [await h.bus(), await h.bus(), await h.bus()];
      const label = h.label();
      const jobs = Array.from({ length: 3 }, () => job(label));
      await publishAll(forge, jobs);
      const heldByA = new Recorder<JobDelivery>();
      const ca = await a.consumeJobs([label], 3, heldByA.push);
      await heldByA.count(3, "A to hold all three jobs");
      const gotB = new Recorder<JobDelivery>();
      const cb = await b.consumeJobs([label], 10, (d) => {
        gotB.push(d);
        void d.ack();
      });
      t.after(() => cb.cancel());
      await ca.cancel();
      const again = await gotB.count(3, "B to receive A's jobs");
      assert.deepEqual(ids(again), ids(heldByA.items), "they come back to the front, in their order");
      assert.ok(again.every((d) => d.redelivered));
      // A's late ack is harmless: the job is B's now.
      await heldByA.items[0]!.ack();
    });

    it("redelivers the jobs a consumer held when its whole bus stops", async (t) => {
      const h = await harness(t);
      const [forge, dying, survivor] = [await h.bus(), await h.bus(), await h.bus()];
      const label = h.label();
      const jobs = Array.from({ length: 2 }, () => job(label));
      await publishAll(forge, jobs);
      const held = new Recorder<JobDelivery>();
      await dying.consumeJobs([label], 5, held.push);
      await held.count(2);
      await dying.stop(AbortSignal.timeout(5_000));
      const got = new Recorder<JobDelivery>();
      const c = await survivor.consumeJobs([label], 5, (d) => {
        got.push(d);
        void d.ack();
      });
      t.after(() => c.cancel());
      const again = await got.count(2);
      assert.deepEqual(new Set(ids(again)), new Set(jobs.map((j) => j.id)));
      assert.ok(again.every((d) => d.redelivered));
    });

    it("never holds more jobs than its prefetch across all its labels, and follows setPrefetch at once", async (t) => {
      const h = await harness(t);
      const [forge, orchestrator] = [await h.bus(), await h.bus()];
      const [l1, l2] = [h.label(), h.label()];
      await publishAll(forge, [
        ...Array.from({ length: 5 }, () => job(l1)),
        ...Array.from({ length: 5 }, () => job(l2)),
      ]);
      const held = new Set<JobDelivery>();
      const all = new Recorder<JobDelivery>();
      let limit = 3;
      let overLimit = 0;
      const c = await orchestrator.consumeJobs([l1, l2], 3, (d) => {
        held.add(d);
        if (held.size > limit) overLimit += 1;
        all.push(d);
      });
      t.after(() => c.cancel());
      const ack = async (n: number) => {
        for (const d of [...held].slice(0, n)) {
          held.delete(d);
          await d.ack();
        }
      };
      const ready = async () => (await h.readyJobs(l1)) + (await h.readyJobs(l2));

      await all.count(3);
      await holdsFor(300, async () => {
        assert.equal(held.size, 3);
        assert.equal(await ready(), 7, "the rest stay in their queues for other orchestrators");
      });

      limit = 5;
      await c.setPrefetch(5);
      await all.count(5, "two more after raising the prefetch to 5");
      await until(async () => (await ready()) === 5, "five are left");

      limit = 1;
      await c.setPrefetch(1);
      await ack(4); // 1 still held: at the limit
      await holdsFor(300, async () => {
        assert.equal(all.items.length, 5, "no delivery while held ≥ prefetch");
      });
      await ack(1);
      await all.count(6, "exactly one more once nothing is held");
      await holdsFor(200, () => assert.equal(all.items.length, 6));

      limit = 0;
      await c.setPrefetch(0);
      await ack(1);
      await holdsFor(300, async () => {
        assert.equal(all.items.length, 6, "prefetch 0 pauses");
        assert.equal(await ready(), 4);
      });

      limit = 10;
      await c.setPrefetch(10);
      await all.count(10, "the rest after resuming");
      assert.equal(overLimit, 0, "never more held than the prefetch at the time");
      assert.equal(new Set(ids(all.items)).size, 10, "each job once");
      assert.ok(
        all.items.every((d) => !d.redelivered),
        "nothing was bounced back to a queue",
      );
      await ack(held.size);
    });

    it("applies a lower prefetch set inside the callback at once, and still hands over every job exactly once", async (t) => {
      const h = await harness(t);
      const [forge, orchestrator] = [await h.bus(), await h.bus()];
      const label = h.label();
      const jobs = Array.from({ length: 10 }, () => job(label));
      const got = new Recorder<JobDelivery>();
      let held = 0;
      let maxHeld = 0;
      let consumer: { setPrefetch(n: number): Promise<void> } | undefined;
      const c = await orchestrator.consumeJobs([label], 10, (d) => {
        held += 1;
        maxHeld = Math.max(maxHeld, held);
        got.push(d);
        // The first job makes this orchestrator go down to one slot; up to nine more may be in flight.
        if (got.items.length === 1) void consumer?.setPrefetch(1);
        if (got.items.length > 1)
          setImmediate(() => {
            held -= 1;
            void d.ack();
          });
      });
      consumer = c;
      t.after(() => c.cancel());
      for (const j of jobs) await forge.publishJob(j); // to a consumer that is already waiting
      await got.count(1);
      await holdsFor(200, () => assert.equal(got.items.length, 1, "nothing more while the one slot is taken"));
      held -= 1;
      await got.items[0]!.ack();
      const all = await got.count(10);
      assert.equal(maxHeld, 1, "never two at once after lowering to one");
      // A job on its way when the limit dropped may come back redelivered, a place late (RabbitMQ
      // returns deliveries in transit to a cancelled consumer); none is lost or handed over twice.
      assert.equal(all[0]!.request.id, jobs[0]!.id);
      assert.deepEqual(new Set(ids(all)), new Set(jobs.map((j) => j.id)));
      await holdsFor(200, () => assert.equal(got.items.length, 10, "and nothing twice"));
    });

    it("dead-letters a message it cannot decode with the reason, never hands it over, and goes on", async (t) => {
      const h = await harness(t);
      const [forge, orchestrator] = [await h.bus(), await h.bus()];
      const label = h.label();
      const fromTheFuture = { ...job(label), v: 2 } as unknown as JobRequest; // as a newer gnomon would publish
      const good = job(label);
      await forge.publishJob(fromTheFuture);
      await forge.publishJob(good);
      const got = new Recorder<JobDelivery>();
      const c = await orchestrator.consumeJobs([label], 1, (d) => {
        got.push(d);
        void d.ack();
      });
      t.after(() => c.cancel());
      assert.deepEqual(ids(await got.count(1)), [good.id]);
      await until(async () => (await orchestrator.peekDeadLetters()).length === 1, "one dead letter");
      const [dead] = await orchestrator.peekDeadLetters();
      assert.equal(dead!.messageId, fromTheFuture.id);
      assert.match(dead!.reason, /version 2 is not supported/);
      assert.match(dead!.source, new RegExp(`jobs\\.${label}$`));
      assert.equal(JSON.parse(dead!.body).id, fromTheFuture.id, "the body is kept as it was");
      assert.equal(got.items.length, 1);
    });

    it("dead-letters a job its consumer rejects, with the consumer's reason", async (t) => {
      const h = await harness(t);
      const [forge, orchestrator] = [await h.bus(), await h.bus()];
      const label = h.label();
      const j = job(label);
      await forge.publishJob(j);
      const got = new Recorder<JobDelivery>();
      const c = await orchestrator.consumeJobs([label], 1, got.push);
      t.after(() => c.cancel());
      const [d] = await got.count(1);
      await d!.nack({ requeue: false, reason: "runs-on label has no image" });
      const dead = await orchestrator.peekDeadLetters();
      assert.deepEqual(
        dead.map((x) => [x.messageId, x.reason]),
        [[j.id, "runs-on label has no image"]],
      );
      assert.equal(await h.readyJobs(label), 0);
    });

    it("puts a job nacked with requeue at the back of its queue, marked redelivered", async (t) => {
      const h = await harness(t);
      const [forge, orchestrator] = [await h.bus(), await h.bus()];
      const label = h.label();
      const jobs = Array.from({ length: 3 }, () => job(label));
      for (const j of jobs) await forge.publishJob(j);
      const got = new Recorder<JobDelivery>();
      let first = true;
      const c = await orchestrator.consumeJobs([label], 1, (d) => {
        got.push(d);
        if (first) {
          first = false;
          void d.nack({ requeue: true });
        } else void d.ack();
      });
      t.after(() => c.cancel());
      const seen = await got.count(4);
      assert.deepEqual(ids(seen), [jobs[0]!.id, jobs[1]!.id, jobs[2]!.id, jobs[0]!.id]);
      assert.deepEqual(
        seen.map((d) => d.redelivered),
        [false, false, false, true],
      );
    });

    it("counts the consumers that serve a label, busy or idle, from any bus; none once they cancel", async (t) => {
      const h = await harness(t);
      const [forge, a, b] = [await h.bus(), await h.bus(), await h.bus()];
      const [label, other] = [h.label(), h.label()];
      assert.equal(await forge.jobConsumers(label), 0, "nobody serves a label nobody consumed");
      const heldByA = new Recorder<JobDelivery>();
      const ca = await a.consumeJobs([label, other], 1, heldByA.push);
      const cb = await b.consumeJobs([label], 1, (d) => void d.ack());
      await until(async () => (await forge.jobConsumers(label)) === 2, "two consumers of the label");
      assert.equal(await forge.jobConsumers(other), 1);
      // A full consumer (prefetch used up, or paused) still serves its labels.
      await forge.publishJob(job(other));
      await heldByA.count(1, "A to hold a job");
      await ca.setPrefetch(0);
      assert.equal(await forge.jobConsumers(other), 1, "a busy consumer still counts");
      await ca.cancel();
      await until(async () => (await forge.jobConsumers(other)) === 0, "no consumer of the other label");
      assert.equal(await forge.jobConsumers(label), 1);
      await cb.cancel();
      await until(async () => (await forge.jobConsumers(label)) === 0, "no consumer left");
    });

    it("keeps a runner instance's events while nobody consumes them, and hands back unacked ones", async (t) => {
      const h = await harness(t);
      const [orchestrator, runner1, runner2] = [await h.bus(), await h.bus(), await h.bus()];
      const instance = h.instance();
      const other = h.instance();
      const jobId = job("x").id;
      for (let seq = 0; seq < 5; seq++) await orchestrator.publishEvent(instance, event(jobId, seq));
      await orchestrator.publishEvent(other, event(jobId, 99)); // another instance's stream stays apart
      const first = new Recorder<JobEvent>();
      const sub1 = await runner1.consumeEvents(instance, (d) => {
        first.push(d.event);
        if (d.event.seq < 3) void d.ack();
      });
      assert.deepEqual(
        (await first.count(5)).map((e) => e.seq),
        [0, 1, 2, 3, 4],
      );
      await sub1.cancel(); // 3 and 4 were never acked
      for (let seq = 5; seq < 8; seq++) await orchestrator.publishEvent(instance, event(jobId, seq));
      const second = new Recorder<JobEvent>();
      const sub2 = await runner2.consumeEvents(instance, (d) => {
        second.push(d.event);
        void d.ack();
      });
      t.after(() => sub2.cancel());
      assert.deepEqual(
        (await second.count(5)).map((e) => e.seq),
        [3, 4, 5, 6, 7],
      );
      await holdsFor(200, () => assert.equal(second.items.length, 5, "nothing of the other instance"));
    });

    it("broadcasts a cancellation to every subscriber, and not to one that unsubscribed", async (t) => {
      const h = await harness(t);
      const [forge, o1, o2] = [await h.bus(), await h.bus(), await h.bus()];
      const got1 = new Recorder<Cancel>();
      const got2 = new Recorder<Cancel>();
      const s1 = await o1.consumeCancels(got1.push);
      const s2 = await o2.consumeCancels(got2.push);
      t.after(() => s2.cancel());
      const c1: Cancel = { v: 1, jobId: job("x").id, reason: "cancelled on Forgejo", t: Date.now() };
      await forge.publishCancel(c1);
      assert.deepEqual(await got1.count(1), [c1]);
      assert.deepEqual(await got2.count(1), [c1]);
      await s1.cancel();
      const c2: Cancel = { ...c1, jobId: job("x").id };
      await forge.publishCancel(c2);
      assert.deepEqual(await got2.count(2), [c1, c2]);
      assert.deepEqual(got1.items, [c1]);
    });

    it("refuses work after stop with an error that says so", async (t) => {
      const h = await harness(t);
      const bus = await h.bus();
      assert.equal(bus.connected, true, "a started bus is connected");
      assert.deepEqual(bus.status(), { state: "ready", detail: "connected" }, "and says so");
      await bus.stop(AbortSignal.timeout(5_000));
      assert.equal(bus.connected, false, "a stopped bus is not");
      assert.equal(bus.status().state, "stopped");
      await bus.stop(AbortSignal.timeout(5_000)); // idempotent
      assert.equal(await bus.done, undefined, "a requested stop ends without an error");
      await assert.rejects(bus.publishJob(job(h.label())), BusStoppedError);
      await assert.rejects(async () => bus.consumeJobs([h.label()], 1, () => {}), BusStoppedError);
    });
  });
}
