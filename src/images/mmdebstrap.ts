// The root file system of an mmdebstrap recipe: Debian's mmdebstrap installs the packages as dpkg
// does (maintainer scripts run, services enabled, users and groups made), then the recipe's rootfs/
// files are laid over it and its customize script runs in the root to trim and configure it. The
// downloaded .debs are kept in a cache for the next build. Needs root (mmdebstrap --mode=root): the
// files must belong to root and system users, and mke2fs -d copies owners as they are.
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTool } from "../vm/tool.js";
import { parseStanzas } from "./debian-control.js";
import { RecipeError } from "./errors.js";
import type { Recipe } from "./recipe.js";

export interface MmdebstrapOptions {
  readonly recipeName: string;
  readonly recipeDir: string;
  readonly recipe: Recipe;
  readonly root: string;
  /** Where the .debs of earlier builds are kept. */
  readonly debCache: string;
  /** SOURCE_DATE_EPOCH of the build: mmdebstrap's timestamps, the clamp of every file's mtime. */
  readonly epoch: number;
  readonly onLine: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** Installs the recipe's packages into `root` (which must not exist) and returns "name=version" of each. */
export async function mmdebstrapRoot(o: MmdebstrapOptions): Promise<string[]> {
  const { recipe, recipeName, root, signal } = o;
  if (process.getuid?.() !== 0)
    throw new RecipeError(
      recipeName,
      "builds with mmdebstrap as root (its packages' maintainer scripts must run and its files belong to root); run `gnomon images build` as root",
    );
  await mkdir(o.debCache, { recursive: true });
  const args = [
    "--variant=apt",
    "--mode=root",
    "--format=directory",
    `--include=${recipe.packages.join(",")}`,
    // The .debs of earlier builds: in before the download, out before the cleanup removes them.
    "--skip=download/empty",
    "--skip=essential/unlink",
    `--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
    `--setup-hook=sync-in ${o.debCache} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${o.debCache}`,
    recipe.suite!,
    root,
    ...recipe.sources,
  ];
  await runTool("mmdebstrap", args, {
    signal,
    env: { ...process.env, SOURCE_DATE_EPOCH: String(o.epoch) },
    onStderrLine: (line) => line.startsWith("I: ") && o.onLine(line.slice(3)),
  });
  await rm(join(root, "var", "cache", "apt", "archives"), { recursive: true, force: true });
  await mkdir(join(root, "var", "cache", "apt", "archives", "partial"), { recursive: true });
  await cp(join(o.recipeDir, "rootfs"), root, { recursive: true, force: true, verbatimSymlinks: true });
  if (recipe.customize) {
    const script = join(root, "tmp", "gnomon-customize.sh");
    await writeFile(script, await readFile(join(o.recipeDir, recipe.customize)), { mode: 0o755 });
    try {
      await runTool("chroot", [root, "/bin/sh", "-e", "/tmp/gnomon-customize.sh"], {
        signal,
        env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8", SOURCE_DATE_EPOCH: String(o.epoch) },
        onStderrLine: o.onLine,
      });
    } finally {
      await rm(script, { force: true });
    }
  }
  return installedPackages(root);
}

/** "name=version" of every package dpkg has installed in `root`, sorted. */
async function installedPackages(root: string): Promise<string[]> {
  const status = await readFile(join(root, "var", "lib", "dpkg", "status"), "utf8");
  return parseStanzas(status)
    .filter((s) => s["Status"]?.endsWith(" installed"))
    .map((s) => `${s["Package"]}=${s["Version"]}`)
    .sort();
}

/** Sets every file's mtime later than `epoch` to it (what dpkg and the scripts wrote during the build). */
export async function clampMtimes(root: string, epoch: number, signal?: AbortSignal): Promise<void> {
  await runTool(
    "find",
    [root, "-xdev", "-newermt", `@${epoch}`, "-exec", "touch", "--no-dereference", `--date=@${epoch}`, "{}", "+"],
    { signal },
  );
}
