// The job's forge on this host's loopback, reachable from its VM: each loopback host:port among the
// endpoints its forge gave it (server, API, clone, Actions services, actions source) is served into
// the guest through an explicit forward (an SSH remote forward to the guest's 127.0.0.1), preferably
// on the same port, so the job's URLs stay as they are; where the guest cannot listen on that port
// (privileged, or taken by the guest's sshd), on another one, and the engine gives the job URLs
// rewritten to it, with the same paths. Each forward connects to exactly its endpoint and nothing
// else; forge endpoints on other hosts are left to the egress proxy. Never forwards anything but the
// endpoints it is given.
import { connect, isIP, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type Executor, type ServedPort, ServePortTakenError } from "../executor/executor.js";
import type { Logger } from "../telemetry/log.js";

/** A forge endpoint on this host's loopback, as the job's URLs name it. */
export interface LoopbackEndpoint {
  /** As in the URL, lower case, without brackets: "127.0.0.1", "localhost", "::1". */
  readonly host: string;
  readonly port: number;
}

/** Where the guest reaches one endpoint: 127.0.0.1:<guestPort> inside it. */
export interface Forward {
  readonly endpoint: LoopbackEndpoint;
  readonly guestPort: number;
}

/** Pure: whether a URL host names this host's loopback (IPv4 127/8, ::1, IPv4-mapped, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = /^(?:::ffff:)?(\d+)\.\d+\.\d+\.\d+$/.exec(h);
  return v4 !== null && isIP(h.replace(/^::ffff:/, "")) === 4 && v4[1] === "127";
}

/**
 * Pure: the loopback endpoints among "host:port" strings (as forgeEndpointsOf() gives them; IPv6
 * hosts unbracketed), each once, in the order given. localhost:P goes with 127.0.0.1:P when both
 * are named (one service, as the guest's localhost is its 127.0.0.1).
 */
export function loopbackEndpoints(hostPorts: readonly string[]): LoopbackEndpoint[] {
  const all: LoopbackEndpoint[] = [];
  for (const hp of hostPorts) {
    const at = hp.lastIndexOf(":");
    const host = hp
      .slice(0, at)
      .toLowerCase()
      .replace(/^\[(.*)\]$/, "$1");
    const port = Number(hp.slice(at + 1));
    if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535 || !isLoopbackHost(host)) continue;
    if (!all.some((e) => e.host === host && e.port === port)) all.push({ host, port });
  }
  return all.filter((e) => !(e.host === "localhost" && all.some((o) => o.host === "127.0.0.1" && o.port === e.port)));
}

/** The forward that serves host:port: its own, or for localhost the one of 127.0.0.1 on that port. */
function forwardOf(forwards: readonly Forward[], host: string, port: number): Forward | undefined {
  const own = forwards.find((x) => x.endpoint.host === host && x.endpoint.port === port);
  if (own || host !== "localhost") return own;
  return forwards.find((x) => x.endpoint.host === "127.0.0.1" && x.endpoint.port === port);
}

