// The cache entries of this host on disk, under <dataDir>/cache: committed archives
// (entries/<id>.data with entries/<id>.json beside it) and uploads in progress (uploads/<id>.part).
// An entry exists once its .json exists, and its .json is written (temp file, fsync, rename) only
// after its archive was fsynced and renamed into place: a half-written upload is never served,
// also after a crash, and whatever a crash left half-done is deleted at open. Sizes are bounded per
// repository and in all, least recently used entries going first; entries unused for a while
// expire. Knows nothing of HTTP or credentials: callers pass the repository, scopes and job.
import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { type DirLock, lockDir } from "../lifecycle/dir-lock.js";
import type { Logger } from "../telemetry/log.js";
import {
  CacheBadRequestError,
  CacheConflictError,
  CacheNotFoundError,
  CacheQuotaError,
  CacheUnavailableError,
} from "./errors.js";
import { findMatch } from "./match.js";
import { ByteRanges } from "./ranges.js";

export interface CacheLimits {
  /** All entries of this host, and the uploads in progress, together. */
  readonly maxBytes: number;
  /** One repository's entries and uploads (GitHub: 10 GB). */
  readonly repositoryMaxBytes: number;
  /** An entry not restored for this long is deleted (GitHub: 7 days). */
  readonly unusedExpiryMs: number;
}

export interface CacheStoreOptions extends CacheLimits {
  readonly dir: string;
  readonly log: Logger;
  readonly now?: () => number;
  /** An entry was deleted to make room ("evicted") or for being unused ("expired"). */
  readonly onRemoved?: (entry: CacheEntry, why: "evicted" | "expired") => void;
}

export interface CacheEntry {
  readonly id: number;
  readonly repository: string;
  readonly scope: string;
  readonly key: string;
  readonly version: string;
  readonly size: number;
  readonly createdAt: number;
  usedAt: number;
}

const EntryFile = z
  .object({
    id: z.number().int().positive(),
    repository: z.string().min(1),
    scope: z.string().min(1),
    key: z.string().min(1),
    version: z.string().min(1),
    size: z.number().int().nonnegative(),
    createdAt: z.number().int().nonnegative(),
  })
  .strict();

/** Uploads one job may have open at once: each holds a file and part of the quota until committed. */
export const MAX_UPLOADS_PER_JOB = 32;

interface Upload {
  readonly id: number;
  readonly job: string;
  readonly repository: string;
  readonly scope: string;
  readonly key: string;
  readonly version: string;
  /** The size the client declared at reserve time, if it did. */
  readonly declared: number | undefined;
  readonly ranges: ByteRanges;
  /** Bytes of the quota this upload holds: its declared size, or as far as its chunks reach. */
  claimed: number;
  /** Chunks being written now. */
  active: number;
  committing: boolean;
  file: Promise<FileHandle> | undefined;
}

export class CacheStore {
  readonly #o: CacheStoreOptions;
  readonly #entries = new Map<number, CacheEntry>();
  readonly #uploads = new Map<number, Upload>();
  #nextId = 1;
  #opened: Promise<void> | undefined;
  #lock: DirLock | undefined;

  constructor(opts: CacheStoreOptions) {
    this.#o = opts;
  }

  get #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  #dataPath(id: number): string {
    return join(this.#o.dir, "entries", `${id}.data`);
  }

  #metaPath(id: number): string {
    return join(this.#o.dir, "entries", `${id}.json`);
  }

  #partPath(id: number): string {
    return join(this.#o.dir, "uploads", `${id}.part`);
  }

  /** Gives the directory up (another process may own it then). Idempotent. */
  close(): void {
    this.#lock?.release();
    this.#lock = undefined;
    this.#opened = undefined;
  }

