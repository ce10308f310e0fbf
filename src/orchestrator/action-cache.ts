// The host's action cache (<dataDir>/actions): remote actions fetched with git on this host, once per
// repository URL and commit, kept as plain files (no .git) for jobs to copy into their machines.
// A ref is resolved with `git ls-remote` each time a job asks, with that job's credentials (a moved
// tag names a new commit, and a job that cannot read the repository gets nothing from the cache).
// An entry appears by an atomic rename once complete and names its URL and commit in a manifest;
// concurrent jobs asking for one commit share one fetch; pruning (by age unused and total size)
// never removes an entry a job is copying. The job's token reaches git through its environment for
// one command and is never written to disk. Never runs git with the host user's configuration.
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ActionRequest, CachedAction, HostActionCache } from "../engine/host-actions.js";
import type { Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";

export interface ActionCacheOptions {
  /** The cache's directory, <dataDir>/actions; created on first use. */
  readonly dir: string;
  /** Entries no job used for this long are removed. */
  readonly maxAgeMs: number;
  /** Above this total, the least recently used entries are removed. */
  readonly maxBytes: number;
  readonly log: Logger;
  readonly metrics?: Metrics;
  /** The longest one git command may take (ls-remote, or the fetch of one commit). */
  readonly gitTimeoutMs?: number;
  /** How often a hit prunes (a miss always does, after storing). */
  readonly pruneEveryMs?: number;
  readonly now?: () => number;
}

/** The forge would not say what a ref is, or would not serve its commit. */
export class ActionFetchError extends Error {
  override readonly name = "ActionFetchError";
  readonly code = "orchestrator.action-fetch";
}

/** What an entry's manifest.json holds. */
interface Manifest {
  readonly url: string;
  readonly commit: string;
  /** The commit's tree, as git computed it from the objects it verified. */
  readonly tree: string;
  readonly bytes: number;
  readonly fetchedAt: string;
}

const DEFAULT_GIT_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_PRUNE_EVERY_MS = 10 * 60_000;
/** A staging folder older than this belongs to a fetch that died with its process. */
const STALE_STAGING_MS = 60 * 60_000;
const FULL_SHA = /^[0-9a-f]{40}([0-9a-f]{24})?$/i;
const STAGING = ".staging";

/** Pure: the URL an entry is filed under (scheme and host lower case, no trailing slash or .git). */
export function cacheUrl(url: string): string {
  return url
    .trim()
    .replace(/\/+$/, "")
    .replace(/\.git$/, "")
    .toLowerCase();
}

/** Pure: the entry's folder name: readable repository name, hash of the URL, commit. */
export function entryName(url: string, commit: string): string {
  const u = cacheUrl(url);
  const slug = u
    .split("/")
    .slice(-2)
    .join("-")
    .replace(/[^a-z0-9._-]/g, "_")
    .slice(0, 60);
  const hash = createHash("sha256").update(u).digest("hex").slice(0, 12);
  return `${slug}-${hash}-${commit.toLowerCase()}`;
}

/**
 * Pure: the commit `ref` names in `git ls-remote` output (lines "<sha>\t<ref name>"): a tag (peeled
 * to its commit when annotated) before a branch, as GitHub resolves `uses:`; undefined when neither.
 */
export function commitOfRef(lsRemote: string, ref: string): string | undefined {
  const refs = new Map<string, string>();
  for (const line of lsRemote.split("\n")) {
    const [sha, name] = line.trim().split(/\s+/);
    if (sha && name && FULL_SHA.test(sha)) refs.set(name, sha.toLowerCase());
  }
  const wanted = ref.startsWith("refs/") ? [ref] : [`refs/tags/${ref}`, `refs/heads/${ref}`];
  for (const name of wanted) {
    const sha = refs.get(`${name}^{}`) ?? refs.get(name);
    if (sha) return sha;
  }
  return undefined;
}

export class ActionCache implements HostActionCache {
  readonly #o: ActionCacheOptions;
  readonly #now: () => number;
  /** One fetch per entry at a time: later askers wait for the first. */
  readonly #fetching = new Map<string, Promise<number>>();
  /** Entries jobs are copying right now (name → holders); pruning leaves them. */
  readonly #held = new Map<string, number>();
  /** Staging folders of fetches running in this process. */
  readonly #staging = new Set<string>();
  #lastPrune = 0;
  #pruning: Promise<unknown> | undefined;

  constructor(opts: ActionCacheOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  get dir(): string {
    return this.#o.dir;
  }

  async get(req: ActionRequest): Promise<CachedAction> {
    const started = this.#now();
    const commit = await this.#resolve(req);
    const resolveMs = this.#now() - started;
    const name = entryName(req.url, commit);
    this.#hold(name);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#unhold(name);
    };
    try {
      let fetchMs = 0;
      const hit = await this.#valid(name, req.url, commit);
      if (!hit) {
        let fetching = this.#fetching.get(name);
        if (!fetching) {
          fetching = this.#fetch(req, commit, name).finally(() => this.#fetching.delete(name));
          this.#fetching.set(name, fetching);
        }
        // The fetch is shared, so it runs on its own deadline; this job stops waiting when it is cancelled.
        fetchMs = await abortable(fetching, req.signal);
      }
      const now = new Date(this.#now());
      await utimes(join(this.#o.dir, name, "manifest.json"), now, now).catch(() => undefined);
      this.#o.metrics?.actionCacheRequests.inc({ result: hit ? "hit" : "miss" });
      if (!hit || this.#now() - this.#lastPrune >= (this.#o.pruneEveryMs ?? DEFAULT_PRUNE_EVERY_MS))
        void this.prune().catch((err: unknown) => this.#o.log.warn({ err }, "could not prune the action cache"));
      return { dir: join(this.#o.dir, name, "files"), commit, hit, resolveMs, fetchMs, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Removes entries no job used for maxAge, then the least recently used ones while the total is
   * above maxBytes, never one a job holds; and staging folders left by a process that died.
   */
  prune(): Promise<void> {
    // One pass at a time, each after the one before: a pass asked for now sees the cache as it is now.
    const pass = (this.#pruning ?? Promise.resolve()).then(() => this.#prune());
    this.#pruning = pass.catch(() => undefined);
    return pass;
  }

  async #prune(): Promise<void> {
    this.#lastPrune = this.#now();
    const names = await readdir(this.#o.dir).catch(() => [] as string[]);
    const entries: { name: string; usedMs: number; bytes: number }[] = [];
    for (const name of names) {
      if (name === STAGING) continue;
      const manifest = join(this.#o.dir, name, "manifest.json");
      const st = await stat(manifest).catch(() => undefined);
      const m = st ? await readManifest(manifest) : undefined;
      if (!st || !m) {
        // Not an entry (a manifest is written before the rename that publishes one): remove it.
        if (!this.#held.has(name)) await this.#remove(name);
        continue;
      }
      entries.push({ name, usedMs: st.mtimeMs, bytes: m.bytes });
    }
    const now = this.#now();
    let total = entries.reduce((sum, e) => sum + e.bytes, 0);
    for (const e of entries.sort((a, b) => a.usedMs - b.usedMs)) {
      if (this.#held.has(e.name)) continue;
      if (now - e.usedMs <= this.#o.maxAgeMs && total <= this.#o.maxBytes) continue;
      await this.#remove(e.name);
      total -= e.bytes;
      this.#o.log.info({ entry: e.name, bytes: e.bytes }, "action cache entry pruned");
    }
    const staging = join(this.#o.dir, STAGING);
    for (const name of await readdir(staging).catch(() => [] as string[])) {
      const path = join(staging, name);
      if (this.#staging.has(path)) continue;
      const st = await stat(path).catch(() => undefined);
      if (st && now - st.mtimeMs > STALE_STAGING_MS) await rm(path, { recursive: true, force: true });
    }
  }

  /** Out of sight first (a rename), then deleted: nobody sees half an entry. */
  async #remove(name: string): Promise<void> {
    const staging = join(this.#o.dir, STAGING);
    await mkdir(staging, { recursive: true });
    const trash = join(staging, `removed-${randomUUID()}`);
    try {
      await rename(join(this.#o.dir, name), trash);
    } catch {
      return;
    }
    await rm(trash, { recursive: true, force: true });
  }

  #hold(name: string): void {
    this.#held.set(name, (this.#held.get(name) ?? 0) + 1);
  }

  #unhold(name: string): void {
    const n = (this.#held.get(name) ?? 1) - 1;
    if (n <= 0) this.#held.delete(name);
    else this.#held.set(name, n);
  }

  /** An entry is there and complete, for this URL and commit. */
  async #valid(name: string, url: string, commit: string): Promise<boolean> {
    const m = await readManifest(join(this.#o.dir, name, "manifest.json"));
    if (!m || cacheUrl(m.url) !== cacheUrl(url) || m.commit !== commit) return false;
    return (await stat(join(this.#o.dir, name, "files")).catch(() => undefined))?.isDirectory() === true;
  }

  /**
   * The commit the ref names now, asked of the forge with the job's credentials: also for a full
   * SHA, so that a job that cannot read the repository cannot read it from the cache either.
   */
  async #resolve(req: ActionRequest): Promise<string> {
    const full = FULL_SHA.test(req.ref);
    const patterns = full
      ? ["HEAD"]
      : req.ref.startsWith("refs/")
        ? [req.ref, `${req.ref}^{}`]
        : [`refs/tags/${req.ref}`, `refs/tags/${req.ref}^{}`, `refs/heads/${req.ref}`];
    const scratch = await this.#scratch();
    let out: string;
    try {
      out = await this.#git(["ls-remote", "--", req.url, ...patterns], scratch, req, req.signal);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    if (full) return req.ref.toLowerCase();
    const commit = commitOfRef(out, req.ref);
    if (!commit)
      throw new ActionFetchError(
        `${req.url} has no tag or branch "${req.ref}"; use a tag, a branch or a full commit SHA that exists there`,
      );
    return commit;
  }

  /** Fetches the commit into a staging folder and publishes it by renaming; returns the time it took. */
  async #fetch(req: ActionRequest, commit: string, name: string): Promise<number> {
    const started = this.#now();
    const stage = await this.#scratch();
    const repo = join(stage, "files");
    const signal = AbortSignal.timeout(this.#o.gitTimeoutMs ?? DEFAULT_GIT_TIMEOUT_MS);
    try {
      await mkdir(repo);
      await this.#git(["init", "-q"], repo, req, signal);
      const fetchAt = (what: string, depth: string[]) =>
        this.#git(["fetch", "-q", "--no-tags", ...depth, "--", req.url, what], repo, req, signal);
      // Git's dumb HTTP transport (a plain web server) cannot serve a shallow fetch: take it whole.
      const fetch = (what: string) =>
        fetchAt(what, ["--depth=1"]).catch((err: unknown) => {
          if (/does not support shallow/.test((err as Error).message)) return fetchAt(what, []);
          throw err;
        });
      // By commit: what the ref named when the job asked. A server that serves only advertised refs
      // gets the ref itself, and the commit is checked below.
      await fetch(commit).catch((err: unknown) => {
        if (FULL_SHA.test(req.ref)) throw err;
        return fetch(req.ref);
      });
      const fetched = (await this.#git(["rev-parse", "FETCH_HEAD^{commit}"], repo, req, signal)).trim();
      if (fetched !== commit)
        throw new ActionFetchError(`${req.url} served commit ${fetched} when asked for ${commit}`);
      await this.#git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit], repo, req, signal);
      const tree = (await this.#git(["rev-parse", "HEAD^{tree}"], repo, req, signal)).trim();
      await rm(join(repo, ".git"), { recursive: true, force: true });
      const bytes = await sizeOf(repo);
      const manifest: Manifest = { url: req.url, commit, tree, bytes, fetchedAt: new Date(this.#now()).toISOString() };
      await writeFile(join(stage, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
      try {
        await rename(stage, join(this.#o.dir, name));
      } catch (err) {
        // Another process published the same commit first (or a broken leftover is in the way).
        if (!(await this.#valid(name, req.url, commit))) {
          await this.#remove(name);
          await rename(stage, join(this.#o.dir, name)).catch(() => {
            throw err;
          });
        }
      }
      const tookMs = this.#now() - started;
      this.#o.metrics?.actionFetchSeconds.observe(tookMs / 1000);
      this.#o.log.info({ url: req.url, commit, bytes, tookMs }, "action fetched into the host's action cache");
      return tookMs;
    } finally {
      this.#staging.delete(stage);
      await rm(stage, { recursive: true, force: true });
    }
  }

  /** A fresh folder under the staging area, known to this process until removed. */
  async #scratch(): Promise<string> {
    const path = join(this.#o.dir, STAGING, randomUUID());
    await mkdir(path, { recursive: true, mode: 0o700 });
    this.#staging.add(path);
    return path;
  }

  /**
   * Runs git in `cwd` fenced off from the host user: no global or system configuration (credential
   * helpers, url rewrites), no prompts, http(s) only (file: for a local mirror), and the job's
   * Authorization header through the environment for this command only.
   */
  #git(args: readonly string[], cwd: string, req: ActionRequest, signal: AbortSignal): Promise<string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (
        v !== undefined &&
        !k.startsWith("GIT_") &&
        !k.startsWith("GNOMON_") &&
        k !== "AMQP_URL" &&
        k !== "DATABASE_URL"
      )
        env[k] = v;
    Object.assign(env, {
      HOME: cwd,
      XDG_CONFIG_HOME: cwd,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_TERMINAL_PROMPT: "0",
      GIT_ASKPASS: "",
      SSH_ASKPASS: "",
      GIT_ALLOW_PROTOCOL: req.url.startsWith("file://") ? "https:http:file" : "https:http",
      LC_ALL: "C",
    });
    if (req.authorization)
      Object.assign(env, {
        GIT_CONFIG_COUNT: "1",
        GIT_CONFIG_KEY_0: `http.${new URL(req.url).origin}/.extraheader`,
        GIT_CONFIG_VALUE_0: req.authorization,
      });
    return new Promise((resolve, reject) => {
      execFile(
        "git",
        args,
        { cwd, env, signal, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          if (signal.aborted) return reject(signal.reason);
          const said = stderr.trim().split("\n").slice(-2).join(" ") || err.message;
          reject(new ActionFetchError(`git ${args[0]} failed: ${said}`, { cause: err }));
        },
      );
    });
  }
}

async function readManifest(path: string): Promise<Manifest | undefined> {
  try {
    const m = JSON.parse(await readFile(path, "utf8")) as Partial<Manifest>;
    if (typeof m.url !== "string" || typeof m.commit !== "string" || typeof m.bytes !== "number") return undefined;
    return m as Manifest;
  } catch {
    return undefined;
  }
}

/** Bytes of the files under a folder (symbolic links counted as themselves). */
async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await sizeOf(p);
    else total += (await lstat(p).catch(() => undefined))?.size ?? 0;
  }
  return total;
}

/** Waits for `p`, or rejects with the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
