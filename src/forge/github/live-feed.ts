// The live console of a github.com job (spec 8.5): a WebSocket to the job's FeedStreamUrl,
// authenticated with the job's token, carrying {count, value, stepId, startLine} messages in 1 KiB
// frames. Best effort, as in the official runner: lines that cannot be sent live are dropped here,
// because every step's uploaded log is what stays. A socket that fails is opened again a few times,
// then the job goes on without a live console.
// `ws`, because Node 20 has no WebSocket client that can send an Authorization header.
import WebSocket from "ws";
import type { Logger } from "../../telemetry/log.js";

const FRAME_BYTES = 1024;
const MAX_ATTEMPTS = 3;
const CONNECT_TIMEOUT_MS = 10_000;
/** Lines waiting for the socket beyond this are dropped (the uploaded log keeps them). */
const MAX_PENDING_LINES = 10_000;

export interface LiveFeedOptions {
  readonly url: string;
  readonly token: string;
  readonly userAgent: string;
  readonly log: Logger;
}

interface Batch {
  readonly stepId: string;
  readonly startLine: number;
  readonly value: readonly string[];
}

export class LiveFeed {
  readonly #o: LiveFeedOptions;
  #socket: WebSocket | undefined;
  #opening: Promise<WebSocket | undefined> | undefined;
  #attempts = 0;
  #closed = false;
  #pending: Batch[] = [];
  #pendingLines = 0;

  constructor(opts: LiveFeedOptions) {
    this.#o = opts;
  }

  /** Whether lines still go out live (false once the socket failed for good, or after close). */
  get live(): boolean {
    return !this.#closed && this.#attempts <= MAX_ATTEMPTS;
  }

  /** Sends one batch of a step's lines; `startLine` is the 1-based number of its first line. */
  async send(stepId: string, startLine: number, value: readonly string[]): Promise<void> {
    if (!this.live || value.length === 0) return;
    if (this.#pendingLines + value.length > MAX_PENDING_LINES) return;
    this.#pending.push({ stepId, startLine, value });
    this.#pendingLines += value.length;
    const socket = await this.#open();
    if (!socket) return;
    while (this.#pending.length > 0 && socket.readyState === WebSocket.OPEN) {
      const batch = this.#pending.shift()!;
      this.#pendingLines -= batch.value.length;
      const text = JSON.stringify({
        count: batch.value.length,
        value: batch.value,
        stepId: batch.stepId,
        startLine: batch.startLine,
      });
      const bytes = Buffer.from(text, "utf8");
      for (let at = 0; at < bytes.length; at += FRAME_BYTES)
        socket.send(bytes.subarray(at, at + FRAME_BYTES), {
          binary: false,
          fin: at + FRAME_BYTES >= bytes.length,
        });
    }
  }

  close(): void {
    this.#closed = true;
    this.#pending = [];
    this.#pendingLines = 0;
    this.#socket?.close(1000);
    this.#socket = undefined;
  }

  #open(): Promise<WebSocket | undefined> {
    if (this.#socket?.readyState === WebSocket.OPEN) return Promise.resolve(this.#socket);
    this.#opening ??= this.#connect().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #connect(): Promise<WebSocket | undefined> {
    while (this.live) {
      this.#attempts += 1;
      if (this.#attempts > MAX_ATTEMPTS) {
        this.#o.log.info({ attempts: MAX_ATTEMPTS }, "live console unavailable; the steps' logs still upload");
        this.#pending = [];
        this.#pendingLines = 0;
        return undefined;
      }
      try {
        const socket = await openSocket(this.#o);
        if (this.#closed) {
          socket.close(1000);
          return undefined;
        }
        socket.on("close", () => {
          if (this.#socket === socket) this.#socket = undefined;
        });
        socket.on("error", (err) => this.#o.log.debug({ err }, "live console socket failed"));
        this.#socket = socket;
        return socket;
      } catch (err) {
        this.#o.log.debug({ err, attempt: this.#attempts }, "could not open the live console socket");
      }
    }
    return undefined;
  }
}

function openSocket(o: LiveFeedOptions): Promise<WebSocket> {
  const url = o.url.replace(/^https:/, "wss:").replace(/^http:/, "ws:");
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, {
      headers: { Authorization: `Bearer ${o.token}`, "User-Agent": o.userAgent },
      handshakeTimeout: CONNECT_TIMEOUT_MS,
    });
    socket.once("open", () => {
      socket.removeListener("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}
