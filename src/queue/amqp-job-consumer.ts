// A job consumer over several label queues with ONE prefetch across all of them, on RabbitMQ quorum
// queues, which have no global (per-channel) QoS. It must never hand its callback more unsettled
// jobs than the prefetch, never bounce a job back with nack-requeue (a quorum queue puts it at the
// back: measured on 3.10), and never dead-letter a job it merely had no room for.
//
// How: every label gets consumers ("tags") of its own on the consumer's channel, each with a fixed
// per-consumer prefetch ("credit"), and credit-plan.ts keeps
//     held outside live tags + Σ credit of live tags ≤ prefetch
// at every instant, counting a tag being cancelled at its full credit until the broker confirms.
// The broker therefore never delivers beyond the limit; more credit means an extra tag (no churn on
// a busy label), less means cancelling tags (their held jobs stay held and ackable). With one label
// the plan is simply credit = prefetch. With several, credit is shared max-min fairly by known
// backlog, probed with passive declares every probeIntervalMs, and ties go to the label served
// longest ago. What the broker sent before a lower setPrefetch took effect is parked in order (not
// returned) and handed over first when room frees; a cancelled consumer's channel close returns
// parked and held jobs to the FRONT of their queues, in order.
//
// One thing the broker does by itself: a delivery still in transit to a consumer tag that is being
// cancelled is returned by the quorum queue (measured on 3.10), redelivered and possibly a place
// behind the next job. So tags are cancelled only when they must be: a lower setPrefetch, or, for
// fairness between labels, a tag nothing can be in transit to (full, or idle on an empty queue).
// A single-label consumer with a steady prefetch never cancels a tag at all.
import { setInterval as every } from "node:timers/promises";
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import { decodeJobRequest } from "../contract/codec.js";
import type { JobRequest } from "../contract/job-request.js";
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";
import { closeQuietly } from "./amqp-close.js";
import type { AmqpDeclarations } from "./amqp-declarations.js";
import type { AmqpTopology } from "./amqp-topology.js";
import type { JobConsumer, JobDelivery } from "./bus.js";
import { type LabelState, planChanges } from "./credit-plan.js";

export interface AmqpJobConsumerDeps {
  readonly id: string;
  readonly topology: AmqpTopology;
  readonly declarations: AmqpDeclarations;
  /** Publishes the message to the dead-letter exchange with its reason; resolves once confirmed. */
  readonly deadLetter: (source: string, msg: ConsumeMessage, reason: string) => Promise<void>;
  /** The connection while it is up, for restoring a channel that died on its own. */
  readonly currentModel: () => ChannelModel | undefined;
  readonly log: Logger;
  readonly probeIntervalMs: number;
  readonly onGone: (c: AmqpJobConsumer) => void;
}

type TagPhase = "live" | "cancelling" | "cancelled" | "stale";

interface Tag {
  readonly id: string;
  readonly label: string;
  readonly credit: number;
  readonly channel: Channel;
  phase: TagPhase;
  /** Handed to the callback, not settled yet. */
  accepted: number;
  /** Over the limit (setPrefetch race), waiting for room. */
  parked: number;
  /** Being dead-lettered: unacked at the broker until the dead letter is confirmed. */
  dying: number;
}

interface Held {
  readonly tag: Tag;
  readonly msg: ConsumeMessage;
  readonly request: JobRequest;
  settled: boolean;
}

interface LabelInfo {
  depth: number | undefined;
  lastServed: number;
}

export function checkPrefetch(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`prefetch must be an integer ≥ 0 (0 pauses), got ${n}`);
}

