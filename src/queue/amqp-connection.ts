// One RabbitMQ connection that keeps itself alive: connects with Nagle off, reconnects with backoff
// and jitter, and runs the owner's restore step (channels, topology, consumers) before it counts as
// up again. It logs an outage once when it starts and once when it ends, never per attempt, and
// gives up only on errors that retrying cannot fix (refused credentials or vhost).
import { setTimeout as sleep } from "node:timers/promises";
import { type ChannelModel, connect } from "amqplib";
import { backoffMs, type Intervals, jitter } from "../lifecycle/backoff.js";
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";
import { redactUrl } from "../telemetry/redact.js";
import { closeQuietly } from "./amqp-close.js";
import { BrokerAccessRefusedError, BrokerUnreachableError, TopologyConflictError } from "./errors.js";

/** Reconnect backoff: the first retry after 100 ms, doubling up to 10 s (with ±20 % jitter). */
export const DEFAULT_RECONNECT_BACKOFF: Intervals = { baseMs: 100, maxMs: 10_000 };

export interface AmqpConnectionOptions {
  readonly url: string;
  readonly log: Logger;
  readonly heartbeatSeconds: number;
  readonly backoff: Intervals;
  /** Shown by `rabbitmqctl list_connections client_properties` and in the management UI. */
  readonly connectionName: string;
  /** TCP connect and AMQP handshake limit for one attempt. */
  readonly connectTimeoutMs: number;
  /** Restores everything on a fresh connection; a throw makes the attempt count as failed. */
  readonly onUp: (model: ChannelModel) => Promise<void>;
  /** A connection that was up is gone; everything on it is dead. */
  readonly onDown: (err: Error) => void;
  /** The connection ended for good (see BrokerAccessRefusedError). */
  readonly onFatal: (err: Error) => void;
}

/** The heartbeat travels in the URL's query; one the user set there wins. */
function withHeartbeat(url: string, seconds: number): string {
  try {
    const u = new URL(url);
    if (!u.searchParams.has("heartbeat")) u.searchParams.set("heartbeat", String(seconds));
    return u.toString();
  } catch {
    return url;
  }
}

function isAccessRefused(err: Error): boolean {
  return /ACCESS[-_]REFUSED|NOT[-_]ALLOWED|\b403\b|\b530\b/.test(err.message);
}

export class AmqpConnection {
  readonly #opts: AmqpConnectionOptions;
  readonly #stop = new AbortController();
  #model: ChannelModel | undefined;
  #up = false;
  #blocked: string | undefined;
  #loop: Promise<void> | undefined;

  constructor(opts: AmqpConnectionOptions) {
    this.#opts = opts;
  }

  /** The live connection, only while it is up (restored). */
  get model(): ChannelModel | undefined {
    return this.#up ? this.#model : undefined;
  }

  get isUp(): boolean {
    return this.#up;
  }

  /** The broker's reason while it blocks this connection's publishes (a resource alarm). */
  get blockedReason(): string | undefined {
    return this.#up ? this.#blocked : undefined;
  }

