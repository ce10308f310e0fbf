// The Actions cache service of one gnomon process: the v1 REST protocol actions/cache speaks
// (protocol.ts) over connections handed to accept() one by one (a port served into a job's machine),
// the store on disk (store.ts), and the per-job credentials. A job's ACTIONS_CACHE_URL is
// http://127.0.0.1:<port>/<credential>/: every request names its credential first in the path, which
// is checked (signature, expiry, job still running) before anything else, and then decides which
// repository and scopes the request may touch. It listens on no port itself and never logs a
// credential. The v2 (Twirp + Azure Blob) service is not served: clients use v1 unless
// ACTIONS_CACHE_SERVICE_V2 is set, which gnomon never sets for the jobs it serves.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import { CacheBadRequestError, CacheCredentialError, CacheError } from "./errors.js";
import { MAX_JSON_BODY, parseCommit, parseContentRange, parseReserve, type Route, routeOf } from "./protocol.js";
import type { CacheScope } from "./scope.js";
import { type CacheEntry, type CacheLimits, CacheStore } from "./store.js";
import { type CacheClaims, signCacheToken, verifyCacheToken } from "./token.js";

export interface CacheServiceOptions {
  /** <dataDir>/cache: created on the first request that needs it. */
  readonly dir: string;
  readonly limits: CacheLimits;
  readonly log: Logger;
  readonly metrics?: Pick<Metrics, "cacheLookups" | "cacheBytes" | "cacheStoredBytes" | "cacheEntriesRemoved">;
  readonly now?: () => number;
}

/** One job's access to the cache. */
export interface CacheGrant {
  /** The credential: it goes into ACTIONS_CACHE_URL's path, and must be masked in the job's log. */
  readonly token: string;
  /** ACTIONS_CACHE_URL for the job, given the port inside its machine that leads to accept(). */
  urlFor(port: number): string;
  /** Ends the job's access at once and drops its unfinished uploads. Idempotent. */
  revoke(): Promise<void>;
}

export class CacheService {
  readonly store: CacheStore;
  readonly #o: CacheServiceOptions;
  readonly #key = randomBytes(32);
  /** Jobs whose credentials are good: job id → expiry. A revoked job's credential is refused even before it expires. */
  readonly #live = new Map<string, number>();
  readonly #server: Server;
  readonly #open = new Set<Duplex>();
  #closed = false;

