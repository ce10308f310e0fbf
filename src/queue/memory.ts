// The embedded job bus: an in-process broker with the semantics of the RabbitMQ bus, for `gnomon up`
// without AMQP_URL. Messages travel encoded and are decoded on delivery exactly as from RabbitMQ, so
// the two pass one contract suite. It keeps nothing on disk: what is queued dies with the process.
//
// Semantics, as measured on RabbitMQ 3.10 quorum queues and mirrored here:
// - FIFO per label; several consumers of one label take turns.
// - A consumer never holds more than its prefetch unacknowledged across all its labels; between its
//   labels, the one served longest ago goes first.
// - nack({ requeue: true }) puts the job at the BACK of its queue (as a quorum queue does);
//   jobs held by a consumer that is cancelled, or whose bus stops, go back to the FRONT in their
//   original order. Both come back with `redelivered: true`.
// - nack({ requeue: false }) and undecodable messages go to the dead letters with their reason.
// - Event queues are durable per runner instance: events wait while nobody consumes them.
import type { Cancel } from "../contract/cancel.js";
import { decodeCancel, decodeJobEvent, decodeJobRequest, encode } from "../contract/codec.js";
import type { JobEvent } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";
import { deferred, type ServiceStatus } from "../lifecycle/service.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import type { EventDelivery, JobBus, JobConsumer, JobDelivery, Subscription } from "./bus.js";
import { busStatus } from "./bus-status.js";
import type { DeadLetter, DeadLetterInspector } from "./dead-letters.js";
import { BusStoppedError } from "./errors.js";

interface Message {
  /** Position in its queue: returned messages are put back by it, new ones get the next one. */
  seq: number;
  readonly id: string;
  readonly body: Buffer;
  redelivered: boolean;
}

/** A queue: ready messages kept sorted by `seq`. */
class MemQueue {
  readonly ready: Message[] = [];
  constructor(readonly name: string) {}

  pushBack(m: Message, seq: number): void {
    m.seq = seq;
    this.ready.push(m);
  }

  /** Puts messages back where they were (before every message queued after them). */
  putBack(ms: readonly Message[]): void {
    for (const m of ms) {
      let lo = 0;
      let hi = this.ready.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.ready[mid]!.seq < m.seq) lo = mid + 1;
        else hi = mid;
      }
      this.ready.splice(lo, 0, m);
    }
  }
}

/** Something that takes messages from queues: a job consumer or an event subscription. */
interface Receiver {
  readonly queues: readonly MemQueue[];
  /** Takes one message if it has room: returns false when it took none. */
  takeOne(): boolean;
}

export interface MemoryBrokerOptions {
  /** Dead letters kept for inspection; older ones are dropped beyond this. */
  readonly maxDeadLetters?: number;
  readonly log?: Logger;
}

/**
 * The shared in-process broker. Several MemoryBus instances on one broker behave like several
 * connections to one RabbitMQ: stopping one hands its unacknowledged jobs to the others.
 */
export class MemoryBroker {
  readonly #queues = new Map<string, MemQueue>();
  readonly #receivers: Receiver[] = [];
  readonly #cancelListeners = new Set<(bytes: Buffer) => void>();
  readonly #deadLetters: DeadLetter[] = [];
  readonly #maxDeadLetters: number;
  readonly #log: Logger;
  #seq = 0;
  #dispatchScheduled = false;
  #rotation = 0;

  constructor(opts: MemoryBrokerOptions = {}) {
    this.#maxDeadLetters = opts.maxDeadLetters ?? 10_000;
    this.#log = opts.log ?? rootLogger().child({ component: "queue", bus: "memory" });
  }

  queue(name: string): MemQueue {
    let q = this.#queues.get(name);
    if (!q) {
      q = new MemQueue(name);
      this.#queues.set(name, q);
    }
    return q;
  }

