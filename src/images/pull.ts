// `gnomon images pull`: downloads a catalog image over HTTP(S) into the images folder, resumable
// (a .part file continued with a Range request, guarded by If-Range), verified against the pinned
// checksum or the vendor's checksum file, then decompressed (.zst, .xz, .gz) next to a .verified
// marker that resolveImage requires. A mismatch deletes the download; nothing unverified is used.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { createGunzip } from "node:zlib";
import { withTimeout } from "../lifecycle/abort.js";
import { type Catalog, imageNameFor, pulledImagePath } from "../vm/catalog.js";
import { CatalogError } from "../vm/errors.js";
import { runTool } from "../vm/tool.js";
import { ChecksumMismatchError, DownloadError } from "./errors.js";

export type PullStage = "checksum" | "download" | "verify" | "decompress" | "done";

export interface PullProgress {
  readonly stage: PullStage;
  readonly receivedBytes: number;
  /** Total size when the server said so. */
  readonly totalBytes?: number;
}

export interface PullOptions {
  readonly imagesDir: string;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: PullProgress) => void;
  /** Attempts per pull; each resumes where the last stopped. Default 5. */
  readonly attempts?: number;
  /** A download that receives nothing for this long is abandoned and resumed. Default 60 s. */
  readonly idleTimeoutMs?: number;
}

export interface PullResult {
  readonly name: string;
  readonly path: string;
  readonly bytes: number;
  /** sha256:… or sha512:… that the download matched. */
  readonly checksum: string;
  /** False when the checksum came from the vendor's checksum file, not the catalog. */
  readonly pinned: boolean;
  /** Bytes already on disk from an earlier, interrupted pull. */
  readonly resumedFrom: number;
  /** True when the image was already present and verified. */
  readonly alreadyPresent: boolean;
}

interface PartMeta {
  readonly url: string;
  readonly validator?: string;
}

