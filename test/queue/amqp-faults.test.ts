// Fault tests for the RabbitMQ bus: connections cut mid-stream through a TCP proxy the test
// controls, and a broker restart. Forge side and orchestrator side are separate buses (separate
// connections); both must recover on their own, and every job (and the event the orchestrator
// reports for it) must arrive exactly once after dedupe by id. The resource-alarm test blocks every
// publisher on the broker for a few seconds, which is why this file, like the other fault tests,
// runs only with --test-concurrency=1.
import assert from "node:assert/strict";
import { after, describe, it, type TestContext } from "node:test";
import type { JobRequest } from "../../src/contract/job-request.js";
import { queueHealth } from "../../src/orchestrator/health.js";
import { AmqpBus } from "../../src/queue/amqp.js";
import { amqpTopology } from "../../src/queue/amqp-topology.js";
import type { JobDelivery } from "../../src/queue/bus.js";
import { capturedLog, INFO, WARN } from "../support/captured-log.js";
import {
  deleteTopology,
  leftovers,
  memoryAlarm,
  RABBIT_URL,
  rabbitmqctl,
  readyMessages,
  testPrefix,
} from "../support/rabbit.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { within } from "../support/within.js";
import { event, holdsFor, job, uid, until } from "./helpers.js";

const RUN = `gt-faults-${process.pid}`;

/** Two buses on one prefix: the forge side publishes, the orchestrator side consumes and acks. */
async function pair(t: TestContext, url: string) {
  const prefix = testPrefix(RUN);
  const label = `l-${uid()}`;
  const instance = `i-${uid()}`;
  const [pubLog, conLog] = [capturedLog(), capturedLog()];
  const opts = { url, prefix, reconnectBackoff: { baseMs: 50, maxMs: 400 }, startTimeoutMs: 10_000 };
  const forge = new AmqpBus({ ...opts, log: pubLog.log });
  const orchestrator = new AmqpBus({ ...opts, log: conLog.log });
  await forge.start();
  await orchestrator.start();
  t.after(async () => {
    await Promise.all([forge, orchestrator].map((b) => b.stop(AbortSignal.timeout(10_000))));
    await deleteTopology(prefix, { labels: [label], instances: [instance] });
  });
  const deliveries = new Map<string, number>();
  const events = new Map<string, number>();
  let redelivered = 0;
  // As an orchestrator does: report on the job's event stream, then ack the job.
  const consumer = await orchestrator.consumeJobs([label], 64, (d: JobDelivery) => {
    deliveries.set(d.request.id, (deliveries.get(d.request.id) ?? 0) + 1);
    if (d.redelivered) redelivered += 1;
    void orchestrator.publishEvent(instance, event(d.request.id, 0)).then(() => d.ack());
  });
  const stream = await forge.consumeEvents(instance, (d) => {
    const key = `${d.event.jobId}:${d.event.seq}`;
    events.set(key, (events.get(key) ?? 0) + 1);
    void d.ack();
  });
  t.after(() => consumer.cancel());
  t.after(() => stream.cancel());
  return {
    prefix,
    label,
    forge,
    orchestrator,
    pubLog,
    conLog,
    deliveries,
    events,
    redelivered: () => redelivered,
  };
}

/**
 * Publishes `total` jobs with at most `window` unconfirmed at a time, each padded by `padBytes`;
 * returns every id and promise.
 */
function publishStream(bus: AmqpBus, label: string, total: number, window: number, padBytes = 0) {
  const ids: string[] = [];
  const confirmed: Promise<void>[] = [];
  let inFlight = 0;
  let resolved = 0;
  let room: (() => void) | undefined;
  const done = (async () => {
    for (let i = 0; i < total; i++) {
      if (inFlight >= window) await new Promise<void>((r) => (room = r));
      const j = padBytes > 0 ? padded(label, padBytes) : job(label);
      ids.push(j.id);
      inFlight += 1;
      const p = bus
        .publishJob(j)
        .then(() => {
          resolved += 1;
        })
        .finally(() => {
          inFlight -= 1;
          room?.();
          room = undefined;
        });
      confirmed.push(p);
    }
    await Promise.all(confirmed);
  })();
  return { ids, done, resolved: () => resolved };
}

