// `gnomon images list | build | pull`: what the image catalog offers and what is on this host, the
// offline recipe builds, and verified, resumable downloads. Never boots a VM; the orchestrator does.
import { join } from "node:path";
import type { Config } from "../config/schema.js";
import { buildRecipe } from "../images/build-recipe.js";
import { type PullProgress, pullImage } from "../images/pull.js";
import { withRecipeDigests } from "../images/recipe-digests.js";
import type { Logger } from "../telemetry/log.js";
import { type Catalog, catalogStatus, type ImageEntry, imageNameFor, loadCatalog } from "../vm/catalog.js";
import { DELIVERED_PLATFORM, NODE_MAJORS, type NodeMajor, NodeRuntimes, nodePlatformOf } from "../vm/node-runtime.js";
import { type Command, UsageError } from "./command.js";
import { EXIT } from "./exit-codes.js";

export function imagesDir(config: Readonly<Config>): string {
  return config.images.dir || join(config.dataDir, "images");
}

/** The Node.js runtimes for JavaScript actions, kept under <dataDir>/runtimes. */
export function nodeRuntimes(config: Readonly<Config>, logger?: Logger): NodeRuntimes {
  const n = config.runtimes.node;
  return new NodeRuntimes({
    dir: join(config.dataDir, "runtimes"),
    registry: n.registry,
    sources: { ...(n.node20 ? { 20: n.node20 } : {}), ...(n.node24 ? { 24: n.node24 } : {}) },
    logger,
  });
}

/**
 * The configured catalog with the digests of the recipes gnomon ships now, so that a recipe image
 * built from another recipe resolves as stale. Every process that resolves labels loads it so.
 */
export async function catalogOf(config: Readonly<Config>): Promise<Catalog> {
  return withRecipeDigests(await loadCatalog(config.images.catalog || undefined));
}

