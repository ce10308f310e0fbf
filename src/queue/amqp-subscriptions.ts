// The simpler consumers of the RabbitMQ bus: a runner instance's event stream (a durable quorum
// queue, manual acks), a Cancel subscription (its own queue bound to the cancel fanout), and a job
// consumer's presence on a label's serving queue. All restore themselves on a new channel or
// connection and never pass on a message that does not decode: that one is dead-lettered with its
// reason.
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Cancel } from "../contract/cancel.js";
import { decodeCancel, decodeJobEvent } from "../contract/codec.js";
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";
import { closeQuietly } from "./amqp-close.js";
import type { AmqpDeclarations } from "./amqp-declarations.js";
import type { EventDelivery, Subscription } from "./bus.js";

export interface SubscriptionDeps {
  readonly declarations: AmqpDeclarations;
  readonly deadLetter: (source: string, msg: ConsumeMessage, reason: string) => Promise<void>;
  readonly currentModel: () => ChannelModel | undefined;
  readonly log: Logger;
  readonly onGone: (s: Restorable) => void;
}

/** What the bus restores on every new connection. */
export interface Restorable {
  attach(model: ChannelModel): Promise<void>;
  /** Declares its queue and bindings again on the live connection (an exchange was recreated). */
  redeclare(): Promise<void>;
  detach(): void;
  /** Ends it; `graceful` also removes what only it used (its cancel queue). */
  close(graceful: boolean): Promise<void>;
}

abstract class ChannelConsumer implements Restorable, Subscription {
  protected channel: Channel | undefined;
  protected closed = false;

  constructor(
    protected readonly deps: SubscriptionDeps,
    readonly queue: string,
  ) {}

  protected abstract declare(): Promise<void>;
  protected abstract prefetch(): number;
  protected abstract handle(ch: Channel, msg: ConsumeMessage): void;

  async attach(model: ChannelModel): Promise<void> {
    if (this.closed) return;
    await this.declare();
    const ch = await model.createChannel();
    ch.on("error", () => {});
    ch.on("close", () => this.#onChannelClose(ch));
    // Current before consuming: the first message can arrive right behind the consume-ok.
    this.channel = ch;
    try {
      await ch.prefetch(this.prefetch());
      await ch.consume(this.queue, (msg) => {
        if (msg === null) {
          // The broker cancelled us: the queue was deleted. Closing the channel restores everything.
          this.deps.declarations.forget(this.queue);
          void closeQuietly(ch);
          return;
        }
        if (this.channel === ch && !this.closed) this.handle(ch, msg);
      });
    } catch (err) {
      if (this.channel === ch) this.channel = undefined;
      await closeQuietly(ch);
      throw err;
    }
    if (this.closed) await closeQuietly(ch);
  }

  detach(): void {
    this.channel = undefined;
  }

  async redeclare(): Promise<void> {
    if (!this.closed) await this.declare();
  }

  cancel(): Promise<void> {
    return this.close(true);
  }

  async close(graceful: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const ch = this.channel;
    this.channel = undefined;
    this.deps.onGone(this);
    // Unacked messages go back to the front of the queue.
    if (ch) await closeQuietly(ch);
    if (graceful) await this.afterClose();
  }

  protected async afterClose(): Promise<void> {}

  protected poison(ch: Channel, msg: ConsumeMessage, reason: string): void {
    this.deps
      .deadLetter(this.queue, msg, reason)
      .then(() => {
        if (this.channel === ch) ch.ack(msg);
      })
      .catch((err: unknown) =>
        this.deps.log.error({ err: toError(err).message, queue: this.queue }, "dead-lettering a message failed"),
      );
  }

  #onChannelClose(ch: Channel): void {
    if (this.channel !== ch || this.closed) return;
    this.channel = undefined;
    setImmediate(() => {
      const model = this.deps.currentModel();
      if (!model || this.channel || this.closed) return;
      this.attach(model).catch((err: unknown) =>
        this.deps.log.error({ err: toError(err).message, queue: this.queue }, "restoring a subscription failed"),
      );
    });
  }
}

export class AmqpEventSubscription extends ChannelConsumer {
  constructor(
    deps: SubscriptionDeps,
    queue: string,
    readonly eventPrefetch: number,
    readonly onEvent: (d: EventDelivery) => void,
  ) {
    super(deps, queue);
  }

  protected declare(): Promise<void> {
    return this.deps.declarations.workQueue(this.queue);
  }

  protected prefetch(): number {
    return this.eventPrefetch;
  }

  protected handle(ch: Channel, msg: ConsumeMessage): void {
    const decoded = decodeJobEvent(msg.content);
    if (!decoded.ok) {
      this.poison(ch, msg, decoded.reason);
      return;
    }
    let settled = false;
    try {
      this.onEvent({
        event: decoded.value,
        ack: async () => {
          if (settled) return;
          settled = true;
          // After a reconnect the broker has put it back already; it is redelivered and deduped.
          if (this.channel === ch)
            try {
              ch.ack(msg);
            } catch {}
        },
      });
    } catch (err) {
      this.deps.log.error({ err: toError(err).message, queue: this.queue }, "onEvent threw; the event stays unacked");
    }
  }
}

export class AmqpCancelSubscription extends ChannelConsumer {
  constructor(
    deps: SubscriptionDeps,
    queue: string,
    readonly expiresMs: number,
    readonly onCancel: (c: Cancel) => void,
  ) {
    super(deps, queue);
  }

  protected declare(): Promise<void> {
    return this.deps.declarations.cancelQueue(this.queue, this.expiresMs);
  }

  protected prefetch(): number {
    return 64;
  }

  protected handle(ch: Channel, msg: ConsumeMessage): void {
    const decoded = decodeCancel(msg.content);
    if (!decoded.ok) {
      this.poison(ch, msg, decoded.reason);
      return;
    }
    try {
      this.onCancel(decoded.value);
    } catch (err) {
      this.deps.log.error({ err: toError(err).message, jobId: decoded.value.jobId }, "onCancel threw");
    }
    try {
      ch.ack(msg);
    } catch {}
  }

  protected override async afterClose(): Promise<void> {
    await this.deps.declarations
      .deleteQueue(this.queue)
      .catch((err: unknown) =>
        this.deps.log.debug({ err: toError(err).message, queue: this.queue }, "cancel queue not deleted; it expires"),
      );
  }
}

/** Being counted among the consumers of a label's serving queue while a job consumer lives. */
export class AmqpServingSubscription extends ChannelConsumer {
  protected declare(): Promise<void> {
    return this.deps.declarations.servingQueue(this.queue);
  }

  protected prefetch(): number {
    return 1;
  }

  protected handle(ch: Channel, msg: ConsumeMessage): void {
    // Nothing is published here; whatever arrives anyway is dropped.
    try {
      ch.ack(msg);
    } catch {}
  }
}
