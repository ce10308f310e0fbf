// The RabbitMQ bus against the real broker on this machine: the shared JobBus contract, plus what
// only RabbitMQ has (raw poison messages, credit across labels, topology conflicts, start failures).
// Every test has a queue prefix of its own and deletes what it created; the file ends with a leak check.
import assert from "node:assert/strict";
import { after, describe, it, type TestContext } from "node:test";
import { AmqpBus, type AmqpBusOptions } from "../../src/queue/amqp.js";
import { amqpTopology } from "../../src/queue/amqp-topology.js";
import type { JobDelivery } from "../../src/queue/bus.js";
import { REASON_HEADER } from "../../src/queue/dead-letters.js";
import { BrokerUnreachableError, PublishRefusedError, TopologyConflictError } from "../../src/queue/errors.js";
import { capturedLog, WARN } from "../support/captured-log.js";
import {
  deleteTopology,
  leftovers,
  queuePolicy,
  RABBIT_URL,
  rawChannel,
  readyMessages,
  testPrefix,
} from "../support/rabbit.js";
import { within } from "../support/within.js";
import { type BusHarness, jobBusContract } from "./bus-contract.js";
import { event, holdsFor, job, Recorder, uid, until } from "./helpers.js";

const RUN = `gt-amqp-${process.pid}`;

/** A harness on its own prefix; everything it made is deleted when the test ends. */
function amqpHarness(t: TestContext, extra: Partial<AmqpBusOptions> = {}): BusHarness & { prefix: string } {
  const prefix = testPrefix(RUN);
  const used = { labels: [] as string[], instances: [] as string[] };
  const buses: AmqpBus[] = [];
  // Buses first: a running consumer declares a deleted queue again.
  t.after(async () => {
    await Promise.all(buses.map((b) => b.stop(AbortSignal.timeout(5_000))));
    await deleteTopology(prefix, used);
  });
  return {
    prefix,
    bus: async () => {
      const bus = new AmqpBus({ url: RABBIT_URL, prefix, probeIntervalMs: 100, ...extra });
      await bus.start();
      buses.push(bus);
      return bus;
    },
    label: () => {
      const l = `l-${uid()}`;
      used.labels.push(l);
      return l;
    },
    instance: () => {
      const i = `i-${uid()}`;
      used.instances.push(i);
      return i;
    },
    readyJobs: (label) => readyMessages(amqpTopology(prefix).jobQueue(label)),
  };
}

jobBusContract("RabbitMQ", async (t) => amqpHarness(t));

