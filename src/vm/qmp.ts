// A QMP client over QEMU's unix socket: negotiate capabilities, then query status, ask the guest to
// power down, or quit QEMU. Commands are correlated by id; events are passed to a listener. It
// controls one QEMU and never decides when to; machine.ts does.
import { connect, type Socket } from "node:net";
import { withTimeout } from "../lifecycle/abort.js";

export interface QmpStatus {
  readonly status: string;
  readonly running: boolean;
}

export class QmpError extends Error {
  override readonly name = "QmpError";
  readonly code = "vm.qmp";
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class QmpClient {
  readonly #sock: Socket;
  readonly #pending = new Map<string, Pending>();
  #nextId = 1;
  #buf = "";
  #closed = false;
  onEvent: ((event: string, data: unknown) => void) | undefined;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.#onData(chunk));
    sock.on("close", () => this.#fail(new QmpError("the QMP connection closed")));
    sock.on("error", (err) => this.#fail(new QmpError(`QMP socket error: ${err.message}`, { cause: err })));
  }

  /** Connects, waits for the greeting and enters command mode. */
  static async connect(path: string, timeoutMs: number, signal?: AbortSignal): Promise<QmpClient> {
    const sock = connect(path);
    const client = new QmpClient(sock);
    const greeting = new Promise<void>((resolve, reject) => {
      client.#pending.set("greeting", { resolve: () => resolve(), reject });
    });
    const timer = withTimeout(timeoutMs, signal);
    const onAbort = () => client.close();
    timer.addEventListener("abort", onAbort, { once: true });
    try {
      await greeting;
      await client.execute("qmp_capabilities");
      return client;
    } catch (err) {
      client.close();
      throw timer.aborted ? new QmpError(`no QMP greeting on ${path} within ${timeoutMs} ms`, { cause: err }) : err;
    } finally {
      timer.removeEventListener("abort", onAbort);
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) return Promise.reject(new QmpError(`QMP is closed; cannot run ${command}`));
    const id = String(this.#nextId++);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  async status(): Promise<QmpStatus> {
    const r = (await this.execute("query-status")) as { status?: string; running?: boolean };
    return { status: String(r.status ?? "unknown"), running: Boolean(r.running) };
  }

  /** ACPI power button: a guest that handles it shuts down and QEMU exits (-no-reboot). */
  async powerdown(): Promise<void> {
    await this.execute("system_powerdown");
  }

  /** Ends QEMU at once; the connection closing before the reply counts as success. */
  async quit(): Promise<void> {
    try {
      await this.execute("quit");
    } catch (err) {
      if (!(err instanceof QmpError) || !this.#closed) throw err;
    }
  }

  close(): void {
    if (!this.#closed) this.#sock.destroy();
    this.#closed = true;
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    for (let nl = this.#buf.indexOf("\n"); nl >= 0; nl = this.#buf.indexOf("\n")) {
      const line = this.#buf.slice(0, nl).trim();
      this.#buf = this.#buf.slice(nl + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if ("QMP" in msg) {
      this.#settle("greeting", undefined);
      return;
    }
    if (typeof msg["event"] === "string") {
      this.onEvent?.(msg["event"], msg["data"]);
      return;
    }
    const id = typeof msg["id"] === "string" ? msg["id"] : undefined;
    if (id === undefined) return;
    if ("error" in msg) {
      const e = msg["error"] as { class?: string; desc?: string };
      this.#settle(id, new QmpError(`QMP ${e.class ?? "error"}: ${e.desc ?? "unknown"}`));
    } else this.#settle(id, msg["return"]);
  }

  #settle(id: string, value: unknown): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (value instanceof Error) p.reject(value);
    else p.resolve(value);
  }

  #fail(err: Error): void {
    this.#closed = true;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(err);
    }
  }
}