  /**
   * Takes the directory (one process owns it: ids and uploads live in this process's memory),
   * reads the entries on disk and clears what a previous owner left half-done. Idempotent; throws
   * CacheUnavailableError while another live process owns it.
   */
  open(): Promise<void> {
    this.#opened ??= this.#load().catch((err: unknown) => {
      this.#opened = undefined; // a later request tries again (the disk may come back)
      throw err;
    });
    return this.#opened;
  }

  async #load(): Promise<void> {
    const entriesDir = join(this.#o.dir, "entries");
    const uploadsDir = join(this.#o.dir, "uploads");
    await mkdir(entriesDir, { recursive: true, mode: 0o700 });
    this.#lock ??= lockDir(join(this.#o.dir, "owner.lock"), (pid) => new CacheUnavailableError(this.#o.dir, pid));
    // Uploads of a previous process can never be committed: their job ended with it.
    await rm(uploadsDir, { recursive: true, force: true });
    await mkdir(uploadsDir, { recursive: true, mode: 0o700 });
    const names = await readdir(entriesDir);
    const valid = new Set<number>();
    for (const name of names) {
      const m = /^(\d+)\.json$/.exec(name);
      if (!m) continue;
      const id = Number(m[1]);
      const entry = await this.#readEntry(id).catch(() => undefined);
      if (!entry) {
        this.#o.log.warn({ id }, "cache: dropping an entry whose metadata or archive is damaged");
        await this.#deleteFiles(id);
        continue;
      }
      this.#entries.set(id, entry);
      valid.add(id);
    }
    // Archives without metadata were never committed (a crash between the two renames), and temp files are half-written.
    for (const name of names) {
      const m = /^(\d+)\.(data|json\.tmp)$/.exec(name);
      if (m && !(m[2] === "data" && valid.has(Number(m[1])))) await rm(join(entriesDir, name), { force: true });
    }
    this.#nextId = Math.max(0, ...this.#entries.keys()) + 1;
    this.#expire();
  }

  async #readEntry(id: number): Promise<CacheEntry | undefined> {
    const meta = EntryFile.safeParse(JSON.parse(await readFile(this.#metaPath(id), "utf8")));
    if (!meta.success || meta.data.id !== id) return undefined;
    const s = await stat(this.#dataPath(id));
    if (!s.isFile() || s.size !== meta.data.size) return undefined;
    return { ...meta.data, usedAt: Math.max(meta.data.createdAt, s.mtimeMs) };
  }

  /** Committed bytes and uploads in progress, for metrics and tests. */
  usage(): { entries: number; bytes: number; uploads: number; claimedBytes: number } {
    let bytes = 0;
    for (const e of this.#entries.values()) bytes += e.size;
    let claimedBytes = 0;
    for (const u of this.#uploads.values()) claimedBytes += u.claimed;
    return { entries: this.#entries.size, bytes, uploads: this.#uploads.size, claimedBytes };
  }

  /** Every committed entry (for tests and the operator's view). */
  entries(): readonly CacheEntry[] {
    return [...this.#entries.values()];
  }

  /** The entry a lookup restores (see match.ts), marked used; undefined on a miss. */
  lookup(
    repository: string,
    readScopes: readonly string[],
    keys: readonly string[],
    version: string,
  ): CacheEntry | undefined {
    const found = findMatch(this.#ofRepository(repository), readScopes, keys, version);
    if (found) this.#touch(found);
    return found;
  }

  /** Entries with this key (any version) in the scopes given: what the client lists after a miss. */
  list(repository: string, readScopes: readonly string[], key: string): readonly CacheEntry[] {
    const wanted = key.toLowerCase();
    return [...this.#ofRepository(repository)].filter(
      (e) => readScopes.includes(e.scope) && e.key.toLowerCase() === wanted,
    );
  }

  /**
   * Starts an upload of `key` into `scope`; returns its cache id. Throws CacheConflictError when the
   * key and version exist in that scope or another upload holds them (entries are immutable: the
   * first save wins, as on GitHub), CacheQuotaError when `size` cannot fit even after evicting.
   */
  async reserve(r: {
    job: string;
    repository: string;
    scope: string;
    key: string;
    version: string;
    size: number | undefined;
  }): Promise<number> {
    this.#expire();
    const key = r.key.toLowerCase();
    const same = (e: { repository: string; scope: string; key: string; version: string }) =>
      e.repository === r.repository && e.scope === r.scope && e.key.toLowerCase() === key && e.version === r.version;
    if ([...this.#entries.values()].some(same))
      throw new CacheConflictError(
        `Cache already exists. Scope: ${r.scope}, Key: ${r.key}, Version: ${r.version}. Entries are never overwritten; save under a new key.`,
      );
    if ([...this.#uploads.values()].some(same))
      throw new CacheConflictError(
        `another job is saving Key: ${r.key}, Version: ${r.version} in Scope: ${r.scope} right now; the first save wins`,
      );
    const mine = [...this.#uploads.values()].filter((u) => u.job === r.job).length;
    if (mine >= MAX_UPLOADS_PER_JOB)
      throw new CacheBadRequestError(
        "cache.too-many-uploads",
        `this job has ${mine} cache uploads open already; commit them before reserving more`,
      );
    const claimed = r.size ?? 0;
    const freed = this.#makeRoom(r.repository, claimed);
    const id = this.#nextId++;
    this.#uploads.set(id, {
      id,
      job: r.job,
      repository: r.repository,
      scope: r.scope,
      key: r.key,
      version: r.version,
      declared: r.size,
      ranges: new ByteRanges(),
      claimed,
      active: 0,
      committing: false,
      file: undefined,
    });
    await freed;
    return id;
  }

  /**
   * Writes one chunk, [start, end] inclusive, streamed from `body`. Bounded: the range must lie in
   * the declared size (or the repository's limit), and the body must be exactly as long as the
   * range; a chunk that is not is refused and its range counts as missing.
   */
  async write(id: number, job: string, start: number, end: number, body: AsyncIterable<Uint8Array>): Promise<number> {
    const u = this.#upload(id, job);
    if (u.committing) throw new CacheConflictError(`cache ${id} is being committed; it takes no more chunks`);
    const limit = u.declared ?? this.#o.repositoryMaxBytes;
    if (end >= limit)
      throw new CacheBadRequestError(
        "cache.range-beyond-size",
        `bytes ${start}-${end} lie beyond the ${limit} bytes ${u.declared === undefined ? "a repository may store" : "reserved for this cache"}`,
      );
    if (end + 1 > u.claimed) {
      const grow = end + 1 - u.claimed;
      const freed = this.#makeRoom(u.repository, grow);
      u.claimed += grow;
      await freed;
    }
    u.active += 1;
    let written = 0;
    try {
      u.file ??= open(this.#partPath(id), "w+", 0o600);
      const fh = await u.file;
      let at = start;
      for await (const chunk of body) {
        if (at + chunk.length > end + 1)
          throw new CacheBadRequestError(
            "cache.chunk-too-long",
            `the chunk for bytes ${start}-${end} carries more than its ${end - start + 1} bytes`,
          );
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, at);
          off += bytesWritten;
          at += bytesWritten;
          written += bytesWritten;
        }
      }
      if (at !== end + 1)
        throw new CacheBadRequestError(
          "cache.chunk-truncated",
          `the chunk for bytes ${start}-${end} ended after ${at - start} of its ${end - start + 1} bytes`,
        );
      u.ranges.add(start, end);
      return written;
    } catch (err) {
      // What arrived of a bad chunk may have overwritten good bytes of an earlier one: the whole range is suspect.
      u.ranges.remove(start, end);
      throw err;
    } finally {
      u.active -= 1;
    }
  }

  /**
   * Commits an upload of `size` bytes: checks the size against the reservation and the chunks
   * received, then makes the entry durable and visible. A commit that fails its checks discards
   * the upload (its key is free again), so nothing half-written lingers.
   */
  async commit(id: number, job: string, size: number): Promise<CacheEntry> {
    const u = this.#upload(id, job);
    if (u.committing) throw new CacheConflictError(`cache ${id} is being committed already`);
    if (u.active > 0)
      throw new CacheBadRequestError(
        "cache.chunks-in-flight",
        `cache ${id} still has ${u.active} chunk(s) uploading; commit after every chunk was answered`,
      );
    let problem: string | undefined;
    if (u.declared !== undefined && size !== u.declared)
      problem = `the commit says ${size} bytes but ${u.declared} were reserved`;
    else if (!u.ranges.coversExactly(size)) {
      const gap = u.ranges.firstGap(size);
      problem =
        u.ranges.end > size
          ? `chunks reached byte ${u.ranges.end - 1}, past the ${size} bytes committed`
          : `bytes ${gap?.start}-${(gap?.end ?? size) - 1} of the ${size} committed never arrived whole (a truncated upload)`;
    }
    if (problem) {
      await this.#discard(u);
      throw new CacheBadRequestError("cache.commit-mismatch", `cache ${id} was not saved: ${problem}`);
    }
    u.committing = true;
    const entry: CacheEntry = {
      id,
      repository: u.repository,
      scope: u.scope,
      key: u.key,
      version: u.version,
      size,
      createdAt: this.#now,
      usedAt: this.#now,
    };
    try {
      u.file ??= open(this.#partPath(id), "w+", 0o600);
      const fh = await u.file;
      await fh.sync();
      await fh.close();
      u.file = undefined;
      await rename(this.#partPath(id), this.#dataPath(id));
      const { usedAt: _, ...meta } = entry;
      const tmp = `${this.#metaPath(id)}.tmp`;
      await writeDurably(tmp, JSON.stringify(meta));
      await rename(tmp, this.#metaPath(id));
      await syncDir(join(this.#o.dir, "entries"));
    } catch (err) {
      await this.#discard(u);
      await this.#deleteFiles(id);
      throw err;
    }
    this.#uploads.delete(id);
    this.#entries.set(id, entry);
    return entry;
  }

  /**
   * Opens an entry's archive for download, if `repository` owns it and it is in one of
   * `readScopes`; the open file stays readable even if the entry is evicted meanwhile.
   */
  async openEntry(
    id: number,
    repository: string,
    readScopes: readonly string[],
  ): Promise<{ entry: CacheEntry; file: FileHandle }> {
    const entry = this.#entries.get(id);
    if (!entry || entry.repository !== repository || !readScopes.includes(entry.scope))
      throw new CacheNotFoundError(`no cache entry ${id} is readable by this job`);
    const file = await open(this.#dataPath(id), "r");
    this.#touch(entry);
    return { entry, file };
  }

  /** Drops every upload of a job that ended without committing it. */
  async discardJob(job: string): Promise<void> {
    for (const u of [...this.#uploads.values()]) if (u.job === job) await this.#discard(u);
  }

  #upload(id: number, job: string): Upload {
    const u = this.#uploads.get(id);
    // Another job's upload answers as if it did not exist: ids reveal nothing across jobs.
    if (!u || u.job !== job)
      throw new CacheNotFoundError(
        `cache ${id} is not an upload of this job (never reserved, committed or discarded already, or its job ended)`,
      );
    return u;
  }

  async #discard(u: Upload): Promise<void> {
    if (this.#uploads.get(u.id) !== u) return;
    this.#uploads.delete(u.id);
    const file = u.file;
    u.file = undefined;
    await file?.then((fh) => fh.close()).catch(() => undefined);
    await rm(this.#partPath(u.id), { force: true });
  }

  *#ofRepository(repository: string): Iterable<CacheEntry> {
    for (const e of this.#entries.values()) if (e.repository === repository) yield e;
  }

  #touch(entry: CacheEntry): void {
    entry.usedAt = this.#now;
    // The archive's mtime is the entry's last use, so that LRU order survives a restart.
    const at = entry.usedAt / 1000;
    utimes(this.#dataPath(entry.id), at, at).catch(() => undefined);
  }

  /**
   * Makes room for `bytes` more in `repository`: decides synchronously (so concurrent requests see
   * each other's claims) which least recently used entries go, removes them from the index, and
   * returns the deletion of their files. Throws CacheQuotaError when even evicting every entry
   * would not be enough.
   */
  #makeRoom(repository: string, bytes: number): Promise<void> {
    const { maxBytes, repositoryMaxBytes } = this.#o;
    if (bytes > repositoryMaxBytes) throw new CacheQuotaError(bytes, repositoryMaxBytes, "one repository");
    if (bytes > maxBytes) throw new CacheQuotaError(bytes, maxBytes, "this host's cache");
    let repoCommitted = 0;
    let repoClaimed = 0;
    let allCommitted = 0;
    let allClaimed = 0;
    for (const e of this.#entries.values()) {
      allCommitted += e.size;
      if (e.repository === repository) repoCommitted += e.size;
    }
    for (const u of this.#uploads.values()) {
      allClaimed += u.claimed;
      if (u.repository === repository) repoClaimed += u.claimed;
    }
    if (repoClaimed + bytes > repositoryMaxBytes)
      throw new CacheQuotaError(
        repoClaimed + bytes,
        repositoryMaxBytes,
        "one repository (with its uploads in progress)",
      );
    if (allClaimed + bytes > maxBytes)
      throw new CacheQuotaError(allClaimed + bytes, maxBytes, "this host's cache (with the uploads in progress)");
    const lru = [...this.#entries.values()].sort((a, b) => a.usedAt - b.usedAt || a.id - b.id);
    const victims: CacheEntry[] = [];
    for (const e of lru) {
      const repoOver = repoCommitted + repoClaimed + bytes > repositoryMaxBytes;
      const allOver = allCommitted + allClaimed + bytes > maxBytes;
      if (!repoOver && !allOver) break;
      if (!allOver && e.repository !== repository) continue;
      victims.push(e);
      allCommitted -= e.size;
      if (e.repository === repository) repoCommitted -= e.size;
    }
    return this.#remove(victims, "evicted");
  }

  /** Deletes entries unused for longer than unusedExpiryMs. */
  #expire(): void {
    const before = this.#now - this.#o.unusedExpiryMs;
    const old = [...this.#entries.values()].filter((e) => e.usedAt < before);
    if (old.length > 0) void this.#remove(old, "expired");
  }

  async #remove(entries: readonly CacheEntry[], why: "evicted" | "expired"): Promise<void> {
    for (const e of entries) {
      this.#entries.delete(e.id);
      this.#o.onRemoved?.(e, why);
    }
    for (const e of entries) {
      this.#o.log.info({ id: e.id, repository: e.repository, key: e.key, size: e.size, why }, "cache: entry removed");
      await this.#deleteFiles(e.id).catch((err: unknown) =>
        this.#o.log.warn({ err, id: e.id }, "cache: could not delete an entry's files"),
      );
    }
  }

  /** Metadata first: an archive without metadata is not an entry, and open() deletes it. */
  async #deleteFiles(id: number): Promise<void> {
    await rm(this.#metaPath(id), { force: true });
    await rm(`${this.#metaPath(id)}.tmp`, { force: true });
    await rm(this.#dataPath(id), { force: true });
  }
}

async function writeDurably(path: string, text: string): Promise<void> {
  const fh = await open(path, "w", 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes the renames in a directory durable; a platform that cannot fsync a directory is left as is. */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch {
    // EISDIR/EINVAL/EPERM on some platforms: the renames are still atomic, only not yet flushed.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
