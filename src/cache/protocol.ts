// Pure: the Actions cache protocol v1 as actions/toolkit's @actions/cache speaks it (the client of
// actions/cache v4 and v5 when ACTIONS_CACHE_SERVICE_V2 is unset, and always on servers other than
// github.com): its routes under `<ACTIONS_CACHE_URL>_apis/artifactcache/`, its request bodies and
// their limits. Parses and checks; never touches the store or the network.
import { z } from "zod";
import { CacheBadRequestError } from "./errors.js";

/** The client refuses keys longer than this, and commas (keys travel comma-separated). */
export const MAX_KEY_LENGTH = 512;
/** The client sends the primary key and at most 9 restore keys. */
export const MAX_KEYS = 10;
/** Versions are sha256 hex digests from the client; other clients use short strings. */
export const MAX_VERSION_LENGTH = 512;
/** Reserve and commit bodies are tiny JSON objects. */
export const MAX_JSON_BODY = 64 * 1024;

export type Route =
  | { readonly kind: "lookup"; readonly keys: readonly string[]; readonly version: string }
  | { readonly kind: "list"; readonly key: string }
  | { readonly kind: "reserve" }
  | { readonly kind: "upload"; readonly id: number }
  | { readonly kind: "commit"; readonly id: number }
  | { readonly kind: "download"; readonly id: number };

const API = "_apis/artifactcache/";

/**
 * The route of a request, given its method and the path after the credential segment
 * (`_apis/artifactcache/...`) and its query. Throws CacheBadRequestError for what is not the
 * protocol; undefined when the path is not under the API at all (a 404).
 */
export function routeOf(method: string, path: string, query: URLSearchParams): Route | undefined {
  if (!path.startsWith(API)) return undefined;
  const rest = path.slice(API.length);
  if (rest === "cache" && (method === "GET" || method === "HEAD")) {
    const raw = query.get("keys") ?? "";
    const keys = raw.split(",");
    if (raw === "" || keys.length > MAX_KEYS)
      throw new CacheBadRequestError(
        "cache.bad-keys",
        `keys must name 1 to ${MAX_KEYS} keys separated by commas, got ${raw === "" ? "none" : keys.length}`,
      );
    for (const k of keys) checkKey(k);
    return { kind: "lookup", keys, version: checkVersion(query.get("version") ?? "") };
  }
  if (rest === "caches" && method === "GET") {
    const key = query.get("key") ?? "";
    checkKey(key);
    return { kind: "list", key };
  }
  if (rest === "caches" && method === "POST") return { kind: "reserve" };
  const m = /^(caches|artifacts)\/(\d{1,15})$/.exec(rest);
  if (m) {
    const id = Number(m[2]);
    if (m[1] === "caches" && method === "PATCH") return { kind: "upload", id };
    if (m[1] === "caches" && method === "POST") return { kind: "commit", id };
    if (m[1] === "artifacts" && (method === "GET" || method === "HEAD")) return { kind: "download", id };
  }
  throw new CacheBadRequestError("cache.bad-route", `${method} ${API}${rest} is not part of the cache protocol`);
}

export function checkKey(key: string): string {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH || key.includes(","))
    throw new CacheBadRequestError(
      "cache.bad-key",
      `a cache key must be 1 to ${MAX_KEY_LENGTH} characters without commas; got ${key.length} characters`,
    );
  return key;
}

function checkVersion(version: string): string {
  if (version.length === 0 || version.length > MAX_VERSION_LENGTH)
    throw new CacheBadRequestError(
      "cache.bad-version",
      `version must be 1 to ${MAX_VERSION_LENGTH} characters (the client's hash of paths and compression)`,
    );
  return version;
}

const ReserveBody = z.object({
  key: z.string(),
  version: z.string(),
  cacheSize: z.number().int().nonnegative().nullish(),
});

/** The reserve request: `{ key, version, cacheSize? }` (cacheSize: the archive's size in bytes). */
export function parseReserve(body: unknown): { key: string; version: string; size: number | undefined } {
  const r = ReserveBody.safeParse(body);
  if (!r.success)
    throw new CacheBadRequestError(
      "cache.bad-reserve",
      "a reserve request is JSON { key, version, cacheSize } with a string key and version and a byte count",
    );
  return { key: checkKey(r.data.key), version: checkVersion(r.data.version), size: r.data.cacheSize ?? undefined };
}

const CommitBody = z.object({ size: z.number().int().nonnegative() });

/** The commit request: `{ size }`, the whole archive's size in bytes. */
export function parseCommit(body: unknown): number {
  const r = CommitBody.safeParse(body);
  if (!r.success)
    throw new CacheBadRequestError(
      "cache.bad-commit",
      "a commit request is JSON { size } with the archive's byte count",
    );
  return r.data.size;
}

/** `bytes start-end/*` or `bytes start-end/total` (end inclusive), as the client sends with each chunk. */
export function parseContentRange(header: string | undefined): { start: number; end: number } {
  const m = /^bytes (\d{1,15})-(\d{1,15})\/(\*|\d{1,15})$/.exec(header?.trim() ?? "");
  const start = Number(m?.[1]);
  const end = Number(m?.[2]);
  if (!m || end < start)
    throw new CacheBadRequestError(
      "cache.bad-range",
      `each chunk needs a Content-Range "bytes start-end/*" with start <= end; got ${JSON.stringify(header ?? null)}`,
    );
  return { start, end };
}