  constructor(opts: CacheServiceOptions) {
    this.#o = opts;
    this.store = new CacheStore({
      ...opts.limits,
      dir: opts.dir,
      log: opts.log,
      now: opts.now,
      onRemoved: (_entry, why) => {
        opts.metrics?.cacheEntriesRemoved.inc({ reason: why });
        this.#countStored();
      },
    });
    // Chunks of 32 MB through a slow guest take a while: no request timeout, but headers within a minute.
    this.#server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000 });
    this.#server.on("request", (req: IncomingMessage, res: ServerResponse) => void this.#handle(req, res));
    this.#server.on("clientError", (_err, socket: Duplex) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      else socket.destroy();
    });
  }

  get #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  #countStored(): void {
    this.#o.metrics?.cacheStoredBytes.set(this.store.usage().bytes);
  }

  /** Gives a job access to its repository's entries, as `scope` allows, for at most `ttlMs`. */
  grant(job: string, scope: CacheScope, ttlMs: number): CacheGrant {
    const exp = this.#now + ttlMs;
    this.#live.set(job, exp);
    const token = signCacheToken({ job, exp, ...scope }, this.#key);
    return {
      token,
      urlFor: (port) => `http://127.0.0.1:${port}/${token}/`,
      revoke: async () => {
        this.#live.delete(job);
        await this.store.discardJob(job);
      },
    };
  }

  /** Serves one connection (from a port served into a job's machine). */
  accept(stream: Duplex): void {
    if (this.#closed) {
      stream.destroy();
      return;
    }
    this.#open.add(stream);
    stream.once("close", () => this.#open.delete(stream));
    this.#server.emit("connection", stream);
  }

  /**
   * Ends every connection and gives the cache directory up. Idempotent. Every write was durable or
   * is discarded: an upload cut here is deleted by the next owner.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#open) s.destroy();
    this.#open.clear();
    this.#live.clear();
    this.store.close();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route: Route | undefined;
    let claims: CacheClaims | undefined;
    try {
      const url = new URL(req.url ?? "/", "http://cache");
      const path = url.pathname.replace(/^\/+/, "");
      const slash = path.indexOf("/");
      claims = this.#authorise(slash > 0 ? path.slice(0, slash) : path);
      route = routeOf(req.method ?? "GET", slash > 0 ? path.slice(slash + 1) : "", url.searchParams);
      if (!route) {
        sendJson(res, 404, { message: `${url.pathname.replace(/^\/[^/]*/, "/…")} is not part of the cache protocol` });
        return;
      }
      await this.store.open();
      this.#countStored();
      await this.#serve(route, claims, req, res);
    } catch (err) {
      if (!(err instanceof CacheError))
        this.#o.log.error({ err, job: claims?.job, route: route?.kind }, "cache: request failed inside gnomon");
      else if (err.status !== 401 && err.status !== 404)
        this.#o.log.info({ job: claims?.job, route: route?.kind, code: err.code }, `cache: ${err.message}`);
      const status = err instanceof CacheError ? err.status : 500;
      const message = err instanceof CacheError ? err.message : "the cache service failed; see gnomon's log";
      if (res.headersSent) res.destroy();
      else {
        // An unread request body (a refused chunk) must not be read as the next request: it is
        // discarded as it comes and the connection ends with the answer.
        if (!req.complete) {
          res.setHeader("connection", "close");
          req.resume();
        }
        sendJson(res, status, { message, typeKey: err instanceof CacheError ? err.code : "cache.internal" });
      }
    }
  }

  #authorise(token: string): CacheClaims {
    if (!token) throw new CacheCredentialError("the URL names no credential");
    const v = verifyCacheToken(token, this.#key, this.#now);
    if (!v.ok)
      throw new CacheCredentialError(
        v.why === "expired" ? "the credential has expired" : `the credential is not one gnomon issued (${v.why})`,
      );
    const exp = this.#live.get(v.claims.job);
    if (exp === undefined || exp <= this.#now) throw new CacheCredentialError("the credential's job has ended");
    return v.claims;
  }

  async #serve(route: Route, c: CacheClaims, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const m = this.#o.metrics;
    switch (route.kind) {
      case "lookup": {
        const entry = this.store.lookup(c.repository, c.read, route.keys, route.version);
        m?.cacheLookups.inc({ result: entry ? "hit" : "miss" });
        if (!entry) {
          res.writeHead(204).end();
          return;
        }
        sendJson(res, 200, {
          cacheKey: entry.key,
          scope: entry.scope,
          cacheVersion: entry.version,
          creationTime: new Date(entry.createdAt).toISOString(),
          archiveLocation: this.#archiveUrl(req, entry),
        });
        return;
      }
      case "list": {
        const found = this.store.list(c.repository, c.read, route.key);
        sendJson(res, 200, {
          totalCount: found.length,
          artifactCaches: found.map((e) => ({
            cacheKey: e.key,
            cacheVersion: e.version,
            scope: e.scope,
            creationTime: new Date(e.createdAt).toISOString(),
          })),
        });
        return;
      }
      case "reserve": {
        const body = parseReserve(await readJson(req));
        const cacheId = await this.store.reserve({
          job: c.job,
          repository: c.repository,
          scope: c.write,
          key: body.key,
          version: body.version,
          size: body.size,
        });
        sendJson(res, 201, { cacheId });
        return;
      }
      case "upload": {
        const { start, end } = parseContentRange(req.headers["content-range"]);
        // The body is not destroyed when a refused chunk stops being read: the answer still has to go out.
        await this.store.write(route.id, c.job, start, end, req.iterator({ destroyOnReturn: false }));
        res.writeHead(204).end();
        return;
      }
      case "commit": {
        const size = parseCommit(await readJson(req));
        const entry = await this.store.commit(route.id, c.job, size);
        m?.cacheBytes.inc({ direction: "saved" }, entry.size);
        this.#countStored();
        this.#o.log.info(
          { job: c.job, id: entry.id, repository: entry.repository, scope: entry.scope, size: entry.size },
          "cache: entry saved",
        );
        res.writeHead(204).end();
        return;
      }
      case "download": {
        const { entry, file } = await this.store.openEntry(route.id, c.repository, c.read);
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": entry.size });
        if (req.method === "HEAD") {
          await file.close();
          res.end();
          return;
        }
        const stream = file.createReadStream({ highWaterMark: 1 << 20 });
        // Counted as it goes out, so /metrics never lags behind what a client received.
        stream.on("data", (b: Buffer | string) => m?.cacheBytes.inc({ direction: "restored" }, b.length));
        // pipeline, not pipe: a client that goes away must end the read (and free the file) too.
        void pipeline(stream, res)
          .catch(() => undefined)
          .finally(() => file.close().catch(() => undefined));
        return;
      }
    }
  }

  /** The download URL the lookup hands out: where the client reached us, with its credential. */
  #archiveUrl(req: IncomingMessage, entry: CacheEntry): string {
    const host = req.headers.host ?? "";
    if (!/^[A-Za-z0-9.[\]:-]{1,300}$/.test(host))
      throw new CacheBadRequestError("cache.bad-host", "the request needs a Host header (host:port it was sent to)");
    const path = (req.url ?? "").split("/_apis/")[0] ?? "";
    return `http://${host}${path}/_apis/artifactcache/artifacts/${entry.id}`;
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    size += (chunk as Buffer).length;
    if (size > MAX_JSON_BODY)
      throw new CacheBadRequestError(
        "cache.body-too-large",
        `request bodies are at most ${MAX_JSON_BODY} bytes of JSON`,
      );
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new CacheBadRequestError("cache.bad-json", "the request body is not JSON");
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