export async function pullImage(catalog: Catalog, labelOrName: string, opts: PullOptions): Promise<PullResult> {
  const name = imageNameFor(catalog, labelOrName);
  const entry = catalog.images.get(name)!;
  const src = entry.source;
  if (!("url" in src))
    throw new CatalogError(catalog.path, [
      `images.${name} has no URL to pull from (source: ${"recipe" in src ? `recipe ${src.recipe}; use \`gnomon images build ${name}\`` : "a local path"})`,
    ]);
  const final = pulledImagePath(opts.imagesDir, name, src.url);
  const marker = `${final}.verified`;
  const wanted = src.checksum ?? (await vendorChecksum(src.checksumUrl!, src.url, opts));
  const present = await readFile(marker, "utf8").then(
    (t) => JSON.parse(t) as { checksum?: string },
    () => undefined,
  );
  if (present?.checksum === wanted) {
    const bytes = (await stat(final)).size;
    opts.onProgress?.({ stage: "done", receivedBytes: bytes, totalBytes: bytes });
    return { name, path: final, bytes, checksum: wanted, pinned: !!src.checksum, resumedFrom: 0, alreadyPresent: true };
  }

  await mkdir(dirname(final), { recursive: true });
  const download = join(dirname(final), basename(new URL(src.url).pathname));
  const part = `${download}.part`;
  const resumedFrom = await stat(part).then(
    (s) => s.size,
    () => 0,
  );
  await fetchResumable(src.url, part, opts);

  opts.onProgress?.({ stage: "verify", receivedBytes: (await stat(part)).size });
  const [algo, hex] = wanted.split(":") as ["sha256" | "sha512", string];
  const actual = await hashFile(part, algo);
  if (actual !== hex) {
    await rm(part, { force: true });
    await rm(`${part}.json`, { force: true });
    throw new ChecksumMismatchError(src.url, wanted, `${algo}:${actual}`);
  }
  await rename(part, download);
  await rm(`${part}.json`, { force: true });
  if (download !== final) {
    opts.onProgress?.({ stage: "decompress", receivedBytes: (await stat(download)).size });
    await decompress(download, final, opts.signal);
    await rm(download, { force: true });
  }
  const bytes = (await stat(final)).size;
  await writeFile(
    marker,
    `${JSON.stringify({ url: src.url, checksum: wanted, pulledAt: new Date().toISOString() })}\n`,
  );
  opts.onProgress?.({ stage: "done", receivedBytes: bytes, totalBytes: bytes });
  return { name, path: final, bytes, checksum: wanted, pinned: !!src.checksum, resumedFrom, alreadyPresent: false };
}

/** The checksum for `imageUrl` from a vendor file: "HEX  name" lines (sha256sum style) or one bare hash. */
export function parseChecksumFile(text: string, fileName: string): string | undefined {
  const hexOf = (h: string) =>
    /^[0-9a-f]{64}$/i.test(h)
      ? `sha256:${h.toLowerCase()}`
      : /^[0-9a-f]{128}$/i.test(h)
        ? `sha512:${h.toLowerCase()}`
        : undefined;
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  for (const line of lines) {
    // "HEX  name", "HEX *name", or BSD style "SHA256 (name) = HEX".
    const bsd = /^SHA(256|512) \((.+)\) = ([0-9a-fA-F]+)$/.exec(line);
    if (bsd && basename(bsd[2]!) === fileName) return hexOf(bsd[3]!);
    const [hash, file] = line.split(/\s+\*?/, 2);
    if (file !== undefined && basename(file) === fileName && hash) return hexOf(hash);
  }
  if (lines.length === 1 && lines[0] && !/\s/.test(lines[0])) return hexOf(lines[0]);
  return undefined;
}

async function vendorChecksum(checksumUrl: string, imageUrl: string, opts: PullOptions): Promise<string> {
  opts.onProgress?.({ stage: "checksum", receivedBytes: 0 });
  let res: Response;
  try {
    res = await fetch(checksumUrl, { signal: withTimeout(30_000, opts.signal) });
  } catch (err) {
    throw new DownloadError(checksumUrl, (err as Error).message, { cause: err });
  }
  if (!res.ok) throw new DownloadError(checksumUrl, `HTTP ${res.status}`);
  const file = basename(new URL(imageUrl).pathname);
  const found = parseChecksumFile(await res.text(), file);
  if (!found) throw new DownloadError(checksumUrl, `it lists no sha256 or sha512 checksum for ${file}`);
  return found;
}

/** Downloads `url` into `part`, continuing an existing part; retries transient failures. */
async function fetchResumable(url: string, part: string, opts: PullOptions): Promise<void> {
  const attempts = opts.attempts ?? 5;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      await fetchOnce(url, part, opts);
      return;
    } catch (err) {
      if (opts.signal?.aborted || err instanceof ChecksumMismatchError) throw err;
      lastError = err;
      if (attempt < attempts)
        await sleep(Math.min(500 * 2 ** (attempt - 1), 8_000), undefined, { signal: opts.signal });
    }
  }
  throw lastError instanceof DownloadError
    ? lastError
    : new DownloadError(url, (lastError as Error)?.message ?? "failed", { cause: lastError });
}

async function fetchOnce(url: string, part: string, opts: PullOptions): Promise<void> {
  const have = await stat(part).then(
    (s) => s.size,
    () => 0,
  );
  const meta = await readFile(`${part}.json`, "utf8").then(
    (t) => JSON.parse(t) as PartMeta,
    () => undefined,
  );
  // identity: the bytes on disk must be the bytes the checksum covers.
  const headers: Record<string, string> = { "accept-encoding": "identity" };
  if (have > 0 && meta?.url === url) {
    headers["range"] = `bytes=${have}-`;
    // If the file changed on the server since the part was started, If-Range makes it send all of it.
    if (meta.validator) headers["if-range"] = meta.validator;
  }
  const idle = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, idle.signal]) : idle.signal;
  const idleMs = opts.idleTimeoutMs ?? 60_000;
  let watchdog = setTimeout(() => idle.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
  try {
    const res = await fetch(url, { headers, signal });
    if (res.status === 416 && have > 0) return; // the part is already complete
    if (res.status !== 200 && res.status !== 206) throw new DownloadError(url, `HTTP ${res.status} ${res.statusText}`);
    const append = res.status === 206;
    const validator = res.headers.get("etag") ?? res.headers.get("last-modified") ?? undefined;
    await writeFile(`${part}.json`, JSON.stringify({ url, validator } satisfies PartMeta));
    const start = append ? have : 0;
    const length = Number(res.headers.get("content-length") ?? Number.NaN);
    const total = Number.isFinite(length) ? start + length : undefined;
    let received = start;
    opts.onProgress?.({ stage: "download", receivedBytes: received, totalBytes: total });
    if (!res.body) throw new DownloadError(url, "the response has no body");
    const out = createWriteStream(part, { flags: append ? "a" : "w" });
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => idle.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
        if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
        received += chunk.length;
        opts.onProgress?.({ stage: "download", receivedBytes: received, totalBytes: total });
      }
    } finally {
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }
    if (total !== undefined && received < total)
      throw new DownloadError(url, `the connection ended after ${received} of ${total} bytes`);
  } catch (err) {
    if (idle.signal.aborted && !opts.signal?.aborted)
      throw new DownloadError(url, (idle.signal.reason as Error).message, { cause: err });
    if (err instanceof DownloadError || opts.signal?.aborted) throw err;
    throw new DownloadError(url, (err as Error).message, { cause: err });
  } finally {
    clearTimeout(watchdog);
  }
}

async function hashFile(path: string, algo: "sha256" | "sha512"): Promise<string> {
  const hash = createHash(algo);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function decompress(from: string, to: string, signal?: AbortSignal): Promise<void> {
  const tmp = `${to}.decompressing`;
  try {
    if (/\.(zst|zstd)$/.test(from)) await runTool("zstd", ["-d", "-q", "-f", "-o", tmp, from], { signal });
    else if (from.endsWith(".xz")) {
      // xz picks its output name itself: the input without .xz, which is `to`.
      await runTool("xz", ["-d", "-k", "-f", "-T0", from], { signal });
      return;
    } else if (from.endsWith(".gz"))
      await pipeline(createReadStream(from), createGunzip(), createWriteStream(tmp), { signal });
    else throw new DownloadError(from, "unknown compression (expected .zst, .xz or .gz)");
    await rename(tmp, to);
  } finally {
    await rm(tmp, { force: true });
  }
}