describe("RabbitMQ bus", () => {
  after(async () => {
    assert.deepEqual(await leftovers(RUN), [], "every test deleted its queues and exchanges");
  });

  it("dead-letters a message that is not even JSON, with the reason in the x-gnomon-reason header", async (t) => {
    const h = amqpHarness(t);
    const bus = await h.bus();
    const label = h.label();
    const queue = amqpTopology(h.prefix).jobQueue(label);
    const got = new Recorder<JobDelivery>();
    const c = await bus.consumeJobs([label], 1, got.push);
    t.after(() => c.cancel());
    const raw = await rawChannel();
    t.after(() => raw.close());
    raw.channel.sendToQueue(queue, Buffer.from("{not json"), { messageId: "garbage-1", persistent: true });
    const dlq = amqpTopology(h.prefix).deadLetterQueue;
    await until(async () => (await readyMessages(dlq)) === 1, "the garbage is in the dead-letter queue");
    const m = await raw.channel.get(dlq, { noAck: true });
    assert.ok(m);
    assert.equal(m.content.toString(), "{not json");
    assert.equal(m.properties.messageId, "garbage-1");
    assert.match(String(m.properties.headers?.[REASON_HEADER]), /JobRequest is not valid JSON/);
    assert.equal(got.items.length, 0);
    assert.equal(await readyMessages(queue), 0, "and it is gone from the job queue");
  });

  it("takes turns between two backlogged labels on one slot, in order per label, without bouncing a job", async (t) => {
    const h = amqpHarness(t);
    const [forge, orchestrator] = [await h.bus(), await h.bus()];
    const [a, b] = [h.label(), h.label()];
    const jobsA = Array.from({ length: 4 }, () => job(a));
    const jobsB = Array.from({ length: 4 }, () => job(b));
    for (const j of [...jobsA, ...jobsB]) await forge.publishJob(j);
    const got = new Recorder<JobDelivery>();
    let held = 0;
    let maxHeld = 0;
    const c = await orchestrator.consumeJobs([a, b], 1, (d) => {
      held += 1;
      maxHeld = Math.max(maxHeld, held);
      got.push(d);
      setTimeout(() => {
        held -= 1;
        void d.ack();
      }, 5);
    });
    t.after(() => c.cancel());
    const all = await got.count(8, "all eight jobs", 30_000);
    const labels = all.map((d) => d.request.runsOn);
    assert.equal(maxHeld, 1);
    assert.ok(!labels.slice(0, 4).every((l) => l === labels[0]), `the first four alternate: ${labels.join(" ")}`);
    assert.deepEqual(
      all.filter((d) => d.request.runsOn === a).map((d) => d.request.id),
      jobsA.map((j) => j.id),
    );
    assert.deepEqual(
      all.filter((d) => d.request.runsOn === b).map((d) => d.request.id),
      jobsB.map((j) => j.id),
    );
    assert.ok(
      all.every((d) => !d.redelivered),
      "no job went back to its queue",
    );
  });

  it("hands a burst on one label of a multi-label consumer the whole prefetch", async (t) => {
    const h = amqpHarness(t);
    const [forge, orchestrator] = [await h.bus(), await h.bus()];
    const [quiet, busy] = [h.label(), h.label()];
    const got = new Recorder<JobDelivery>();
    const c = await orchestrator.consumeJobs([quiet, busy], 6, got.push);
    t.after(() => c.cancel());
    await Promise.all(Array.from({ length: 10 }, () => forge.publishJob(job(busy))));
    await got.count(6, "six held once the probe saw the backlog");
    await holdsFor(300, async () => {
      assert.equal(got.items.length, 6);
      assert.equal(await h.readyJobs(busy), 4);
    });
    for (const d of got.items) await d.ack();
  });

  it("declares a job queue again when it was deleted under a running publisher and consumer (the broker returns the job)", async (t) => {
    const h = amqpHarness(t);
    const [forge, orchestrator] = [await h.bus(), await h.bus()];
    const label = h.label();
    await forge.publishJob(job(label));
    const raw = await rawChannel();
    t.after(() => raw.close());
    await raw.channel.deleteQueue(amqpTopology(h.prefix).jobQueue(label));
    const j = job(label);
    await forge.publishJob(j);
    const got = new Recorder<JobDelivery>();
    const c = await orchestrator.consumeJobs([label], 1, (d) => {
      got.push(d);
      void d.ack();
    });
    t.after(() => c.cancel());
    assert.deepEqual(
      (await got.count(1)).map((d) => d.request.id),
      [j.id],
    );
  });

  it("resends a JobEvent the broker returned as unroutable (its queue was deleted) once, after declaring the queue again", async (t) => {
    const log = capturedLog();
    const h = amqpHarness(t, { log: log.log });
    const [runner, orchestrator] = [await h.bus(), await h.bus()];
    const instance = h.instance();
    const jobId = job("x").id;
    await orchestrator.publishEvent(instance, event(jobId, 0));
    const raw = await rawChannel();
    t.after(() => raw.close());
    await raw.channel.deleteQueue(amqpTopology(h.prefix).eventQueue(instance)); // with the first event
    // Mandatory: the broker returns it; the bus still believes the queue exists, so this is the return path.
    await orchestrator.publishEvent(instance, event(jobId, 1));
    assert.equal(log.count(/a queue was missing on publish/, WARN), 1, "one warning for the returned event");
    const got = new Recorder<number>();
    const sub = await runner.consumeEvents(instance, (d) => {
      got.push(d.event.seq);
      void d.ack();
    });
    t.after(() => sub.cancel());
    assert.deepEqual(await got.count(1), [1]);
    await holdsFor(300, () => assert.deepEqual(got.items, [1], "delivered once"));
  });

  it("declares the cancel and dead-letter exchanges again when they were deleted under a running bus, and goes on", async (t) => {
    const log = capturedLog();
    const h = amqpHarness(t, { log: log.log });
    const [forge, orchestrator] = [await h.bus(), await h.bus()];
    const cancels = new Recorder<string>();
    // On the publishing bus, as in `gnomon up` (another process's cancel queue is bound again when its
    // own publisher meets the missing exchange, or when it reconnects).
    const sub = await forge.consumeCancels((c) => cancels.push(c.jobId));
    t.after(() => sub.cancel());
    const topology = amqpTopology(h.prefix);
    const raw = await rawChannel();
    t.after(() => raw.close());
    // An operator's cleanup: gone with them are the bindings of the cancel and dead-letter queues.
    await raw.channel.deleteExchange(topology.cancelExchange);
    await raw.channel.deleteExchange(topology.deadLetterExchange);
    // Publishing to a missing exchange closes the publisher's channel (404): it must come back with
    // the exchanges, not close again and again.
    const first = job("x").id;
    await within(
      forge.publishCancel({ v: 1, jobId: first, reason: "r", t: Date.now() }),
      "the cancel is confirmed",
      15_000,
    );
    assert.deepEqual(await cancels.count(1), [first], "the subscriber's queue is bound again");
    const label = h.label();
    const j = job(label);
    await forge.publishJob(j); // the publisher goes on with other work
    const c = await orchestrator.consumeJobs(
      [label],
      1,
      (d) => void d.nack({ requeue: false, reason: "poison for the test" }),
    );
    t.after(() => c.cancel());
    await until(async () => (await readyMessages(topology.deadLetterQueue)) === 1, "the dead letter is kept");
    assert.ok(log.count(/publisher channel closed/) <= 2, `${log.count(/publisher channel closed/)} channel losses`);
  });

  it("rejects every publish the broker nacks with a typed error naming the message and queue; each resolved one is delivered", async (t) => {
    const h = amqpHarness(t);
    // The broker refuses what does not fit (an operator's length limit): negative confirms.
    await queuePolicy(t, h.prefix, { "max-length": 2, overflow: "reject-publish" });
    const [forge, orchestrator] = [await h.bus(), await h.bus()];
    const label = h.label();
    const queue = amqpTopology(h.prefix).jobQueue(label);
    // A quorum queue checks its limit after each enqueue: one by one until the first refusal, ...
    const confirmed: string[] = [];
    const refused: { id: string; err: unknown }[] = [];
    for (let i = 0; i < 10 && refused.length === 0; i++) {
      const j = job(label);
      await forge.publishJob(j).then(
        () => confirmed.push(j.id),
        (err: unknown) => refused.push({ id: j.id, err }),
      );
    }
    assert.ok(confirmed.length >= 2 && refused.length === 1, `${confirmed.length} confirmed before a refusal`);
    // ... then a burst while it is full: every one refused, none resolved.
    const burst = Array.from({ length: 5 }, () => job(label));
    const outcomes = await Promise.allSettled(burst.map((j) => forge.publishJob(j)));
    outcomes.forEach((o, i) => {
      assert.equal(o.status, "rejected", `burst publish ${i}`);
      if (o.status === "rejected") refused.push({ id: burst[i]!.id, err: o.reason });
    });
    for (const { id, err } of refused) {
      assert.ok(err instanceof PublishRefusedError, String(err));
      assert.equal(err.messageId, id);
      assert.equal(err.destination, queue);
      assert.ok(err.message.startsWith(`RabbitMQ refused message ${id} for "${queue}"`), err.message);
      assert.match(err.message, /over a length limit.*publish it again/);
    }
    assert.equal(await readyMessages(queue), confirmed.length, "the queue holds exactly the confirmed jobs");
    const got = new Recorder<JobDelivery>();
    const c = await orchestrator.consumeJobs([label], 10, (d) => {
      got.push(d);
      void d.ack();
    });
    t.after(() => c.cancel());
    assert.deepEqual(
      (await got.count(confirmed.length)).map((d) => d.request.id),
      confirmed,
      "exactly the confirmed jobs, in order",
    );
    // A refused job published again once there is room goes through on the same bus.
    const n = confirmed.length;
    await until(async () => (await readyMessages(queue)) === 0, "the queue has room again");
    const again = job(label, { id: refused[0]!.id });
    await forge.publishJob(again);
    assert.equal((await got.count(n + 1))[n]!.request.id, again.id);
    await holdsFor(300, () => assert.equal(got.items.length, n + 1, "nothing refused arrived anyway"));
  });

  it("refuses a queue that exists with other arguments, naming it and the fix", async (t) => {
    const h = amqpHarness(t);
    const bus = await h.bus();
    const label = h.label();
    const queue = amqpTopology(h.prefix).jobQueue(label);
    const raw = await rawChannel();
    t.after(() => raw.close());
    await raw.channel.assertQueue(queue, { durable: true, arguments: { "x-queue-type": "classic" } });
    await assert.rejects(bus.publishJob(job(label)), (err: unknown) => {
      assert.ok(err instanceof TopologyConflictError);
      assert.match(err.message, new RegExp(`"${queue.replace(/\./g, "\\.")}".*delete it`));
      return true;
    });
    await assert.rejects(
      bus.consumeJobs([label], 1, () => {}),
      TopologyConflictError,
    );
    // The bus is still fine for everything else.
    const other = h.label();
    await bus.publishJob(job(other));
  });

  it("fails start() with a typed error that names the URL when nothing listens there", async () => {
    const bus = new AmqpBus({ url: "amqp://guest:secret@127.0.0.1:1", startTimeoutMs: 400 });
    await assert.rejects(bus.start(), (err: unknown) => {
      assert.ok(err instanceof BrokerUnreachableError);
      assert.match(err.message, /amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1/);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
    assert.ok((await bus.done) instanceof BrokerUnreachableError, "done carries why it never ran");
  });
});
