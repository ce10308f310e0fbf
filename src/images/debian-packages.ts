// Debian packages for image recipes, offline except for the Debian archive: resolves a dependency
// closure with apt-cache, downloads the .deb files with apt-get into a cache (checked by SHA256) and
// unpacks them with dpkg-deb -x. Never installs anything on the host, never runs maintainer scripts.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { runTool } from "../vm/tool.js";
import { type ClosureRules, parseDepends, parseStanzas, pickAlternative, type Stanza } from "./debian-control.js";
import { RecipeError } from "./errors.js";

export interface DebPackage {
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly size: number;
  readonly depends: readonly (readonly string[])[];
}

/** The candidate version of each named package; names apt does not know are absent from the map. */
export async function showPackages(names: readonly string[], signal?: AbortSignal): Promise<Map<string, DebPackage>> {
  const out = new Map<string, DebPackage>();
  if (names.length === 0) return out;
  // apt-cache skips virtual and unknown names (exit 0 while at least one name is real).
  const { stdout } = await runTool("apt-cache", ["show", "--no-all-versions", ...names], { signal, okCodes: [0, 100] });
  for (const s of parseStanzas(stdout)) out.set(s["Package"]!, toPackage(s));
  return out;
}

function toPackage(s: Stanza): DebPackage {
  return {
    name: s["Package"]!,
    version: s["Version"] ?? "",
    sha256: s["SHA256"] ?? "",
    size: Number(s["Size"] ?? 0),
    depends: [...parseDepends(s["Pre-Depends"]), ...parseDepends(s["Depends"])],
  };
}

/** The packages `roots` need, following Depends and Pre-Depends, in a stable (sorted) order. */
export async function resolveClosure(
  recipe: string,
  roots: readonly string[],
  rules: ClosureRules,
  signal?: AbortSignal,
): Promise<DebPackage[]> {
  const chosen = new Map<string, DebPackage>();
  const taken = new Set<string>();
  let wanted = roots.map((n) => rules.provides[n] ?? n).filter((n) => !rules.exclude.has(n));
  for (const n of wanted) taken.add(n);
  while (wanted.length > 0) {
    const batch = [...new Set(wanted)].filter((n) => !chosen.has(n));
    wanted = [];
    const found = await showPackages(batch, signal);
    for (const name of batch) {
      const pkg = found.get(name);
      if (!pkg)
        throw new RecipeError(
          recipe,
          `"${name}" is not a package in the Debian archive this host uses; if it is a virtual package, ` +
            "map it to a real one under provides:, or add it to exclude:",
        );
      chosen.set(name, pkg);
      for (const group of pkg.depends) {
        const pick = pickAlternative(group, taken, rules);
        if (pick === undefined) continue;
        taken.add(pick);
        wanted.push(pick);
      }
    }
  }
  return [...chosen.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function cachedName(pkg: DebPackage): string {
  return `${pkg.name}_${pkg.sha256.slice(0, 16)}.deb`;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Ensures every package's .deb is in `cacheDir` (downloading the missing ones with apt-get) and
 * returns their paths in the order given. Each download is checked against the archive's SHA256.
 */
export async function fetchPackages(
  recipe: string,
  pkgs: readonly DebPackage[],
  cacheDir: string,
  onProgress: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<string[]> {
  await mkdir(cacheDir, { recursive: true });
  const present = new Set(await readdir(cacheDir));
  const missing = pkgs.filter((p) => !present.has(cachedName(p)));
  let done = pkgs.length - missing.length;
  onProgress(done, pkgs.length);
  const BATCH = 16;
  for (let i = 0; i < missing.length; i += BATCH) {
    const batch = missing.slice(i, i + BATCH);
    const tmp = await mkdtemp(join(cacheDir, ".download-"));
    try {
      await runTool("apt-get", ["download", "-q", ...batch.map((p) => `${p.name}=${p.version}`)], { cwd: tmp, signal });
      const files = await readdir(tmp);
      for (const pkg of batch) {
        const file = files.find((f) => f.startsWith(`${pkg.name}_`) && f.endsWith(".deb"));
        if (!file)
          throw new RecipeError(recipe, `apt-get download did not produce a .deb for ${pkg.name}=${pkg.version}`);
        const actual = await sha256File(join(tmp, file));
        if (pkg.sha256 && actual !== pkg.sha256)
          throw new RecipeError(recipe, `${file} has SHA256 ${actual}, the archive index says ${pkg.sha256}`);
        await rename(join(tmp, file), join(cacheDir, cachedName(pkg)));
        done += 1;
        onProgress(done, pkgs.length);
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return pkgs.map((p) => join(cacheDir, cachedName(p)));
}

export async function unpackDeb(debPath: string, root: string, signal?: AbortSignal): Promise<void> {
  await runTool("dpkg-deb", ["-x", debPath, root], { signal });
}
