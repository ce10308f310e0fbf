// The egress proxy of one job: the only way a job's traffic leaves its VM (QEMU's user network is
// restricted; the proxy is served into the guest over the job's SSH connection). It speaks HTTP
// proxy requests (absolute http:// URLs) and CONNECT tunnels, resolves names on this host, judges
// every resolved address with the egress policy and connects to the vetted address itself, so a
// name that resolves differently a second time (DNS rebinding) cannot reach the host. It listens
// on no port of this host: connections are handed to accept() one by one.
import { lookup } from "node:dns/promises";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import { connect, isIP, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import type { Duplex } from "node:stream";
import type { Logger } from "../telemetry/log.js";
import { type EgressPolicy, judgeAddress, unmapped } from "./policy.js";

export interface EgressProxyOptions {
  readonly policy: EgressPolicy;
  /** "host:port" of what the job's forge gave it (server, API, Actions services): private networks pass. */
  readonly forgeEndpoints?: readonly string[];
  readonly log: Logger;
  readonly connectTimeoutMs?: number;
  /** A tunnel or upstream connection with no traffic for this long is closed. */
  readonly idleTimeoutMs?: number;
  /** Open upstream connections of this job at once. */
  readonly maxConnections?: number;
  /** This host's own addresses; default: every interface's, read at each connection. */
  readonly hostAddresses?: () => readonly string[];
  /** Name resolution; default: the system resolver (getaddrinfo), every address. */
  readonly resolve?: (host: string) => Promise<readonly string[]>;
  /** A connection was refused: for the job's log. */
  readonly onRefused?: (target: string, why: string) => void;
}

/** The proxy would not connect: the policy forbids the address, or the target is not a valid one. */
export class EgressRefusedError extends Error {
  override readonly name = "EgressRefusedError";
  readonly code = "egress.refused";
  constructor(
    readonly target: string,
    readonly why: string,
  ) {
    super(
      `gnomon refused the job's connection to ${target}: ${why}. Jobs reach the internet, their forge and ` +
        "the services gnomon forwards to them, never the gnomon host or its private networks (docs/network.md).",
    );
  }
}

/** The target is allowed but could not be reached (no such name, refused, timed out). */
export class EgressUnreachableError extends Error {
  override readonly name = "EgressUnreachableError";
  readonly code = "egress.unreachable";
  constructor(
    readonly target: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`gnomon's egress proxy could not reach ${target}: ${detail}`, options);
  }
}

const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const DEFAULT_IDLE_TIMEOUT_MS = 15 * 60_000;
const DEFAULT_MAX_CONNECTIONS = 512;
/** Refusals logged one by one per job; beyond that only counted (a job can loop on a refused port). */
const LOGGED_REFUSALS = 20;
const HOP_BY_HOP = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "upgrade",
]);

export class EgressProxy {
  readonly #opts: EgressProxyOptions;
  readonly #server: Server;
  readonly #open = new Set<Duplex>();
  readonly #forge: ReadonlySet<string>;
  #upstreams = 0;
  #closed = false;
  #connections = 0;
  #refused = 0;

