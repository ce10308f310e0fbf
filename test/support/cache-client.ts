// A client of the Actions cache protocol v1 that sends exactly what @actions/cache 4.x/5.x sends
// (read from actions/cache v4.3.0 and v5.0.4's dist/: the Accept header with api-version
// 6.0-preview.1, `keys` comma-joined and URI-encoded, `{ key, version, cacheSize }` to reserve,
// PATCH chunks with `Content-Range: bytes start-end/*`, `{ size }` to commit, and a plain GET of
// archiveLocation without the Authorization header), and a loopback listener that feeds a
// CacheService the way a port served into a VM does. For tests and benches only.
import { once } from "node:events";
import { request } from "node:http";
import { createServer, type Server } from "node:net";
import type { CacheService } from "../../src/cache/service.js";

export interface Answer {
  readonly status: number;
  readonly json: unknown;
  readonly body: Buffer;
}

/** Serves `service` on a loopback port (as Executor.serve does into a VM); closed when the test ends. */
export async function serveCache(t: { after(fn: () => unknown): unknown }, service: CacheService): Promise<number> {
  const server: Server = createServer((s) => service.accept(s));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => {
    server.close();
  });
  return (server.address() as { port: number }).port;
}

/** One HTTP request; `body` may be a Buffer or a stream of Buffers. */
export function send(
  url: string,
  method: string,
  opts: { headers?: Record<string, string>; body?: Buffer | AsyncIterable<Buffer>; declaredLength?: number } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        let json: unknown;
        if (/json/.test(String(res.headers["content-type"] ?? "")))
          try {
            json = JSON.parse(body.toString("utf8"));
          } catch {
            json = undefined;
          }
        resolve({ status: res.statusCode ?? 0, json, body });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    const b = opts.body;
    if (b === undefined) req.end();
    else if (Buffer.isBuffer(b)) req.end(b);
    else
      void (async () => {
        try {
          for await (const c of b) if (!req.write(c)) await once(req, "drain");
          req.end();
        } catch (err) {
          req.destroy(err as Error);
        }
      })();
  });
}

const ACCEPT = { Accept: "application/json;api-version=6.0-preview.1" };
const JSON_HEADERS = { ...ACCEPT, "Content-Type": "application/json" };

/** The protocol's calls against one ACTIONS_CACHE_URL (which ends with a slash). */
export class CacheClient {
  constructor(
    readonly baseUrl: string,
    /** What the client puts in Authorization: Bearer (ACTIONS_RUNTIME_TOKEN, or empty as in gnomon exec). */
    readonly runtimeToken = "",
  ) {}

  #api(resource: string): string {
    return `${this.baseUrl}_apis/artifactcache/${resource}`;
  }

  #headers(extra: Record<string, string>): Record<string, string> {
    return { ...extra, Authorization: `Bearer ${this.runtimeToken}`, "User-Agent": "actions/cache" };
  }

  lookup(keys: readonly string[], version: string): Promise<Answer> {
    return send(this.#api(`cache?keys=${encodeURIComponent(keys.join(","))}&version=${version}`), "GET", {
      headers: this.#headers(ACCEPT),
    });
  }

  list(key: string): Promise<Answer> {
    return send(this.#api(`caches?key=${encodeURIComponent(key)}`), "GET", { headers: this.#headers(ACCEPT) });
  }

  reserve(key: string, version: string, cacheSize?: number): Promise<Answer> {
    return send(this.#api("caches"), "POST", {
      headers: this.#headers(JSON_HEADERS),
      body: Buffer.from(JSON.stringify({ key, version, cacheSize })),
    });
  }

  /** One chunk: `start`..`end` inclusive, with `data` as its body (which may disagree, to test refusals). */
  patch(id: number, start: number, end: number, data: Buffer | AsyncIterable<Buffer>): Promise<Answer> {
    return send(this.#api(`caches/${id}`), "PATCH", {
      headers: this.#headers({
        ...ACCEPT,
        "Content-Type": "application/octet-stream",
        "Content-Range": `bytes ${start}-${end}/*`,
      }),
      body: data,
    });
  }

  commit(id: number, size: number): Promise<Answer> {
    return send(this.#api(`caches/${id}`), "POST", {
      headers: this.#headers(JSON_HEADERS),
      body: Buffer.from(JSON.stringify({ size })),
    });
  }

  /** The client downloads archiveLocation with a bare client: no Authorization header. */
  download(archiveLocation: string): Promise<Answer> {
    return send(archiveLocation, "GET", { headers: { "User-Agent": "actions/cache" } });
  }

  /** reserve, PATCH in chunks of `chunkSize` (`parallel` at once, as uploadConcurrency), commit. */
  async save(key: string, version: string, data: Buffer, chunkSize = 32 * 1024 * 1024, parallel = 4): Promise<number> {
    const r = await this.reserve(key, version, data.length);
    const id = (r.json as { cacheId?: number } | undefined)?.cacheId;
    if (r.status !== 201 || typeof id !== "number") throw new Error(`reserve answered ${r.status} ${r.body}`);
    let offset = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (offset < data.length) {
          const start = offset;
          const end = Math.min(data.length, start + chunkSize) - 1;
          offset += chunkSize;
          const p = await this.patch(id, start, end, data.subarray(start, end + 1));
          if (p.status !== 204) throw new Error(`chunk ${start}-${end} answered ${p.status} ${p.body}`);
        }
      }),
    );
    const c = await this.commit(id, data.length);
    if (c.status !== 204) throw new Error(`commit answered ${c.status} ${c.body}`);
    return id;
  }

  /** lookup, then download: the archive, or undefined on a miss. */
  async restore(
    keys: readonly string[],
    version: string,
  ): Promise<{ key: string; scope: string; data: Buffer } | undefined> {
    const l = await this.lookup(keys, version);
    if (l.status === 204) return undefined;
    const hit = l.json as { cacheKey: string; scope: string; archiveLocation: string };
    if (l.status !== 200) throw new Error(`lookup answered ${l.status} ${l.body}`);
    const d = await this.download(hit.archiveLocation);
    if (d.status !== 200) throw new Error(`download answered ${d.status} ${d.body}`);
    return { key: hit.cacheKey, scope: hit.scope, data: d.body };
  }
}
