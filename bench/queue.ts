// Queue figures: job round trips per second for the in-process bus and for RabbitMQ. One round trip
// is what a job costs the bus: the forge side publishes a JobRequest, the orchestrator side consumes
// it, publishes 3 JobEvents (accepted, log, job-finished) and acks; the forge side consumes and acks
// the events. Prints figures, asserts nothing; deletes the RabbitMQ queues and exchanges it made.
// Usage: node --import tsx bench/queue.ts [--jobs 3000] [--bus both|memory|amqp] [--prefetch 128]
//        [--window 256] [--size 4096] [--url amqp://guest:guest@127.0.0.1:5672]
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { connect } from "amqplib";
import type { JobEvent } from "../src/contract/job-event.js";
import type { JobRequest } from "../src/contract/job-request.js";
import { sealSecrets } from "../src/contract/sealed-secrets.js";
import { AmqpBus } from "../src/queue/amqp.js";
import { amqpTopology } from "../src/queue/amqp-topology.js";
import type { JobBus } from "../src/queue/bus.js";
import { MemoryBroker, MemoryBus } from "../src/queue/memory.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "3000" },
    bus: { type: "string", default: "both" },
    prefetch: { type: "string", default: "128" },
    window: { type: "string", default: "256" },
    size: { type: "string", default: "4096" },
    url: { type: "string", default: "amqp://guest:guest@127.0.0.1:5672" },
  },
});
const JOBS = Number(values.jobs);
const PREFETCH = Number(values.prefetch);
const WINDOW = Number(values.window);
const WARMUP = Math.min(300, Math.ceil(JOBS / 10));
const LABEL = "bench-label";
const INSTANCE = "bench-runner";

const SECRETS = sealSecrets({ GITHUB_TOKEN: "t" }, Buffer.alloc(32, 1), "bench");

function makeJob(): JobRequest {
  const base: JobRequest = {
    v: 1,
    id: randomUUID(),
    source: { forge: "forgejo", instance: "https://forgejo.example", runner: "r-1", ref: { taskId: 1 } },
    replyTo: INSTANCE,
    runsOn: LABEL,
    spec: {
      workflow: { name: "ci" },
      job: { id: "build", name: "build" },
      env: [],
      defaults: [],
      steps: [{ id: "__0", kind: "run", if: "success()", run: "" }],
      timeoutMinutes: 360,
      cancelTimeoutMinutes: 5,
      continueOnError: false,
    },
    contexts: { github: { repository: "o/r" }, vars: {}, matrix: null, strategy: null, needs: {}, inputs: {} },
    secrets: SECRETS,
    actionsUrl: "https://github.com",
    runtime: {},
    queuedAt: new Date().toISOString(),
  };
  const pad = Math.max(0, Number(values.size) - Buffer.byteLength(JSON.stringify(base)));
  return {
    ...base,
    spec: { ...base.spec, steps: [{ id: "__0", kind: "run", if: "success()", run: "x".repeat(pad) }] },
  };
}

function eventsFor(jobId: string): JobEvent[] {
  const t = Date.now();
  return [
    { v: 1, jobId, seq: 0, t, kind: "accepted", orchestrator: "bench" },
    { v: 1, jobId, seq: 1, t, kind: "log", step: null, stage: "main", lines: [{ t, text: "hello from the bench" }] },
    { v: 1, jobId, seq: 2, t, kind: "job-finished", result: "success", outputs: {} },
  ];
}

/** Runs `n` round trips with at most WINDOW in flight; resolves with the elapsed milliseconds. */
async function roundTrips(forge: JobBus, orchestrator: JobBus, n: number): Promise<number> {
  const waiting = new Map<string, () => void>();
  const consumer = await orchestrator.consumeJobs([LABEL], PREFETCH, (d) => {
    void Promise.all(eventsFor(d.request.id).map((e) => orchestrator.publishEvent(d.request.replyTo, e))).then(() =>
      d.ack(),
    );
  });
  const events = await forge.consumeEvents(INSTANCE, (d) => {
    void d.ack();
    if (d.event.kind === "job-finished") waiting.get(d.event.jobId)?.();
  });
  const one = async (): Promise<void> => {
    const j = makeJob();
    const finished = new Promise<void>((resolve) => waiting.set(j.id, resolve));
    await forge.publishJob(j);
    await finished;
    waiting.delete(j.id);
  };
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(WINDOW, n) }, async () => {
      while (next < n) {
        next += 1;
        await one();
      }
    }),
  );
  const elapsed = performance.now() - started;
  await consumer.cancel();
  await events.cancel();
  return elapsed;
}

async function measure(name: string, make: () => Promise<[JobBus, JobBus]>, after?: () => Promise<void>) {
  const [forge, orchestrator] = await make();
  try {
    await roundTrips(forge, orchestrator, WARMUP);
    const ms = await roundTrips(forge, orchestrator, JOBS);
    const rate = Math.round((JOBS / ms) * 1000);
    console.log(
      `${name}: ${JOBS} jobs in ${(ms / 1000).toFixed(2)} s = ${rate} jobs/s round trip (job + 3 events), ` +
        `prefetch ${PREFETCH}, ${WINDOW} in flight, ~${values.size} B jobs`,
    );
  } finally {
    await forge.stop(AbortSignal.timeout(10_000));
    await orchestrator.stop(AbortSignal.timeout(10_000));
    await after?.();
  }
}

if (values.bus === "both" || values.bus === "memory") {
  await measure("in-process", async () => {
    const broker = new MemoryBroker();
    const buses: [JobBus, JobBus] = [new MemoryBus({ broker }), new MemoryBus({ broker })];
    for (const b of buses) await b.start();
    return buses;
  });
}

if (values.bus === "both" || values.bus === "amqp") {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  await measure(
    "rabbitmq",
    async () => {
      const buses: [JobBus, JobBus] = [
        new AmqpBus({ url: values.url, prefix, connectionName: "bench forge" }),
        new AmqpBus({ url: values.url, prefix, connectionName: "bench orchestrator" }),
      ];
      for (const b of buses) await b.start();
      return buses;
    },
    async () => {
      const t = amqpTopology(prefix);
      const model = await connect(values.url);
      const ch = await model.createChannel();
      for (const q of [t.jobQueue(LABEL), t.eventQueue(INSTANCE), t.deadLetterQueue]) await ch.deleteQueue(q);
      for (const x of [t.deadLetterExchange, t.cancelExchange]) await ch.deleteExchange(x);
      await model.close();
    },
  );
}