  constructor(opts: EgressProxyOptions) {
    this.#opts = opts;
    this.#forge = new Set((opts.forgeEndpoints ?? []).map((e) => e.toLowerCase()));
    // Never listens: accept() hands it connections. No request timeout (uploads may be long), but
    // headers must arrive within a minute.
    this.#server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 60_000 });
    this.#server.on("request", (req: IncomingMessage, res: ServerResponse) => void this.#forward(req, res));
    this.#server.on(
      "connect",
      (req: IncomingMessage, client: Duplex, head: Buffer) => void this.#tunnel(req, client, head),
    );
    this.#server.on("clientError", (_err, socket: Duplex) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      else socket.destroy();
    });
  }

  /** Serves one connection from the guest. */
  accept(stream: Duplex): void {
    if (this.#closed) {
      stream.destroy();
      return;
    }
    this.#track(stream);
    this.#server.emit("connection", stream);
  }

  /** What the job did through the proxy, for the log at the end of the job. */
  stats(): { connections: number; refused: number } {
    return { connections: this.#connections, refused: this.#refused };
  }

  /** Ends every connection of the job. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#open) s.destroy();
    this.#open.clear();
    if (this.#refused > LOGGED_REFUSALS)
      this.#opts.log.warn({ refused: this.#refused }, "egress: more connections were refused than logged");
  }

  /**
   * Resolves `host`, judges every address and connects to the first allowed one that answers.
   * Throws EgressRefusedError or EgressUnreachableError.
   */
  async connect(host: string, port: number): Promise<Socket> {
    const bare = host.replace(/^\[(.*)\]$/, "$1");
    const target = `${isIP(bare) === 6 ? `[${bare}]` : bare}:${port}`;
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw this.#refuse(target, `${port} is not a TCP port`);
    if (this.#upstreams >= (this.#opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS))
      throw new EgressUnreachableError(target, "the job has too many connections open through the proxy");
    let addresses: readonly string[];
    try {
      addresses = isIP(bare) ? [bare] : await (this.#opts.resolve ?? resolveAll)(bare);
    } catch (err) {
      throw new EgressUnreachableError(target, `${bare} could not be resolved (${(err as Error).message})`, {
        cause: err,
      });
    }
    const own = (this.#opts.hostAddresses ?? interfaceAddresses)();
    const forge = this.#forge.has(`${bare.toLowerCase()}:${port}`);
    const allowed: string[] = [];
    let firstWhy = "";
    for (const a of addresses) {
      const v = judgeAddress(a, this.#opts.policy, own, forge);
      if (v.ok) allowed.push(unmapped(a));
      else firstWhy ||= v.why;
    }
    if (allowed.length === 0) throw this.#refuse(target, firstWhy || `${bare} has no address`);
    let last: Error | undefined;
    for (const address of allowed) {
      try {
        const socket = await this.#dial(address, port);
        // Connecting to one of our own addresses makes the kernel pick it as the source too: a
        // last check that catches host addresses no interface list shows (AnyIP routes).
        if (socket.localAddress && unmapped(socket.localAddress) === unmapped(socket.remoteAddress ?? "")) {
          socket.destroy();
          throw this.#refuse(target, `${address} is an address of the gnomon host`);
        }
        this.#connections += 1;
        this.#upstreams += 1;
        socket.once("close", () => {
          this.#upstreams -= 1;
        });
        this.#track(socket);
        return socket;
      } catch (err) {
        if (err instanceof EgressRefusedError) throw err;
        last = err as Error;
      }
    }
    throw new EgressUnreachableError(target, last?.message ?? "no address answered", { cause: last });
  }

  #dial(address: string, port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: address, port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer within ${(this.#opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000} s`));
      }, this.#opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.setTimeout(this.#opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, () => socket.destroy());
        resolve(socket);
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  #refuse(target: string, why: string): EgressRefusedError {
    this.#refused += 1;
    if (this.#refused <= LOGGED_REFUSALS) this.#opts.log.warn({ target, why }, "egress: connection refused");
    this.#opts.onRefused?.(target, why);
    return new EgressRefusedError(target, why);
  }

  #track(s: Duplex): void {
    this.#open.add(s);
    s.once("close", () => this.#open.delete(s));
  }

  async #tunnel(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    client.on("error", () => client.destroy());
    const authority = parseAuthority(req.url ?? "");
    if (!authority) {
      reply(client, 400, `CONNECT needs host:port, got ${JSON.stringify(req.url)}`);
      return;
    }
    let upstream: Socket;
    try {
      upstream = await this.connect(authority.host, authority.port);
    } catch (err) {
      reply(client, err instanceof EgressRefusedError ? 403 : 502, (err as Error).message);
      return;
    }
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) upstream.write(head);
    splice(client, upstream);
  }

  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      return sendText(
        res,
        400,
        "This is gnomon's egress proxy: it takes proxy requests (absolute http:// URLs) and CONNECT tunnels.",
      );
    }
    if (url.protocol !== "http:")
      return sendText(res, 400, `gnomon's egress proxy forwards http:// URLs; use CONNECT for ${url.protocol}`);
    let upstream: Socket;
    try {
      upstream = await this.connect(url.hostname, Number(url.port || 80));
    } catch (err) {
      return sendText(res, err instanceof EgressRefusedError ? 403 : 502, (err as Error).message);
    }
    const headers: string[] = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
      if (!HOP_BY_HOP.has(req.rawHeaders[i]!.toLowerCase())) headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    const out = request({
      createConnection: () => upstream,
      agent: false,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      setHost: !req.headers.host,
      host: url.hostname,
      port: url.port || 80,
    });
    out.on("response", (back) => {
      const kept: string[] = [];
      for (let i = 0; i + 1 < back.rawHeaders.length; i += 2)
        if (!HOP_BY_HOP.has(back.rawHeaders[i]!.toLowerCase())) kept.push(back.rawHeaders[i]!, back.rawHeaders[i + 1]!);
      res.writeHead(back.statusCode ?? 502, back.statusMessage, kept);
      back.pipe(res);
      back.on("error", () => res.destroy());
    });
    out.on("error", (err) => {
      if (res.headersSent) res.destroy();
      else sendText(res, 502, `gnomon's egress proxy lost ${url.host}: ${err.message}`);
    });
    res.on("close", () => {
      if (!out.writableFinished || !res.writableFinished) out.destroy();
    });
    req.pipe(out);
  }
}

/** "host:port" or "[v6]:port" of a CONNECT request. */
export function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/\s]+)):(\d{1,5})$/.exec(authority);
  if (!m) return undefined;
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

function reply(client: Duplex, status: number, text: string): void {
  const body = `${text}\n`;
  client.end(
    `HTTP/1.1 ${status} ${status === 403 ? "Forbidden" : status === 400 ? "Bad Request" : "Bad Gateway"}\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function sendText(res: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function splice(a: Duplex, b: Duplex): void {
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", end);
  b.on("error", end);
  a.on("close", end);
  b.on("close", end);
  a.pipe(b);
  b.pipe(a);
}

async function resolveAll(host: string): Promise<readonly string[]> {
  const found = await lookup(host, { all: true, verbatim: true });
  return found.map((a) => a.address);
}

function interfaceAddresses(): readonly string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}