/** A job that is `padBytes` bigger than usual (in a workflow variable). */
function padded(label: string, padBytes: number): JobRequest {
  const j = job(label);
  return { ...j, contexts: { ...j.contexts, vars: { pad: "x".repeat(padBytes) } } };
}

describe("RabbitMQ bus under faults", () => {
  after(async () => {
    assert.deepEqual(await leftovers(RUN), [], "every test deleted its queues and exchanges");
  });

  it("rides out connections cut mid-stream and refused for a while; every job is consumed exactly once after dedupe", async (t) => {
    const proxy = new TcpProxy({ host: "127.0.0.1", port: 5672 });
    await proxy.listen();
    const p = await pair(t, `amqp://guest:guest@127.0.0.1:${proxy.port}`);
    t.after(() => proxy.close()); // after the buses stopped (hooks run in the order added)
    const TOTAL = 3_000;
    const stream = publishStream(p.forge, p.label, TOTAL, 200);

    await until(() => p.deliveries.size >= TOTAL / 3, "a third consumed");
    proxy.dropAll();
    await proxy.refuse();
    const failedAttempts = (l: ReturnType<typeof capturedLog>) => l.count(/reconnect attempt failed/);
    await until(
      () => failedAttempts(p.pubLog) >= 2 && failedAttempts(p.conLog) >= 2,
      "both sides tried to reconnect and were refused twice",
    );
    await proxy.accept();

    await until(() => p.deliveries.size >= (2 * TOTAL) / 3, "two thirds consumed");
    proxy.dropAll(); // and straight back

    await stream.done; // every publish resolved: confirmed on some connection
    await until(() => p.deliveries.size === TOTAL, "every job consumed", 60_000);
    const queue = amqpTopology(p.prefix).jobQueue(p.label);
    await holdsFor(300, async () => {
      assert.equal(await readyMessages(queue), 0, "nothing left behind");
    });

    assert.deepEqual(new Set(p.deliveries.keys()), new Set(stream.ids), "exactly the published jobs, once each");
    await until(() => p.events.size === TOTAL, "every job's event reached the runner's stream");
    assert.deepEqual(new Set(p.events.keys()), new Set(stream.ids.map((id) => `${id}:0`)));
    const extra = [...p.deliveries.values()].reduce((a, b) => a + b, 0) - TOTAL;
    t.diagnostic(`${TOTAL} jobs, ${extra} duplicate deliveries (deduped), ${p.redelivered()} marked redelivered`);
    for (const [side, l] of [
      ["publisher", p.pubLog],
      ["consumer", p.conLog],
    ] as const) {
      // A restored consumer can take jobs before its connection logs that it is back.
      await until(() => l.count(/reconnected to rabbitmq/, INFO) >= 2, `${side}: the second all-clear line`);
      assert.equal(l.count(/lost the rabbitmq connection/, WARN), 2, `${side}: one warning per outage`);
      assert.equal(l.count(/reconnected to rabbitmq/, INFO), 2, `${side}: one line per recovery`);
    }
    assert.ok(proxy.accepted >= 6, "both buses connected three times");
  });

  it("restores a consumer with its current prefetch, counting jobs still held from before the drop", async (t) => {
    const prefix = testPrefix(RUN);
    const label = `l-${uid()}`;
    const proxy = new TcpProxy({ host: "127.0.0.1", port: 5672 });
    await proxy.listen();
    const forge = new AmqpBus({ url: RABBIT_URL, prefix });
    const orchestrator = new AmqpBus({
      url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
      prefix,
      reconnectBackoff: { baseMs: 50, maxMs: 200 },
    });
    await forge.start();
    await orchestrator.start();
    t.after(async () => {
      await Promise.all([forge, orchestrator].map((b) => b.stop(AbortSignal.timeout(10_000))));
      await proxy.close();
      await deleteTopology(prefix, { labels: [label], instances: [] });
    });
    const jobs = Array.from({ length: 12 }, () => job(label));
    await Promise.all(jobs.map((j) => forge.publishJob(j)));
    const got: JobDelivery[] = [];
    const c = await orchestrator.consumeJobs([label], 2, (d) => got.push(d));
    await until(() => got.length === 2, "two held");
    await c.setPrefetch(5);
    await until(() => got.length === 5, "five held");
    const before = proxy.accepted;
    proxy.dropAll(); // the broker puts the five back; the orchestrator still runs them
    await until(() => proxy.accepted > before && orchestrator.isConnected, "reconnected");
    const queue = amqpTopology(prefix).jobQueue(label);
    await holdsFor(300, async () => {
      assert.equal(got.length, 5, "held jobs still count: nothing new while five are held");
      assert.equal(await readyMessages(queue), 12, "all twelve are ready again at the broker");
    });
    for (const d of got.splice(0)) await d.ack(); // acks of a dead connection: no-ops that free room
    await until(() => got.length === 5, "exactly the current prefetch again");
    await holdsFor(300, () => assert.equal(got.length, 5));
    assert.deepEqual(
      got.map((d) => d.request.id),
      jobs.slice(0, 5).map((j) => j.id),
      "the five it held come first again, in order",
    );
    assert.ok(got.every((d) => d.redelivered));
    for (const d of got) await d.ack();
  });

  it("holds publishes while a resource alarm blocks publishing, confirms each once it clears, and logs both", async (t) => {
    const alarm = await memoryAlarm(t); // its restore is the first after-hook: before the buses stop
    const p = await pair(t, RABBIT_URL);
    const warm = publishStream(p.forge, p.label, 20, 20);
    await warm.done;
    await until(() => p.events.size === 20, "the warm-up jobs' events reached the runner");

    await alarm.raise();
    // 15 MB: more than the sockets and amqplib's write buffer take, so the rest waits for 'drain'.
    const TOTAL = 5_000;
    const during = publishStream(p.forge, p.label, TOTAL, TOTAL, 2_000);
    await until(() => p.pubLog.count(/rabbitmq blocked publishing/, WARN) === 1, "the publisher logs the block");
    await holdsFor(500, () => {
      assert.equal(during.resolved(), 0, "no publish resolved while the broker was not taking them");
      assert.equal(p.deliveries.size, 20, "nothing published during the alarm reached a consumer");
    });
    // What /healthz shows: connected, but no job can be queued or finish.
    assert.match(p.forge.publishingBlocked ?? "", /memory/);
    assert.deepEqual(queueHealth(p.forge), {
      ok: false,
      state: `publishing blocked by rabbitmq (${p.forge.publishingBlocked})`,
    });
    await alarm.clear();
    await within(during.done, "every publish confirmed once the alarm cleared", 60_000);
    await until(() => p.deliveries.size === 20 + TOTAL, "every job consumed");
    assert.deepEqual(new Set(p.deliveries.keys()), new Set([...warm.ids, ...during.ids]));
    assert.ok(
      [...p.deliveries.values()].every((n) => n === 1),
      "each job arrived once: nothing was published twice",
    );
    await until(() => p.events.size === 20 + TOTAL, "every job's event reached the runner's stream");
    await until(() => p.pubLog.count(/rabbitmq unblocked publishing/, INFO) === 1, "the publisher logs the all-clear");
    assert.equal(p.pubLog.count(/lost the rabbitmq connection/), 0, "the blocked connection was kept, not replaced");
    assert.deepEqual(queueHealth(p.forge), { ok: true, state: "connected" });
  });

  it("survives a RabbitMQ restart (stop_app, start_app) with publishes waiting for it", async (t) => {
    t.after(() => rabbitmqctl("start_app")); // never leave the broker stopped
    const p = await pair(t, RABBIT_URL);
    const first = publishStream(p.forge, p.label, 300, 100);
    await first.done;
    await until(() => p.deliveries.size >= 100, "some consumed");
    await rabbitmqctl("stop_app");
    await until(() => !p.forge.connected, "the bus to notice the broker is gone");
    const during = publishStream(p.forge, p.label, 100, 100); // pending until the broker is back
    await rabbitmqctl("start_app");
    await during.done;
    await until(() => p.deliveries.size === 400, "every job consumed", 60_000);
    assert.deepEqual(new Set(p.deliveries.keys()), new Set([...first.ids, ...during.ids]));
    await until(() => p.events.size === 400, "every job's event reached the runner's stream");
    assert.equal(p.forge.connected, true);
    // A restored consumer takes jobs before its connection logs that it is back: wait for the line.
    await until(() => p.conLog.count(/reconnected to rabbitmq/, INFO) > 0, "the consumer's all-clear line");
    assert.equal(p.pubLog.count(/lost the rabbitmq connection/, WARN), 1);
    assert.equal(p.conLog.count(/reconnected to rabbitmq/, INFO), 1);
  });
});