/** http(s)://[userinfo@]authority rest — split without normalising, so a URL keeps its exact text. */
const URL_PARTS = /^(https?:\/\/)([^/?#@]*@)?(\[[^\]]*\]|[^/?#:]*)(?::(\d*))?([/?#].*)?$/i;

/**
 * Pure: `url` as the guest must use it. A URL of a forwarded endpoint keeps its text when the guest
 * reaches it under the same name and port (127.0.0.1 or localhost, same port); otherwise its host
 * and port become 127.0.0.1:<guest port>, scheme, path, query and fragment kept. Any other URL, or
 * text that is not an http(s) URL, is returned unchanged.
 */
export function machineUrlOf(url: string, forwards: readonly Forward[]): string {
  const m = URL_PARTS.exec(url);
  if (!m) return url;
  const [, scheme = "", userinfo = "", rawHost = "", rawPort, rest = ""] = m;
  const host = rawHost.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  const port = rawPort ? Number(rawPort) : scheme.toLowerCase() === "https://" ? 443 : 80;
  const f = forwardOf(forwards, host, port);
  if (!f) return url;
  if (f.guestPort === port && (host === "127.0.0.1" || host === "localhost")) return url;
  return `${scheme}${userinfo}127.0.0.1:${f.guestPort}${rest}`;
}

export interface ForgeForwards {
  readonly forwards: readonly Forward[];
  /** A URL as the guest reaches it (machineUrlOf over these forwards). */
  machineUrl(url: string): string;
  /** For the job log: "127.0.0.1:3000", or "localhost:80 at 127.0.0.1:41234" where the guest port differs. */
  describe(): string;
  /** Stops listening in the guest and ends open connections. Idempotent, never throws. */
  close(): Promise<void>;
}

export interface ForgeForwardOptions {
  readonly log: Logger;
  readonly connectTimeoutMs?: number;
  /** Open connections to the forge of one job at once; more are refused until one ends. */
  readonly maxConnections?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONNECTIONS = 64;

/**
 * Serves every loopback endpoint among `forgeEndpoints` into the machine: on its own port when the
 * guest can listen there, on any free port otherwise. Rejects with ServeRefusedError when the guest
 * will not forward at all (what was served by then is closed again).
 */
export async function serveForgeForwards(
  executor: Executor,
  forgeEndpoints: readonly string[],
  opts: ForgeForwardOptions,
): Promise<ForgeForwards> {
  const endpoints = loopbackEndpoints(forgeEndpoints);
  const served: ServedPort[] = [];
  const forwards: Forward[] = [];
  const open = new Set<Duplex>();
  const max = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const s of open) s.destroy();
    for (const p of served) await p.close().catch(() => undefined);
  };
  try {
    for (const endpoint of endpoints) {
      const accept = (stream: Duplex) => {
        if (closed || open.size >= max) {
          if (!closed) opts.log.warn({ endpoint, max }, "too many connections to the forge from one job; refusing one");
          stream.destroy();
          return;
        }
        open.add(stream);
        stream.once("close", () => open.delete(stream));
        pipeTo(stream, endpoint, timeoutMs);
      };
      let port: ServedPort;
      try {
        port = await executor.serve(accept, { port: endpoint.port });
      } catch (err) {
        if (!(err instanceof ServePortTakenError)) throw err;
        port = await executor.serve(accept);
      }
      served.push(port);
      forwards.push({ endpoint, guestPort: port.port });
    }
  } catch (err) {
    await close();
    throw err;
  }
  if (forwards.length > 0)
    opts.log.info(
      { forwards: forwards.map((f) => `${hostPort(f.endpoint)}->${f.guestPort}`) },
      "forge endpoints on this host forwarded into the VM",
    );
  return {
    forwards,
    machineUrl: (url) => machineUrlOf(url, forwards),
    describe: () =>
      forwards
        .map((f) =>
          f.endpoint.host === "127.0.0.1" && f.endpoint.port === f.guestPort
            ? hostPort(f.endpoint)
            : `${hostPort(f.endpoint)} at 127.0.0.1:${f.guestPort}`,
        )
        .join(", "),
    close,
  };
}

function hostPort(e: LoopbackEndpoint): string {
  return `${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`;
}

/**
 * Joins one guest connection to the endpoint, both ways. An end on one side ends the other once
 * what it sent is through (pipe); an error on either destroys both.
 */
function pipeTo(stream: Duplex, endpoint: LoopbackEndpoint, timeoutMs: number): void {
  const upstream: Socket = connect({ host: endpoint.host, port: endpoint.port, autoSelectFamily: true });
  const timer = setTimeout(() => upstream.destroy(), timeoutMs);
  const fail = () => {
    clearTimeout(timer);
    upstream.destroy();
    stream.destroy();
  };
  upstream.once("connect", () => clearTimeout(timer));
  upstream.on("error", fail);
  stream.on("error", fail);
  upstream.once("close", () => {
    clearTimeout(timer);
    if (!stream.writableEnded) stream.end();
  });
  stream.once("close", () => {
    if (!upstream.writableEnded) upstream.end();
  });
  stream.pipe(upstream);
  upstream.pipe(stream);
}
