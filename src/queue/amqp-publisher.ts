// Publishes with publisher confirms on one confirm channel per connection. Every publish is written
// at once (many in flight, confirmed in batches by the broker) and its promise resolves only when
// RabbitMQ confirmed it — on this connection or, after an outage, on a later one: whatever was not
// confirmed when a connection died is published again, in its original order. It never drops a
// message silently: a negative confirm rejects, an unroutable message is declared for and resent
// (a missing queue returns it; a missing exchange closes the channel, and the bus declares again).
import { setTimeout as sleep } from "node:timers/promises";
import type { ChannelModel, ConfirmChannel, Message, Options } from "amqplib";
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";
import { PublishRefusedError, PublishUnconfirmedError, TopologyConflictError } from "./errors.js";

function hasAmqpCode(err: unknown): boolean {
  return typeof (err as { code?: unknown } | null)?.code === "number";
}

export interface PublishRequest {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly properties: Options.Publish & { readonly messageId: string };
  /** A work queue that must exist first (declared once per connection); set for direct-to-queue publishes. */
  readonly queue?: string;
}

interface Outgoing extends PublishRequest {
  readonly seq: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  /** The channel it was last written on; confirms from any other are stale. */
  channel: ConfirmChannel | undefined;
  /** The broker returned it as unroutable (its queue was missing): resend after the confirm. */
  returned: boolean;
}

export interface PublisherDeps {
  readonly log: Logger;
  readonly isDeclared: (queue: string) => boolean;
  readonly declare: (queue: string) => Promise<void>;
  readonly forget: (queue: string) => void;
  /**
   * The confirm channel died while its connection lives on, e.g. closed by the broker (404) for a
   * publish to an exchange an operator deleted; `err` is the broker's reason when it gave one.
   */
  readonly onChannelLost: (err: Error) => void;
}

export class AmqpPublisher {
  readonly #deps: PublisherDeps;
  /** Every publish not confirmed yet, in publish order. */
  readonly #pending = new Map<number, Outgoing>();
  /** Publishes waiting for a channel, a declaration or a drain. */
  #unsent: Outgoing[] = [];
  readonly #closed = new WeakSet<ConfirmChannel>();
  readonly #idleWaiters = new Set<() => void>();
  #channel: ConfirmChannel | undefined;
  readonly #stop = new AbortController();
  #blocked = false;
  #pumping = false;
  #seq = 0;

  constructor(deps: PublisherDeps) {
    this.#deps = deps;
  }

  get unconfirmed(): number {
    return this.#pending.size;
  }