  /** Ready messages in a queue (not delivered to anyone). */
  readyCount(name: string): number {
    return this.#queues.get(name)?.ready.length ?? 0;
  }

  publish(queueName: string, id: string, body: Buffer): void {
    this.queue(queueName).pushBack({ seq: 0, id, body, redelivered: false }, ++this.#seq);
    this.schedule();
  }

  /** Back of the queue, as a quorum queue does with nack-requeue. */
  requeueBack(q: MemQueue, m: Message): void {
    m.redelivered = true;
    q.pushBack(m, ++this.#seq);
    this.schedule();
  }

  /** Front of the queue in original order, as when a consumer dies. */
  returnFront(q: MemQueue, ms: readonly Message[]): void {
    for (const m of ms) m.redelivered = true;
    q.putBack(ms);
    this.schedule();
  }

  deadLetter(source: string, m: Message, reason: string): void {
    this.#deadLetters.push({
      source,
      messageId: m.id,
      reason,
      body: m.body.toString("utf8"),
      deadLetteredAt: Date.now(),
    });
    if (this.#deadLetters.length > this.#maxDeadLetters) this.#deadLetters.shift();
    this.#log.error({ queue: source, messageId: m.id, reason }, "dead-lettered a message");
  }

  peekDeadLetters(limit: number): readonly DeadLetter[] {
    return this.#deadLetters.slice(0, limit);
  }

  addReceiver(r: Receiver): void {
    this.#receivers.push(r);
    this.schedule();
  }

  /** Job consumers whose labels include `label`. */
  jobConsumersOf(label: string): number {
    const q = this.#queues.get(jobQueueName(label));
    return q ? this.#receivers.filter((r) => r instanceof MemoryJobConsumer && r.queues.includes(q)).length : 0;
  }

  removeReceiver(r: Receiver): void {
    const i = this.#receivers.indexOf(r);
    if (i >= 0) this.#receivers.splice(i, 1);
  }

  onCancel(listener: (bytes: Buffer) => void): () => void {
    this.#cancelListeners.add(listener);
    return () => this.#cancelListeners.delete(listener);
  }

  broadcastCancel(bytes: Buffer): void {
    const listeners = [...this.#cancelListeners];
    setImmediate(() => {
      for (const l of listeners) l(bytes);
    });
  }

  /** Deliveries happen on a later turn of the event loop, never inside the call that caused them. */
  schedule(): void {
    if (this.#dispatchScheduled) return;
    this.#dispatchScheduled = true;
    setImmediate(() => {
      this.#dispatchScheduled = false;
      this.#dispatch();
    });
  }

  #dispatch(): void {
    // Round-robin over receivers, one message each per pass: consumers of one queue take turns.
    let progressed = true;
    while (progressed) {
      progressed = false;
      const n = this.#receivers.length;
      const start = this.#rotation++ % Math.max(1, n);
      for (let i = 0; i < n; i++) {
        const r = this.#receivers[(start + i) % n];
        if (r?.takeOne()) progressed = true;
      }
    }
  }
}

export interface MemoryBusOptions {
  /** The broker to attach to; default: a new one of its own. */
  readonly broker?: MemoryBroker;
  readonly log?: Logger;
  /** Most unacknowledged events per subscription, as the RabbitMQ bus's event prefetch. */
  readonly eventPrefetch?: number;
}

const jobQueueName = (label: string): string => `jobs.${label}`;
const eventQueueName = (replyTo: string): string => `events.${replyTo}`;

interface Held {
  readonly q: MemQueue;
  readonly m: Message;
}

class MemoryJobConsumer implements JobConsumer, Receiver {
  readonly queues: readonly MemQueue[];
  readonly #held = new Set<Held>();
  readonly #lastServed = new Map<MemQueue, number>();
  #served = 0;
  #prefetch: number;
  #cancelled = false;

  constructor(
    readonly broker: MemoryBroker,
    labels: readonly string[],
    prefetch: number,
    readonly onJob: (job: JobDelivery) => void,
    readonly log: Logger,
    readonly onGone: (c: MemoryJobConsumer) => void,
  ) {
    this.queues = [...new Set(labels)].map((l) => broker.queue(jobQueueName(l)));
    this.#prefetch = prefetch;
  }

  takeOne(): boolean {
    if (this.#cancelled || this.#held.size >= this.#prefetch) return false;
    // Among its labels, the one served longest ago goes first.
    let best: MemQueue | undefined;
    for (const q of this.queues) {
      if (q.ready.length === 0) continue;
      if (!best || (this.#lastServed.get(q) ?? 0) < (this.#lastServed.get(best) ?? 0)) best = q;
    }
    if (!best) return false;
    const m = best.ready.shift()!;
    const decoded = decodeJobRequest(m.body);
    if (!decoded.ok) {
      this.broker.deadLetter(best.name, m, decoded.reason);
      return true;
    }
    this.#lastServed.set(best, ++this.#served);
    const held: Held = { q: best, m };
    this.#held.add(held);
    const settle = (): boolean => this.#held.delete(held);
    const delivery: JobDelivery = {
      request: decoded.value,
      redelivered: m.redelivered,
      ack: async () => {
        if (settle()) this.broker.schedule();
      },
      nack: async ({ requeue, reason }) => {
        if (!settle()) return;
        if (requeue) this.broker.requeueBack(best, m);
        else {
          this.broker.deadLetter(best.name, m, reason ?? "rejected by the consumer");
          this.broker.schedule();
        }
      },
    };
    try {
      this.onJob(delivery);
    } catch (err) {
      this.log.error(
        { err, jobId: decoded.value.id },
        "onJob threw; the job stays unacknowledged until the consumer is cancelled",
      );
    }
    return true;
  }

  async setPrefetch(n: number): Promise<void> {
    checkPrefetch(n);
    this.#prefetch = n;
    this.broker.schedule();
  }

  async cancel(): Promise<void> {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.broker.removeReceiver(this);
    const byQueue = new Map<MemQueue, Message[]>();
    for (const h of this.#held) byQueue.set(h.q, [...(byQueue.get(h.q) ?? []), h.m]);
    this.#held.clear();
    for (const [q, ms] of byQueue) this.broker.returnFront(q, ms);
    this.onGone(this);
  }
}

class MemoryEventSubscription implements Subscription, Receiver {
  readonly queues: readonly MemQueue[];
  readonly #held = new Set<Message>();
  #cancelled = false;

  constructor(
    readonly broker: MemoryBroker,
    replyTo: string,
    readonly prefetch: number,
    readonly onEvent: (d: EventDelivery) => void,
    readonly log: Logger,
    readonly onGone: (s: MemoryEventSubscription) => void,
  ) {
    this.queues = [broker.queue(eventQueueName(replyTo))];
  }

  takeOne(): boolean {
    const q = this.queues[0]!;
    if (this.#cancelled || this.#held.size >= this.prefetch || q.ready.length === 0) return false;
    const m = q.ready.shift()!;
    const decoded = decodeJobEvent(m.body);
    if (!decoded.ok) {
      this.broker.deadLetter(q.name, m, decoded.reason);
      return true;
    }
    this.#held.add(m);
    try {
      this.onEvent({
        event: decoded.value,
        ack: async () => {
          if (this.#held.delete(m)) this.broker.schedule();
        },
      });
    } catch (err) {
      this.log.error({ err, messageId: m.id }, "onEvent threw; the event stays unacknowledged");
    }
    return true;
  }

  async cancel(): Promise<void> {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.broker.removeReceiver(this);
    const ms = [...this.#held];
    this.#held.clear();
    this.broker.returnFront(this.queues[0]!, ms);
    this.onGone(this);
  }
}

function checkPrefetch(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`prefetch must be an integer ≥ 0 (0 pauses), got ${n}`);
}

export class MemoryBus implements JobBus, DeadLetterInspector {
  readonly name = "queue (in-process)";
  readonly broker: MemoryBroker;
  readonly #log: Logger;
  readonly #eventPrefetch: number;
  readonly #done = deferred<Error | undefined>();
  readonly done = this.#done.promise;
  readonly #closers = new Set<{ cancel(): Promise<void> }>();
  #state: "new" | "running" | "stopped" = "new";

  constructor(opts: MemoryBusOptions = {}) {
    this.#log = opts.log ?? rootLogger().child({ component: "queue", bus: "memory" });
    this.broker = opts.broker ?? new MemoryBroker({ log: this.#log });
    this.#eventPrefetch = opts.eventPrefetch ?? 256;
  }

  async start(): Promise<void> {
    if (this.#state === "stopped") throw new BusStoppedError("start");
    this.#state = "running";
  }

  async stop(_deadline: AbortSignal): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    for (const c of [...this.#closers]) await c.cancel();
    this.#done.resolve(undefined);
  }

  #running(what: string): void {
    if (this.#state !== "running") throw new BusStoppedError(what);
  }

  get connected(): boolean {
    return this.#state === "running";
  }

  status(): ServiceStatus {
    return busStatus({ phase: this.#state, connected: this.#state === "running", where: "this process" });
  }

  async publishJob(request: JobRequest): Promise<void> {
    this.#running("publishJob");
    this.broker.publish(jobQueueName(request.runsOn), request.id, encode(request));
  }

  async consumeJobs(
    labels: readonly string[],
    prefetch: number,
    onJob: (job: JobDelivery) => void,
  ): Promise<JobConsumer> {
    this.#running("consumeJobs");
    checkPrefetch(prefetch);
    if (labels.length === 0) throw new RangeError("consumeJobs needs at least one label");
    const c = new MemoryJobConsumer(this.broker, labels, prefetch, onJob, this.#log, (x) => this.#closers.delete(x));
    this.#closers.add(c);
    this.broker.addReceiver(c);
    return c;
  }

  async jobConsumers(label: string): Promise<number | undefined> {
    this.#running("jobConsumers");
    return this.broker.jobConsumersOf(label);
  }

  async publishEvent(replyTo: string, event: JobEvent): Promise<void> {
    this.#running("publishEvent");
    this.broker.publish(eventQueueName(replyTo), `${event.jobId}:${event.seq}`, encode(event));
  }

  async consumeEvents(replyTo: string, onEvent: (delivery: EventDelivery) => void): Promise<Subscription> {
    this.#running("consumeEvents");
    const s = new MemoryEventSubscription(this.broker, replyTo, this.#eventPrefetch, onEvent, this.#log, (x) =>
      this.#closers.delete(x),
    );
    this.#closers.add(s);
    this.broker.addReceiver(s);
    return s;
  }

  async publishCancel(cancel: Cancel): Promise<void> {
    this.#running("publishCancel");
    this.broker.broadcastCancel(encode(cancel));
  }

  async consumeCancels(onCancel: (cancel: Cancel) => void): Promise<Subscription> {
    this.#running("consumeCancels");
    const off = this.broker.onCancel((bytes) => {
      const decoded = decodeCancel(bytes);
      if (!decoded.ok) {
        this.broker.deadLetter("cancels", { seq: 0, id: "", body: bytes, redelivered: false }, decoded.reason);
        return;
      }
      try {
        onCancel(decoded.value);
      } catch (err) {
        this.#log.error({ err, jobId: decoded.value.jobId }, "onCancel threw");
      }
    });
    const sub = {
      cancel: async () => {
        off();
        this.#closers.delete(sub);
      },
    };
    this.#closers.add(sub);
    return sub;
  }

  async peekDeadLetters(limit = 100): Promise<readonly DeadLetter[]> {
    return this.broker.peekDeadLetters(limit);
  }
}
