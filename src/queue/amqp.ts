// The RabbitMQ JobBus: durable quorum queues (one per runs-on label for jobs, one per runner instance
// for events), persistent messages, publisher confirms, manual acks, a dead-letter exchange and
// queue that keep refused messages with their reason (header x-gnomon-reason), and Cancel broadcasts
// through a fanout exchange. It survives broker restarts and dropped connections by itself: it
// reconnects with backoff and jitter, restores channels, topology and consumers (with their current
// prefetch), and publishes again whatever was not confirmed. It never lets an undecodable message
// reach a callback, and never resolves a publish the broker has not confirmed.
//
// Decisions (see also amqp-job-consumer.ts for prefetch across labels):
// - Message id = job id (events `${jobId}:${seq}`): delivery is at least once; consumers dedupe.
// - Every name sits under a prefix (default "gnomon"): installations, and tests, share one vhost.
// - Work queues are declared by whoever uses them first, publisher or consumer, with identical
//   arguments (amqp-topology.ts), so a job published before any orchestrator ran is kept. Publishes
//   to a queue are mandatory: if an operator deleted it, it is declared again and the job resent.
// - Ordering: FIFO per label. nack({ requeue: true }) puts a job at the BACK of its quorum queue;
//   jobs held by a consumer whose channel or connection closes go back to the FRONT, in order.
// - A JobDelivery or EventDelivery settled after its connection died is a no-op: the broker has put
//   it back already and delivers it again (redelivered: true). Until it is settled, such a job still
//   counts against its consumer's prefetch: the orchestrator is still running it.
// - Cancel subscriptions use a durable queue with x-expires instead of an exclusive one: it outlives
//   a dropped connection, so no Cancel is lost during an outage; the bus deletes it on cancel/stop,
//   the broker once it has been unused for cancelQueueExpiresMs.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { ChannelModel, ConsumeMessage, Options } from "amqplib";
import type { Cancel } from "../contract/cancel.js";
import { encode } from "../contract/codec.js";
import type { JobEvent } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";
import { backoffMs, type Intervals, jitter } from "../lifecycle/backoff.js";
import { deferred, type ServiceStatus } from "../lifecycle/service.js";
import { toError } from "../lifecycle/to-error.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import { redactUrl } from "../telemetry/redact.js";
import { closeQuietly } from "./amqp-close.js";
import { AmqpConnection, DEFAULT_RECONNECT_BACKOFF } from "./amqp-connection.js";
import { AmqpDeclarations } from "./amqp-declarations.js";
import { AmqpJobConsumer, checkPrefetch } from "./amqp-job-consumer.js";
import { AmqpPublisher, type PublishRequest } from "./amqp-publisher.js";
import {
  AmqpCancelSubscription,
  AmqpEventSubscription,
  AmqpServingSubscription,
  type Restorable,
} from "./amqp-subscriptions.js";
import { type AmqpTopology, amqpTopology, DEFAULT_PREFIX } from "./amqp-topology.js";
import type { EventDelivery, JobBus, JobConsumer, JobDelivery, Subscription } from "./bus.js";
import { busStatus } from "./bus-status.js";
import {
  DEAD_AT_HEADER,
  type DeadLetter,
  type DeadLetterInspector,
  REASON_HEADER,
  SOURCE_HEADER,
} from "./dead-letters.js";
import { BusStoppedError, TopologyConflictError } from "./errors.js";

export interface AmqpBusOptions {
  /** amqp://user:pass@host:5672/vhost */
  readonly url: string;
  /** Namespace of every queue and exchange; default "gnomon". */
  readonly prefix?: string;
  readonly log?: Logger;
  /** Appended to the connection name the broker shows, e.g. the role ("orchestrator"). */
  readonly connectionName?: string;
  /** How long start() keeps trying to reach the broker. */
  readonly startTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly heartbeatSeconds?: number;
  readonly reconnectBackoff?: Intervals;
  /** Most unacknowledged events per event subscription. */
  readonly eventPrefetch?: number;
  /** How often a multi-label job consumer looks at the backlog of labels it has no free credit for. */
  readonly probeIntervalMs?: number;
  /** A cancel subscription's queue is deleted by the broker after being unused this long. */
  readonly cancelQueueExpiresMs?: number;
}

const MAX_REASON_CHARS = 2_000;

type State = "new" | "starting" | "running" | "stopping" | "stopped";