function abortOn(stopRequested: Promise<void>): AbortSignal {
  const ctl = new AbortController();
  void stopRequested.then(() => ctl.abort(new Error("stopped by a signal")));
  return ctl.signal;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function oneName(positionals: readonly string[], cmd: string): string {
  if (positionals.length !== 1) throw new UsageError(`needs exactly one image name; see \`gnomon ${cmd} --help\``);
  return positionals[0]!;
}

export const imagesListCommand: Command = {
  name: "images list",
  summary: "list the image catalog and which images are on this host",
  usage: `Usage: gnomon images list [--json]

Lists every image of the catalog: its name, the runs-on labels it serves, its OS, where it comes
from (url, recipe or a local path), whether it is on this host, its size on disk, and the Node.js
its JavaScript actions run on: gnomon's (the versions; "at first use" until this host has them),
the image's own (the majors it declares), or none.`,
  options: { json: { type: "boolean" } },
  async run(args, ctx) {
    const config = args.config();
    const catalog = await catalogOf(config);
    const runtimes = nodeRuntimes(config);
    const rows = await Promise.all(
      (await catalogStatus(catalog, imagesDir(config))).map(async (r) => ({
        ...r,
        node: await nodeOf(catalog.images.get(r.name)!, runtimes),
      })),
    );
    if (args.values["json"]) {
      ctx.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return EXIT.ok;
    }
    const table = [
      ["NAME", "LABELS", "OS", "SOURCE", "PRESENT", "SIZE", "NODE"],
      ...rows.map((r) => [
        r.name,
        r.labels.join(", "),
        r.os,
        r.source,
        r.present ? "yes" : r.stale ? "stale" : "no",
        r.bytes !== undefined ? formatBytes(r.bytes) : "-",
        nodeColumn(r.node),
      ]),
    ];
    const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
    for (const row of table)
      ctx.stdout.write(
        `${row
          .map((cell, c) => cell.padEnd(widths[c]!))
          .join("  ")
          .trimEnd()}\n`,
      );
    return EXIT.ok;
  },
};

/** The Node.js one major of an image's JavaScript actions runs on. */
export type ImageNode =
  | { readonly major: NodeMajor; readonly from: "image"; readonly path: string; readonly package?: string }
  | { readonly major: NodeMajor; readonly from: "gnomon"; readonly version: string; readonly present: boolean }
  | { readonly major: NodeMajor; readonly from: "none" };

async function nodeOf(entry: ImageEntry, runtimes: NodeRuntimes): Promise<ImageNode[]> {
  const platform = nodePlatformOf(entry.os, entry.arch);
  return Promise.all(
    NODE_MAJORS.map(async (major): Promise<ImageNode> => {
      const own = entry.node[`node${major}`];
      if (own) return { major, from: "image", path: own.path, package: own.package };
      const src = runtimes.source(platform, major);
      if (!src) return { major, from: "none" };
      const have = await runtimes.cached(platform, major);
      const version = have?.version ?? (src.kind === "npm" ? src.version : "tarball");
      return { major, from: "gnomon", version, present: have !== undefined };
    }),
  );
}

/** "gnomon 20.20.2, 24.22.3", "image 20, 24", "-" (and "at first use" until gnomon's are here). */
function nodeColumn(nodes: readonly ImageNode[]): string {
  const parts: string[] = [];
  const gnomon = nodes.filter((n) => n.from === "gnomon");
  const image = nodes.filter((n) => n.from === "image");
  if (image.length) parts.push(`image ${image.map((n) => n.major).join(", ")}`);
  if (gnomon.length)
    parts.push(
      `gnomon ${gnomon.map((n) => n.version).join(", ")}${gnomon.some((n) => !n.present) ? " (at first use)" : ""}`,
    );
  return parts.join("; ") || "-";
}

export const imagesBuildCommand: Command = {
  name: "images build",
  summary: "build a recipe image offline from Debian packages",
  usage: `Usage: gnomon images build NAME [--force]

Builds the catalog image NAME from its recipe (images/recipes/<recipe>/) into the images folder:
Debian packages are fetched with apt-get download and unpacked with dpkg-deb, the disk is written
with mke2fs -d; no network beyond the Debian archive, no mounts, no containers. A build is reused
until a file of its recipe changes; --force builds again anyway.`,
  options: { force: { type: "boolean" } },
  allowPositionals: true,
  async run(args, ctx) {
    const config = args.config();
    const catalog = await catalogOf(config);
    const name = imageNameFor(catalog, oneName(args.positionals, "images build"));
    const src = catalog.images.get(name)!.source;
    if (!("recipe" in src))
      throw new UsageError(`${name} is not built from a recipe; download it with \`gnomon images pull ${name}\``);
    const started = Date.now();
    const { image, built } = await buildRecipe(src.recipe, {
      imagesDir: imagesDir(config),
      force: args.values["force"] === true,
      signal: abortOn(ctx.stopRequested),
      onProgress: (p) => ctx.stderr.write(`[${p.step}/${p.steps}] ${p.title}${p.detail ? `: ${p.detail}` : ""}\n`),
    });
    const b = image.manifest.bytes;
    const sizes = `disk ${formatBytes(b.disk)} (qcow2 of ${formatBytes(b.rootFiles)} of files), kernel ${formatBytes(b.kernel)}, initrd ${formatBytes(b.initrd)}`;
    if (built)
      ctx.stdout.write(
        `built ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s: ${image.manifest.packages.length} packages, ${sizes}\n  ${image.dir}\n`,
      );
    else ctx.stdout.write(`${name} is up to date (built ${image.manifest.builtAt}): ${sizes}\n  ${image.dir}\n`);
    for (const w of image.manifest.warnings) ctx.stderr.write(`warning: ${w}\n`);
    return EXIT.ok;
  },
};

/** Renders download progress: a redrawn bar on a terminal, a line every 10 % otherwise. */
export function progressPrinter(out: NodeJS.WriteStream, now: () => number = Date.now): (p: PullProgress) => void {
  const started = now();
  let lastDecile = -1;
  let lastDraw = 0;
  return (p) => {
    if (p.stage !== "download") {
      if (out.isTTY && lastDraw > 0) out.write("\n");
      lastDraw = 0;
      if (p.stage !== "done")
        out.write(
          `${p.stage === "checksum" ? "fetching the checksum file" : p.stage === "verify" ? "verifying the checksum" : "decompressing"}…\n`,
        );
      return;
    }
    const total = p.totalBytes;
    const pct = total ? Math.min(100, Math.floor((p.receivedBytes / total) * 100)) : undefined;
    const secs = Math.max((now() - started) / 1000, 0.001);
    const rate = `${formatBytes(p.receivedBytes / secs)}/s`;
    const amount = total ? `${formatBytes(p.receivedBytes)} / ${formatBytes(total)}` : formatBytes(p.receivedBytes);
    if (out.isTTY) {
      if (now() - lastDraw < 100 && pct !== 100) return;
      lastDraw = now();
      const width = 30;
      const filled = pct === undefined ? 0 : Math.round((pct / 100) * width);
      const bar =
        pct === undefined ? "" : `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(pct).padStart(3)}% `;
      out.write(`\r${bar}${amount}  ${rate}\x1b[K`);
    } else {
      const decile = pct === undefined ? Math.floor(p.receivedBytes / (100 * 1024 * 1024)) : Math.floor(pct / 10);
      if (decile === lastDecile) return;
      lastDecile = decile;
      out.write(`downloading ${pct !== undefined ? `${pct}% ` : ""}${amount}  ${rate}\n`);
    }
  };
}

export const imagesPullCommand: Command = {
  name: "images pull",
  summary: "download a catalog image, checksum-verified and resumable",
  usage: `Usage: gnomon images pull NAME

Downloads the disk image of the catalog image NAME (or of the image serving label NAME) into the
images folder. An interrupted pull resumes where it stopped (HTTP Range); the file is verified
against the catalog's checksum (or the vendor's checksum file) before use, and decompressed when
the download is .zst, .xz or .gz.`,
  options: {},
  allowPositionals: true,
  async run(args, ctx) {
    const config = args.config();
    const catalog = await catalogOf(config);
    const r = await pullImage(catalog, oneName(args.positionals, "images pull"), {
      imagesDir: imagesDir(config),
      signal: abortOn(ctx.stopRequested),
      onProgress: progressPrinter(ctx.stderr),
    });
    const how = r.pinned
      ? "matches the catalog's pinned checksum"
      : "matches the vendor's checksum file (not pinned in the catalog)";
    if (r.alreadyPresent)
      ctx.stdout.write(`${r.name} is already here and verified: ${formatBytes(r.bytes)}\n  ${r.path}\n`);
    else
      ctx.stdout.write(
        `pulled ${r.name}: ${formatBytes(r.bytes)}${r.resumedFrom ? ` (resumed after ${formatBytes(r.resumedFrom)})` : ""}; ${r.checksum.split(":")[0]} ${how}\n  ${r.path}\n`,
      );
    return EXIT.ok;
  },
};

export const imagesNodeCommand: Command = {
  name: "images node",
  summary: "obtain gnomon's Node.js runtimes for JavaScript actions now",
  usage: `Usage: gnomon images node

Obtains the Node.js runtimes gnomon brings into linux-x64 VMs (and to gnomon exec) for JavaScript
actions, Node.js 20 and 24: from the npm registry (runtimes.node.registry) or the configured
tarballs, verified, unpacked and written as runtime disks under <dataDir>/runtimes. Jobs otherwise
obtain them at the first job that needs them; run this ahead of time, or on a connected host whose
<dataDir>/runtimes you then copy to an offline one (docs/javascript-actions.md).`,
  options: {},
  async run(args, ctx) {
    const runtimes = nodeRuntimes(args.config(), args.logger());
    const signal = abortOn(ctx.stopRequested);
    for (const major of NODE_MAJORS) {
      const had = await runtimes.cached(DELIVERED_PLATFORM, major);
      const started = Date.now();
      const rt = had ?? (await runtimes.prepare(DELIVERED_PLATFORM, major, signal));
      const how = had ? "already here" : `obtained in ${((Date.now() - started) / 1000).toFixed(1)} s`;
      ctx.stdout.write(
        `Node.js ${rt.version} for ${rt.platform}: ${how}, verified ${rt.checksum.slice(0, 20)}… (${rt.from})\n  ${rt.dir}\n`,
      );
    }
    return EXIT.ok;
  },
};

/** The images commands for main.ts's COMMANDS. */
export function imagesCommands(): Command[] {
  return [imagesListCommand, imagesBuildCommand, imagesPullCommand, imagesNodeCommand];
}