export class AmqpJobConsumer implements JobConsumer {
  readonly labels: readonly string[];
  readonly #deps: AmqpJobConsumerDeps;
  readonly #onJob: (job: JobDelivery) => void;
  readonly #tags = new Set<Tag>();
  readonly #info = new Map<string, LabelInfo>();
  #parked: Held[] = [];
  #prefetch: number;
  #accepted = 0;
  #served = 0;
  #tagSeq = 0;
  #channel: Channel | undefined;
  #cancelled = false;
  #probing: AbortController | undefined;
  #dirty = false;
  #running = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(
    deps: AmqpJobConsumerDeps,
    labels: readonly string[],
    prefetch: number,
    onJob: (job: JobDelivery) => void,
  ) {
    this.#deps = deps;
    this.labels = [...new Set(labels)];
    this.#prefetch = prefetch;
    this.#onJob = onJob;
    for (const l of this.labels) this.#info.set(l, { depth: undefined, lastServed: 0 });
  }

  /** Jobs handed to the callback and not settled (for tests and metrics). */
  get held(): number {
    return this.#accepted;
  }

  async setPrefetch(n: number): Promise<void> {
    checkPrefetch(n);
    this.#prefetch = n;
    this.#drainParked();
    await this.#reconcile();
  }

  async cancel(): Promise<void> {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const ch = this.#channel;
    this.#detachState();
    this.#deps.onGone(this);
    // Closing the channel returns every unacked job (held or parked) to the front of its queue.
    if (ch) await closeQuietly(ch);
  }

  /** Starts (again) on a fresh connection: new channel, queues declared, credit planned. */
  async attach(model: ChannelModel): Promise<void> {
    if (this.#cancelled) return;
    const ch = await model.createChannel();
    ch.on("error", () => {});
    ch.on("close", () => this.#onChannelClose(ch));
    try {
      await Promise.all(this.labels.map((l) => this.#deps.declarations.workQueue(this.#queue(l))));
    } catch (err) {
      await closeQuietly(ch);
      throw err;
    }
    if (this.#cancelled) {
      await closeQuietly(ch);
      return;
    }
    this.#channel = ch;
    if (this.labels.length > 1) {
      await this.#probe();
      this.#startProbing();
    }
    await this.#reconcile();
  }

  /** The connection is gone: the broker has put back everything unacked; held jobs stay held. */
  detach(): void {
    this.#detachState();
  }

  #detachState(): void {
    this.#channel = undefined;
    this.#probing?.abort();
    this.#probing = undefined;
    for (const t of this.#tags) {
      t.phase = "stale";
      t.parked = 0;
    }
    this.#parked = [];
    for (const t of [...this.#tags]) this.#gc(t);
  }

  #onChannelClose(ch: Channel): void {
    if (this.#channel !== ch || this.#cancelled) return;
    this.#detachState();
    // A channel that dies with its connection is restored by the connection; one that died alone
    // (e.g. its queue was deleted under it) is restored here, once this turn's close handling ran.
    setImmediate(() => {
      const model = this.#deps.currentModel();
      if (!model || this.#channel || this.#cancelled) return;
      this.#deps.log.warn({ labels: this.labels }, "job consumer channel closed; restoring it");
      this.attach(model).catch((err: unknown) =>
        this.#deps.log.error({ err: toError(err).message, labels: this.labels }, "restoring a job consumer failed"),
      );
    });
  }

  #queue(label: string): string {
    return this.#deps.topology.jobQueue(label);
  }

  #onMessage(tag: Tag, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled this consumer: its queue was deleted. Declare it again and re-plan.
      if (tag.phase === "live" || tag.phase === "cancelling") tag.phase = "cancelled";
      this.#deps.declarations.forget(this.#queue(tag.label));
      this.#deps.log.warn({ queue: this.#queue(tag.label) }, "job queue was deleted on the broker; declaring it again");
      this.#gc(tag);
      void this.#reconcile();
      return;
    }
    if (tag.phase === "stale" || this.#cancelled) return; // its channel is gone; the broker put it back
    const decoded = decodeJobRequest(msg.content);
    if (!decoded.ok) {
      tag.dying += 1;
      this.#deadLetter(tag, msg, decoded.reason).catch((err: unknown) =>
        this.#deps.log.error(
          { err: toError(err).message, queue: this.#queue(tag.label) },
          "dead-lettering an undecodable job failed; it goes back to its queue when this consumer's channel closes",
        ),
      );
      return;
    }
    const info = this.#info.get(tag.label)!;
    if (info.depth !== undefined) info.depth = Math.max(0, info.depth - 1);
    const held: Held = { tag, msg, request: decoded.value, settled: false };
    if (this.#parked.length === 0 && this.#accepted < this.#prefetch) this.#accept(held);
    else {
      tag.parked += 1;
      this.#parked.push(held);
    }
    this.#replanAfter(tag);
  }

  /**
   * A delivery or settle on a live tag of a single-label consumer cannot change its plan (credit =
   * prefetch − what is held outside live tags): skip planning on that hot path.
   */
  #replanAfter(tag: Tag): void {
    if (this.labels.length > 1 || tag.phase !== "live") void this.#reconcile();
  }

  #accept(h: Held): void {
    h.tag.accepted += 1;
    this.#accepted += 1;
    this.#info.get(h.tag.label)!.lastServed = ++this.#served;
    const delivery: JobDelivery = {
      request: h.request,
      redelivered: h.msg.fields.redelivered,
      ack: async () => this.#settle(h, "ack"),
      nack: async ({ requeue, reason }) =>
        requeue ? this.#settle(h, "requeue") : this.#settleDead(h, reason ?? "rejected by the consumer"),
    };
    try {
      this.#onJob(delivery);
    } catch (err) {
      this.#deps.log.error(
        { err: toError(err).message, jobId: h.request.id },
        "onJob threw; the job stays unacknowledged until the consumer is cancelled",
      );
    }
  }

  #settle(h: Held, how: "ack" | "requeue"): void {
    if (h.settled) return;
    h.settled = true;
    h.tag.accepted -= 1;
    this.#accepted -= 1;
    this.#brokerSettle(h.tag, h.msg, how);
    this.#gc(h.tag);
    this.#drainParked();
    this.#replanAfter(h.tag);
  }

  async #settleDead(h: Held, reason: string): Promise<void> {
    if (h.settled) return;
    h.settled = true;
    h.tag.accepted -= 1;
    this.#accepted -= 1;
    h.tag.dying += 1;
    this.#drainParked();
    void this.#reconcile();
    await this.#deadLetter(h.tag, h.msg, reason);
  }

  async #deadLetter(tag: Tag, msg: ConsumeMessage, reason: string): Promise<void> {
    try {
      await this.#deps.deadLetter(this.#queue(tag.label), msg, reason);
      this.#brokerSettle(tag, msg, "ack");
    } finally {
      // Unconfirmed (bus stopping): left unacked, so the broker puts it back when the channel closes.
      tag.dying -= 1;
      this.#gc(tag);
      void this.#reconcile();
    }
  }

  /** Acks or requeues at the broker, if the delivery's channel is still the live one. */
  #brokerSettle(tag: Tag, msg: ConsumeMessage, how: "ack" | "requeue"): void {
    if (tag.phase === "stale" || tag.channel !== this.#channel) return; // already put back by the broker
    try {
      if (how === "ack") tag.channel.ack(msg);
      else tag.channel.nack(msg, false, true);
    } catch {
      // The channel is closing: the broker puts the job back, and it is redelivered.
    }
  }

  #drainParked(): void {
    while (this.#parked.length > 0 && this.#accepted < this.#prefetch && !this.#cancelled) {
      const h = this.#parked.shift()!;
      h.tag.parked -= 1;
      this.#accept(h);
    }
  }

  #gc(tag: Tag): void {
    if ((tag.phase === "cancelled" || tag.phase === "stale") && tag.accepted + tag.parked + tag.dying === 0)
      this.#tags.delete(tag);
  }

  #labelStates(): LabelState[] {
    return this.labels.map((label) => {
      const info = this.#info.get(label)!;
      const tags = [...this.#tags]
        .filter((t) => t.label === label && t.phase === "live")
        .map((t) => ({ id: t.id, credit: t.credit, held: t.accepted + t.parked + t.dying }));
      return { label, tags, depth: info.depth, lastServed: info.lastServed };
    });
  }

  #committedOutside(): number {
    let n = 0;
    for (const t of this.#tags) {
      if (t.phase === "cancelling") n += t.credit;
      else if (t.phase !== "live") n += t.accepted + t.parked;
    }
    return n;
  }

  /** Runs the planning loop until the plan holds; concurrent calls share one loop. */
  #reconcile(): Promise<void> {
    this.#dirty = true;
    if (!this.#running) {
      this.#running = true;
      this.#loop = this.#runLoop();
    }
    return this.#loop;
  }

  async #runLoop(): Promise<void> {
    try {
      while (this.#dirty) {
        this.#dirty = false;
        await this.#step();
      }
    } catch (err) {
      // Channel or connection trouble: attach() on the next connection plans again from scratch.
      this.#deps.log.debug({ err: toError(err).message, labels: this.labels }, "credit planning interrupted");
    } finally {
      this.#running = false;
    }
  }

  async #step(): Promise<void> {
    const ch = this.#channel;
    if (!ch || this.#cancelled) return;
    const changes = planChanges({
      prefetch: this.#prefetch,
      committedOutside: this.#committedOutside(),
      labels: this.#labelStates(),
      growMin: Math.max(1, Math.floor(this.#prefetch / 8)),
    });
    if (changes.cancel.length > 0) {
      const tags = [...this.#tags].filter((t) => changes.cancel.includes(t.id));
      for (const t of tags) t.phase = "cancelling";
      await Promise.all(
        tags.map(async (t) => {
          await ch.cancel(t.id);
          if (t.phase === "cancelling") t.phase = "cancelled";
          this.#gc(t);
        }),
      );
      this.#dirty = true;
      return;
    }
    if (changes.consume.length === 0) return;
    await Promise.all(changes.consume.map((c) => this.#deps.declarations.workQueue(this.#queue(c.label))));
    if (this.#channel !== ch || this.#cancelled) return;
    const ops: Promise<unknown>[] = [];
    for (const c of changes.consume) {
      const tag: Tag = {
        id: `${this.#deps.id}.${++this.#tagSeq}`,
        label: c.label,
        credit: c.credit,
        channel: ch,
        phase: "live",
        accepted: 0,
        parked: 0,
        dying: 0,
      };
      this.#tags.add(tag);
      // basic.qos sets the prefetch of the consumers created after it on this channel; amqplib sends
      // RPCs in call order, so each consume gets the qos just before it.
      ops.push(ch.prefetch(c.credit));
      ops.push(
        ch
          .consume(this.#queue(c.label), (m) => this.#onMessage(tag, m), { consumerTag: tag.id })
          .catch((err) => {
            tag.phase = "cancelled";
            this.#gc(tag);
            throw err;
          }),
      );
    }
    await Promise.all(ops);
    this.#dirty = true;
  }

  async #probe(): Promise<void> {
    await Promise.all(
      this.labels.map(async (l) => {
        const depth = await this.#deps.declarations.depth(this.#queue(l));
        this.#info.get(l)!.depth = depth;
      }),
    );
  }

  /** Backlog is only worth probing when some label could not take a job that arrived now. */
  #someLabelIsBlind(): boolean {
    return this.#labelStates().some((l) => l.tags.every((t) => t.held >= t.credit));
  }

  #startProbing(): void {
    this.#probing?.abort();
    const ac = new AbortController();
    this.#probing = ac;
    (async () => {
      for await (const _ of every(this.#deps.probeIntervalMs, undefined, { signal: ac.signal })) {
        if (this.#prefetch === 0 || !this.#someLabelIsBlind()) continue;
        await this.#probe();
        void this.#reconcile();
      }
    })().catch(() => {});
  }
}