export class AmqpBus implements JobBus, DeadLetterInspector {
  readonly name = "queue (rabbitmq)";
  readonly topology: AmqpTopology;
  readonly done: Promise<Error | undefined>;
  readonly #done = deferred<Error | undefined>();
  readonly #log: Logger;
  readonly #url: string;
  readonly #opts: AmqpBusOptions;
  readonly #conn: AmqpConnection;
  readonly #declarations: AmqpDeclarations;
  readonly #publisher: AmqpPublisher;
  readonly #consumers = new Set<AmqpJobConsumer>();
  readonly #subscriptions = new Set<Restorable>();
  #state: State = "new";
  #fatalError: Error | undefined;
  #stopped: Promise<void> | undefined;
  /** Publisher channels lost in a row (each soon after the last), and when the last one was. */
  #publisherLosses = 0;
  #publisherLostAt = 0;
  #publisherRestore: NodeJS.Timeout | undefined;

  constructor(opts: AmqpBusOptions) {
    this.#opts = opts;
    this.#url = opts.url;
    this.topology = amqpTopology(opts.prefix ?? DEFAULT_PREFIX);
    this.#log = opts.log ?? rootLogger().child({ component: "queue", bus: "rabbitmq" });
    this.done = this.#done.promise;
    this.#declarations = new AmqpDeclarations(this.topology);
    this.#publisher = new AmqpPublisher({
      log: this.#log,
      isDeclared: (q) => this.#declarations.isDeclared(q),
      declare: (q) => this.#declarations.workQueue(q),
      forget: (q) => this.#declarations.forget(q),
      onChannelLost: (err) => this.#restorePublisher(err),
    });
    this.#conn = new AmqpConnection({
      url: opts.url,
      log: this.#log,
      heartbeatSeconds: opts.heartbeatSeconds ?? 15,
      backoff: opts.reconnectBackoff ?? DEFAULT_RECONNECT_BACKOFF,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      connectionName: `gnomon ${hostname()} pid ${process.pid}${opts.connectionName ? ` ${opts.connectionName}` : ""}`,
      onUp: (model) => this.#restore(model),
      onDown: () => this.#lost(),
      onFatal: (err) => this.#fatal(err),
    });
  }

  /** Connected and restored right now (for health checks): false during an outage. */
  get isConnected(): boolean {
    return this.#conn.isUp;
  }

  async start(): Promise<void> {
    if (this.#state !== "new") throw new BusStoppedError("start (a bus starts once)");
    this.#state = "starting";
    try {
      await this.#conn.open(this.#opts.startTimeoutMs ?? 30_000);
    } catch (err) {
      this.#state = "stopped";
      await this.#conn.close();
      this.#done.resolve(toError(err));
      throw err;
    }
    this.#state = "running";
    this.#log.info({ url: redactUrl(this.#url), prefix: this.topology.prefix }, "connected to rabbitmq");
  }

  stop(deadline: AbortSignal): Promise<void> {
    this.#stopped ??= this.#stop(deadline);
    return this.#stopped;
  }

  async #stop(deadline: AbortSignal): Promise<void> {
    if (this.#state === "new" || this.#state === "stopped") {
      this.#state = "stopped";
      this.#done.resolve(undefined);
      return;
    }
    this.#state = "stopping";
    clearTimeout(this.#publisherRestore);
    // Take no new jobs: held ones go back to the front of their queues.
    await Promise.all([...this.#consumers].map((c) => c.cancel()));
    try {
      await this.#publisher.idle(deadline);
    } catch {
      this.#log.warn(
        { unconfirmed: this.#publisher.unconfirmed },
        "stopped before rabbitmq confirmed every publish; those publishes were rejected",
      );
    }
    this.#publisher.failAll();
    await Promise.all([...this.#subscriptions].map((s) => s.close(this.#conn.isUp)));
    await this.#conn.close();
    this.#state = "stopped";
    this.#done.resolve(undefined);
  }

  #running(what: string): void {
    if (this.#state !== "running") throw new BusStoppedError(what);
  }

  get connected(): boolean {
    return this.#state === "running" && this.#conn.isUp;
  }

  get publishingBlocked(): string | undefined {
    return this.#state === "running" ? this.#conn.blockedReason : undefined;
  }

  status(): ServiceStatus {
    return busStatus({
      phase: this.#state,
      connected: this.#conn.isUp,
      blocked: this.#conn.blockedReason,
      fatal: this.#fatalError,
      where: redactUrl(this.#url),
    });
  }

  async publishJob(request: JobRequest): Promise<void> {
    this.#running("publishJob");
    const queue = this.topology.jobQueue(request.runsOn);
    return this.#publisher.publish(this.#toQueue(queue, request.id, "gnomon.JobRequest.v1", encode(request)));
  }

  async publishEvent(replyTo: string, event: JobEvent): Promise<void> {
    this.#running("publishEvent");
    const queue = this.topology.eventQueue(replyTo);
    return this.#publisher.publish(
      this.#toQueue(queue, `${event.jobId}:${event.seq}`, "gnomon.JobEvent.v1", encode(event)),
    );
  }

  async publishCancel(cancel: Cancel): Promise<void> {
    this.#running("publishCancel");
    return this.#publisher.publish({
      exchange: this.topology.cancelExchange,
      routingKey: "",
      content: encode(cancel),
      properties: this.#properties(`cancel:${cancel.jobId}:${cancel.t}`, "gnomon.Cancel.v1"),
    });
  }

  async consumeJobs(
    labels: readonly string[],
    prefetch: number,
    onJob: (job: JobDelivery) => void,
  ): Promise<JobConsumer> {
    this.#running("consumeJobs");
    checkPrefetch(prefetch);
    if (labels.length === 0) throw new RangeError("consumeJobs needs at least one label");
    const consumer: AmqpJobConsumer = new AmqpJobConsumer(
      {
        id: `gnomon-${randomUUID().slice(0, 8)}`,
        topology: this.topology,
        declarations: this.#declarations,
        deadLetter: (source, msg, reason) => this.#deadLetter(source, msg, reason),
        currentModel: () => this.#conn.model,
        log: this.#log,
        probeIntervalMs: this.#opts.probeIntervalMs ?? 1_000,
        onGone: (c) => this.#consumers.delete(c),
      },
      labels,
      prefetch,
      onJob,
    );
    this.#consumers.add(consumer);
    await this.#attachNow(consumer, () => consumer.cancel());
    const serving: AmqpServingSubscription[] = [];
    const cancel = async () => {
      await consumer.cancel();
      await Promise.all(serving.map((s) => s.close(true)));
    };
    try {
      for (const label of labels) {
        const s = new AmqpServingSubscription(this.#subscriptionDeps(), this.topology.servingQueue(label));
        serving.push(s);
        this.#subscriptions.add(s);
        await this.#attachNow(s, () => s.close(true));
      }
    } catch (err) {
      await cancel();
      throw err;
    }
    return { setPrefetch: (n) => consumer.setPrefetch(n), cancel };
  }

  async jobConsumers(label: string): Promise<number | undefined> {
    this.#running("jobConsumers");
    if (!this.#conn.model) return undefined;
    return this.#declarations.consumerCount(this.topology.servingQueue(label));
  }

  async consumeEvents(replyTo: string, onEvent: (delivery: EventDelivery) => void): Promise<Subscription> {
    this.#running("consumeEvents");
    const sub = new AmqpEventSubscription(
      this.#subscriptionDeps(),
      this.topology.eventQueue(replyTo),
      this.#opts.eventPrefetch ?? 256,
      onEvent,
    );
    this.#subscriptions.add(sub);
    await this.#attachNow(sub, () => sub.close(false));
    return sub;
  }

  async consumeCancels(onCancel: (cancel: Cancel) => void): Promise<Subscription> {
    this.#running("consumeCancels");
    const sub = new AmqpCancelSubscription(
      this.#subscriptionDeps(),
      this.topology.cancelQueue(randomUUID()),
      this.#opts.cancelQueueExpiresMs ?? 3_600_000,
      onCancel,
    );
    this.#subscriptions.add(sub);
    await this.#attachNow(sub, () => sub.close(true));
    return sub;
  }

  /**
   * The oldest dead letters, left in place: they are read on a channel of their own that is then
   * closed, which puts them back at the front of the dead-letter queue in their order.
   */
  async peekDeadLetters(limit = 100): Promise<readonly DeadLetter[]> {
    const model = this.#conn.model;
    if (!model) throw new BusStoppedError("peekDeadLetters (not connected to rabbitmq right now)");
    const ch = await model.createChannel();
    ch.on("error", () => {});
    const out: DeadLetter[] = [];
    try {
      while (out.length < limit) {
        const m = await ch.get(this.topology.deadLetterQueue, { noAck: false });
        if (m === false) break;
        const h = (m.properties.headers ?? {}) as Record<string, unknown>;
        out.push({
          source: String(h[SOURCE_HEADER] ?? m.fields.routingKey),
          messageId: typeof m.properties.messageId === "string" ? m.properties.messageId : "",
          reason: String(h[REASON_HEADER] ?? h["x-first-death-reason"] ?? "unknown"),
          body: m.content.toString("utf8"),
          deadLetteredAt: Number(h[DEAD_AT_HEADER] ?? 0),
        });
      }
    } finally {
      await closeQuietly(ch);
    }
    return out;
  }

  #toQueue(queue: string, messageId: string, type: string, content: Buffer): PublishRequest {
    return { exchange: "", routingKey: queue, queue, content, properties: this.#properties(messageId, type) };
  }

  #properties(messageId: string, type: string): Options.Publish & { messageId: string } {
    return {
      messageId,
      type,
      persistent: true,
      contentType: "application/json",
      appId: "gnomon",
      timestamp: Math.floor(Date.now() / 1000),
    };
  }

  /** Publishes `msg` to the dead-letter exchange with why, where from and when; resolves once confirmed. */
  #deadLetter(source: string, msg: ConsumeMessage, reason: string): Promise<void> {
    const messageId: unknown = msg.properties.messageId;
    const id = typeof messageId === "string" ? messageId : "";
    this.#log.error({ queue: source, messageId: id, reason }, "dead-lettered a message");
    const headers: Record<string, unknown> = {
      ...((msg.properties.headers ?? {}) as Record<string, unknown>),
      [REASON_HEADER]: reason.slice(0, MAX_REASON_CHARS),
      [SOURCE_HEADER]: source,
      [DEAD_AT_HEADER]: Date.now(),
    };
    return this.#publisher.publish({
      exchange: this.topology.deadLetterExchange,
      routingKey: source,
      content: msg.content,
      properties: {
        messageId: id,
        persistent: true,
        headers,
        ...(typeof msg.properties.type === "string" ? { type: msg.properties.type } : {}),
        ...(typeof msg.properties.contentType === "string" ? { contentType: msg.properties.contentType } : {}),
      },
    });
  }

  #subscriptionDeps() {
    return {
      declarations: this.#declarations,
      deadLetter: (source: string, msg: ConsumeMessage, reason: string) => this.#deadLetter(source, msg, reason),
      currentModel: () => this.#conn.model,
      log: this.#log,
      onGone: (s: Restorable) => this.#subscriptions.delete(s),
    };
  }

  /** Attaches at once while connected (its errors reach the caller); otherwise on reconnect. */
  async #attachNow(r: { attach(model: ChannelModel): Promise<void> }, undo: () => Promise<void>): Promise<void> {
    const model = this.#conn.model;
    if (!model) {
      this.#log.info("rabbitmq is unreachable right now; the consumer starts when it is back");
      return;
    }
    try {
      await r.attach(model);
    } catch (err) {
      await undo();
      throw err;
    }
  }

  /** Everything on a new connection, before it counts as up: a throw fails this attempt. */
  async #restore(model: ChannelModel): Promise<void> {
    this.#declarations.reset(model);
    await this.#declarations.base();
    await this.#publisher.attach(model);
    // One consumer whose queue now conflicts must not keep the whole connection down.
    const attach = (r: { attach(m: ChannelModel): Promise<void> }, what: string) =>
      r.attach(model).catch((err: unknown) => {
        if (!(err instanceof TopologyConflictError)) throw err;
        this.#log.error({ err: err.message }, `${what} could not be restored; it stays idle until the next reconnect`);
      });
    await Promise.all([...this.#consumers].map((c) => attach(c, `job consumer for ${c.labels.join(", ")}`)));
    await Promise.all([...this.#subscriptions].map((s) => attach(s, "a subscription")));
  }

  #lost(): void {
    this.#declarations.reset(undefined);
    this.#publisher.detach();
    for (const c of this.#consumers) c.detach();
    for (const s of this.#subscriptions) s.detach();
  }

  /**
   * The publisher's channel died while the connection lives on. The broker closes it (404) for a
   * publish to a missing exchange: one an operator deleted, and with it the bindings of the
   * dead-letter and cancel queues. Resending on a bare new channel would close it again at once, in
   * a loop, so the exchanges and every binding are declared again first; and a channel that keeps
   * dying is restored with the reconnect backoff, never in a tight loop.
   */
  #restorePublisher(err: Error): void {
    // After this turn's close handling: when the whole connection went, the reconnect restores it.
    setImmediate(() => {
      if (!this.#conn.model || this.#state === "stopped") return;
      const now = Date.now();
      const backoff = this.#opts.reconnectBackoff ?? DEFAULT_RECONNECT_BACKOFF;
      // A channel that lived longer than the longest backoff starts the count again.
      this.#publisherLosses = now - this.#publisherLostAt > backoff.maxMs ? 1 : this.#publisherLosses + 1;
      this.#publisherLostAt = now;
      const delayMs = this.#publisherLosses > 1 ? jitter(backoffMs(backoff, this.#publisherLosses - 1)) : 0;
      this.#log.warn({ err: err.message, retryInMs: delayMs }, "the publisher channel closed; restoring it");
      clearTimeout(this.#publisherRestore);
      this.#publisherRestore = setTimeout(() => {
        const model = this.#conn.model;
        if (!model || this.#state === "stopped") return;
        void (async () => {
          await this.#declarations.base();
          await Promise.all([...this.#subscriptions].map((s) => s.redeclare()));
          await this.#publisher.attach(model);
        })().catch((e: unknown) => this.#conn.recycle(toError(e)));
      }, delayMs);
    });
  }

  #fatal(err: Error): void {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    this.#fatalError = err;
    this.#publisher.failAll();
    for (const c of [...this.#consumers]) void c.cancel();
    this.#done.resolve(err);
  }
}
