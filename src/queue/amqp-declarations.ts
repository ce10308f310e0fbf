// Declares the topology on one connection, each queue once, on a channel of its own: a refused
// declaration closes the channel it ran on, and it must not take publishes or consumers with it.
// It never deletes anything and never holds messages.
import type { Channel, ChannelModel } from "amqplib";
import { toError } from "../lifecycle/to-error.js";
import { type AmqpTopology, cancelQueueOptions, deadLetterQueueOptions, workQueueOptions } from "./amqp-topology.js";
import { TopologyConflictError } from "./errors.js";

const PRECONDITION_FAILED = 406;
const NOT_FOUND = 404;

function amqpCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
}

export class AmqpDeclarations {
  readonly #declared = new Set<string>();
  readonly #inflight = new Map<string, Promise<void>>();
  #model: ChannelModel | undefined;
  #channel: Promise<Channel> | undefined;

  constructor(readonly topology: AmqpTopology) {}

  /** Starts over on a new connection: nothing is known to exist there yet. */
  reset(model: ChannelModel | undefined): void {
    this.#model = model;
    this.#channel = undefined;
    this.#declared.clear();
    this.#inflight.clear();
  }

  isDeclared(queue: string): boolean {
    return this.#declared.has(queue);
  }

  /** Forgets a queue the broker told us is gone (deleted by an operator), so it is declared again. */
  forget(queue: string): void {
    this.#declared.delete(queue);
  }

  /** The dead-letter exchange and queue and the cancel exchange. */
  async base(): Promise<void> {
    const t = this.topology;
    await this.#run(t.deadLetterExchange, async (ch) => {
      await ch.assertExchange(t.deadLetterExchange, "fanout", { durable: true });
      await ch.assertQueue(t.deadLetterQueue, deadLetterQueueOptions());
      await ch.bindQueue(t.deadLetterQueue, t.deadLetterExchange, "");
      await ch.assertExchange(t.cancelExchange, "fanout", { durable: true });
    });
  }

  /** A job or event queue, declared once per connection. */
  workQueue(queue: string): Promise<void> {
    if (this.#declared.has(queue)) return Promise.resolve();
    let p = this.#inflight.get(queue);
    if (!p) {
      const model = this.#model;
      p = this.#run(queue, (ch) => ch.assertQueue(queue, workQueueOptions(this.topology)).then(() => {})).then(() => {
        if (this.#model === model) this.#declared.add(queue);
      });
      p.finally(() => this.#inflight.delete(queue)).catch(() => {});
      this.#inflight.set(queue, p);
    }
    return p;
  }

  /** A cancel subscription's queue, bound to the cancel exchange. */
  cancelQueue(queue: string, expiresMs: number): Promise<void> {
    return this.#run(queue, async (ch) => {
      await ch.assertQueue(queue, cancelQueueOptions(expiresMs));
      await ch.bindQueue(queue, this.topology.cancelExchange, "");
    });
  }

  /** A label's serving queue (see AmqpTopology.servingQueue): gone with its last consumer. */
  servingQueue(queue: string): Promise<void> {
    return this.#run(queue, async (ch) => {
      await ch.assertQueue(queue, { durable: false, autoDelete: true });
    });
  }

  /** Consumers of a queue: 0 when it does not exist, undefined when it cannot be asked now. */
  async consumerCount(queue: string): Promise<number | undefined> {
    try {
      return await this.#run(queue, async (ch) => (await ch.checkQueue(queue)).consumerCount);
    } catch (err) {
      return amqpCode(err) === NOT_FOUND ? 0 : undefined;
    }
  }

  /** Ready messages in a queue, or undefined when it does not exist (or cannot be asked now). */
  async depth(queue: string): Promise<number | undefined> {
    try {
      return await this.#run(queue, async (ch) => (await ch.checkQueue(queue)).messageCount);
    } catch {
      return undefined;
    }
  }

  async deleteQueue(queue: string): Promise<void> {
    await this.#run(queue, async (ch) => {
      await ch.deleteQueue(queue);
    });
    this.#declared.delete(queue);
  }

  async #run<T>(entity: string, op: (ch: Channel) => Promise<T>, retried = false): Promise<T> {
    const model = this.#model;
    const ch = await this.#openChannel();
    try {
      return await op(ch);
    } catch (err) {
      // Without a reply code the channel died under us (e.g. another declaration was refused on it):
      // once more on a fresh channel, if the connection is still the same.
      if (amqpCode(err) === undefined && !retried && this.#model === model && model) return this.#run(entity, op, true);
      // The broker closes a channel on a refused declaration; its 'close' handler makes the next call open a new one.
      const code = amqpCode(err);
      if (code === PRECONDITION_FAILED) throw new TopologyConflictError(entity, { cause: toError(err) });
      if (code === NOT_FOUND) this.#declared.delete(entity);
      throw err;
    }
  }

  #openChannel(): Promise<Channel> {
    const model = this.#model;
    if (!model) return Promise.reject(new Error("not connected to rabbitmq"));
    if (!this.#channel) {
      const p = model.createChannel().then((ch) => {
        ch.on("error", () => {});
        ch.on("close", () => {
          if (this.#channel === p) this.#channel = undefined;
        });
        return ch;
      });
      p.catch(() => {
        if (this.#channel === p) this.#channel = undefined;
      });
      this.#channel = p;
    }
    return this.#channel;
  }
}