  publish(req: PublishRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const o: Outgoing = { ...req, seq: ++this.#seq, resolve, reject, channel: undefined, returned: false };
      this.#pending.set(o.seq, o);
      this.#unsent.push(o);
      void this.#pump();
    });
  }

  /** Takes a fresh confirm channel on a new connection and resends everything unconfirmed. */
  async attach(model: ChannelModel): Promise<void> {
    const ch = await model.createConfirmChannel();
    let why: Error | undefined;
    ch.on("error", (err: unknown) => {
      why = toError(err);
    });
    ch.on("close", () => this.#onChannelClose(ch, why));
    ch.on("return", (msg: Message) => this.#onReturn(ch, msg));
    this.#channel = ch;
    this.#blocked = false;
    this.#unsent = [...this.#pending.values()];
    void this.#pump();
  }

  /** The connection is gone: hold everything until the next attach. */
  detach(): void {
    if (this.#channel) this.#closed.add(this.#channel);
    this.#channel = undefined;
    this.#blocked = false;
  }

  /** Resolves once nothing is unconfirmed, or when `signal` aborts (then rejects with its reason). */
  idle(signal: AbortSignal): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        signal.removeEventListener("abort", onAbort);
        this.#idleWaiters.delete(done);
        resolve();
      };
      const onAbort = (): void => {
        this.#idleWaiters.delete(done);
        reject(signal.reason);
      };
      this.#idleWaiters.add(done);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Rejects every unconfirmed publish: the bus is stopping for good. */
  failAll(): void {
    this.#stop.abort();
    for (const o of this.#pending.values()) o.reject(new PublishUnconfirmedError(o.properties.messageId));
    this.#pending.clear();
    this.#unsent = [];
    this.#notifyIdle();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#unsent.length > 0 && this.#channel && !this.#blocked) {
        const o = this.#unsent[0]!;
        if (!this.#pending.has(o.seq)) {
          this.#unsent.shift();
          continue;
        }
        if (o.queue && !this.#deps.isDeclared(o.queue)) {
          const before = this.#channel;
          try {
            await this.#deps.declare(o.queue);
          } catch (err) {
            if (err instanceof TopologyConflictError || hasAmqpCode(err)) {
              // The broker refused the declaration itself (conflict, permissions): retrying cannot help.
              this.#unsent.shift();
              this.#settle(o, toError(err));
              continue;
            }
            this.#deps.log.debug({ err: toError(err).message, queue: o.queue }, "declaring before publish failed");
            // A new connection arrived meanwhile (its attach() found this pump busy): go on with it.
            if (this.#channel && this.#channel !== before) continue;
            // The same connection still looks alive: try again shortly; else attach() restarts the pump.
            if (this.#channel) {
              await sleep(200, undefined, { signal: this.#stop.signal }).catch(() => {});
              continue;
            }
            return;
          }
          continue;
        }
        const ch = this.#channel;
        this.#unsent.shift();
        o.channel = ch;
        o.returned = false;
        let flushed: boolean;
        try {
          flushed = ch.publish(
            o.exchange,
            o.routingKey,
            o.content,
            { ...o.properties, mandatory: o.queue !== undefined },
            (err: unknown) => this.#onConfirm(o, ch, err),
          );
        } catch {
          // The channel closed under us; everything unconfirmed goes out again on the next one.
          o.channel = undefined;
          return;
        }
        if (!flushed) {
          this.#blocked = true;
          ch.once("drain", () => {
            if (this.#channel !== ch) return;
            this.#blocked = false;
            void this.#pump();
          });
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  #onConfirm(o: Outgoing, ch: ConfirmChannel, err: unknown): void {
    if (o.channel !== ch) return;
    if (err === null || err === undefined) {
      if (o.returned) {
        // Confirmed but unroutable: its queue is gone. Declare it again and resend.
        if (o.queue) this.#deps.forget(o.queue);
        this.#deps.log.warn(
          { queue: o.queue, messageId: o.properties.messageId },
          "a queue was missing on publish; declaring it again and resending",
        );
        o.channel = undefined;
        this.#unsent.push(o);
        void this.#pump();
        return;
      }
      this.#settle(o);
      return;
    }
    // A failed confirm is either a broker nack or the channel closing. amqplib fails the callbacks
    // before our 'close' listener runs, so decide once this turn's close handling is done.
    queueMicrotask(() => {
      if (o.channel !== ch || this.#closed.has(ch)) return;
      this.#settle(o, new PublishRefusedError(o.properties.messageId, o.queue ?? o.exchange, { cause: toError(err) }));
    });
  }

  #onReturn(ch: ConfirmChannel, msg: Message): void {
    const id: unknown = msg.properties.messageId;
    for (const o of this.#pending.values())
      if (o.channel === ch && o.properties.messageId === id && o.routingKey === msg.fields.routingKey)
        o.returned = true;
  }

  #onChannelClose(ch: ConfirmChannel, why: Error | undefined): void {
    this.#closed.add(ch);
    if (this.#channel !== ch) return;
    this.#channel = undefined;
    this.#blocked = false;
    this.#deps.onChannelLost(why ?? new Error("the publisher confirm channel closed"));
  }

  #settle(o: Outgoing, err?: Error): void {
    if (!this.#pending.delete(o.seq)) return;
    if (err) o.reject(err);
    else o.resolve();
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (this.#pending.size > 0) return;
    for (const w of [...this.#idleWaiters]) w();
  }
}