  /** Connects for the first time, retrying until `timeoutMs`; rejects with a typed error. */
  async open(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let attempt = 0;
    let warned = false;
    for (;;) {
      try {
        await this.#attempt();
        return;
      } catch (e) {
        const err = toError(e);
        if (this.#stop.signal.aborted) throw err;
        if (isAccessRefused(err)) throw new BrokerAccessRefusedError(redactUrl(this.#opts.url), { cause: err });
        if (err instanceof TopologyConflictError) throw err;
        attempt += 1;
        const delay = jitter(backoffMs(this.#opts.backoff, attempt));
        if (Date.now() + delay >= deadline)
          throw new BrokerUnreachableError(redactUrl(this.#opts.url), timeoutMs, { cause: err });
        if (!warned) {
          warned = true;
          this.#opts.log.warn(
            { err: err.message, url: redactUrl(this.#opts.url) },
            `rabbitmq is not reachable yet; retrying for up to ${Math.round(timeoutMs / 1000)} s`,
          );
        }
        await sleep(delay, undefined, { signal: this.#stop.signal });
      }
    }
  }

  /** Drops the connection and reconnects: the way back from a channel that died unexpectedly. */
  recycle(reason: Error): void {
    const m = this.#model;
    if (!m || !this.#up) return;
    this.#opts.log.warn({ err: reason.message }, "recycling the rabbitmq connection to recover");
    void closeQuietly(m);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    this.#up = false;
    const m = this.#model;
    this.#model = undefined;
    if (m) await closeQuietly(m);
    await this.#loop?.catch(() => {});
  }

  async #attempt(): Promise<void> {
    const model = await connect(withHeartbeat(this.#opts.url, this.#opts.heartbeatSeconds), {
      noDelay: true,
      timeout: this.#opts.connectTimeoutMs,
      clientProperties: { connection_name: this.#opts.connectionName },
    });
    // Errors arrive as 'error' followed by 'close'; 'close' is where we act.
    model.on("error", () => {});
    model.on("close", (err?: Error) => this.#onClose(model, err));
    model.on("blocked", (reason: string) => {
      if (this.#model !== model) return;
      this.#blocked = reason || "resource alarm";
      this.#opts.log.warn({ reason }, "rabbitmq blocked publishing (resource alarm); publishes wait until it clears");
    });
    model.on("unblocked", () => {
      if (this.#model !== model) return;
      this.#blocked = undefined;
      this.#opts.log.info("rabbitmq unblocked publishing");
    });
    this.#model = model;
    this.#blocked = undefined;
    try {
      await this.#opts.onUp(model);
    } catch (err) {
      this.#model = undefined;
      await closeQuietly(model);
      throw err;
    }
    if (this.#model !== model || this.#stop.signal.aborted) throw new Error("connection closed while restoring");
    this.#up = true;
  }

  #onClose(model: ChannelModel, err: Error | undefined): void {
    if (this.#model !== model) return;
    const wasUp = this.#up;
    this.#model = undefined;
    this.#up = false;
    if (this.#stop.signal.aborted || !wasUp) return;
    const why = err ?? new Error("the broker closed the connection");
    this.#opts.onDown(why);
    this.#loop = this.#reconnect(why);
  }

  async #reconnect(cause: Error): Promise<void> {
    const started = Date.now();
    this.#opts.log.warn({ err: cause.message }, "lost the rabbitmq connection; reconnecting");
    let attempt = 0;
    let last = cause;
    let loggedConflict: string | undefined;
    while (!this.#stop.signal.aborted) {
      attempt += 1;
      try {
        await sleep(jitter(backoffMs(this.#opts.backoff, attempt)), undefined, { signal: this.#stop.signal });
      } catch {
        return;
      }
      try {
        await this.#attempt();
        this.#opts.log.info(
          { attempts: attempt, outageMs: Date.now() - started },
          `reconnected to rabbitmq after ${((Date.now() - started) / 1000).toFixed(1)} s`,
        );
        return;
      } catch (e) {
        last = toError(e);
        if (isAccessRefused(last)) {
          const fatal = new BrokerAccessRefusedError(redactUrl(this.#opts.url), { cause: last });
          this.#opts.log.error({ err: fatal.message }, "rabbitmq refused the login; giving up");
          this.#opts.onFatal(fatal);
          return;
        }
        // The broker answered but refused our topology: not an outage, and it needs an operator.
        if (last instanceof TopologyConflictError && last.message !== loggedConflict) {
          loggedConflict = last.message;
          this.#opts.log.error({ err: last.message }, "rabbitmq refused gnomon's topology; retrying");
        }
        this.#opts.log.debug({ err: last.message, attempt }, "reconnect attempt failed");
      }
    }
  }
}
