// Builds a recipe image offline from Debian packages: resolve and download the .debs, unpack them
// into a merged-/usr root, add the recipe's files, the login user and a few kernel modules, then
// write an ext4 disk (mke2fs -d, no mounts, no root tricks), a qcow2 of it, the kernel and a tiny
// busybox initrd. The result is cached under <imagesDir>/<recipe>/<hash>/ with its manifest
// (src/vm/built-image.ts, what the VM layer reads) and reused until the recipe's files change;
// <imagesDir>/<recipe>/current points at it. Never touches the host outside the images folder.
import { constants as fsc } from "node:fs";
import {
  chmod,
  copyFile,
  cp,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { gzipSync } from "node:zlib";
import {
  BUILT_IMAGE_VERSION,
  type BuiltImage,
  type BuiltImageManifest,
  CURRENT_LINK,
  MANIFEST_FILE,
  readBuiltImage,
  recipeBuildsDir,
} from "../vm/built-image.js";
import { shippedImagesDir } from "../vm/shipped-images.js";
import { runTool } from "../vm/tool.js";
import { type CpioEntry, cpioArchive } from "./cpio.js";
import { fetchPackages, resolveClosure, sha256File, showPackages, unpackDeb } from "./debian-packages.js";
import { RecipeError } from "./errors.js";
import { loadOrder, type ModuleInfo, moduleName, modulesDep, parseModuleDepends } from "./kernel-modules.js";
import { clampMtimes, mmdebstrapRoot } from "./mmdebstrap.js";
import { listFiles, loadRecipe, type Recipe, recipeHash } from "./recipe.js";

/**
 * Bump when a change to this builder changes the images it makes: every recipe is rebuilt.
 * 2: the manifest of src/vm/built-image.ts and the current link.
 */
export const BUILDER_VERSION = 2;

const STEPS = 8;

export interface BuildProgress {
  readonly step: number;
  readonly steps: number;
  readonly title: string;
  readonly detail?: string;
}

export interface BuildOptions {
  readonly imagesDir: string;
  /** Where recipes live; default: images/recipes shipped with gnomon. */
  readonly recipesDir?: string;
  /** Rebuild even when an image for the current recipe exists. */
  readonly force?: boolean;
  readonly onProgress?: (p: BuildProgress) => void;
  readonly signal?: AbortSignal;
}

export function recipesDir(): string {
  return join(shippedImagesDir(), "recipes");
}

function outputDir(imagesDir: string, recipe: string, hash: string): string {
  return join(recipeBuildsDir(imagesDir, recipe), hash.slice(0, 16));
}

/** The built image for the recipe as it is now, or undefined when it has not been built. */
export async function findBuiltImage(
  recipe: string,
  imagesDir: string,
  fromDir: string = recipesDir(),
): Promise<{ hash: string; dir: string; image: BuiltImage | undefined }> {
  const hash = await recipeHash(join(fromDir, recipe), BUILDER_VERSION);
  const dir = outputDir(imagesDir, recipe, hash);
  const image = await readBuiltImage(dir);
  return { hash, dir, image: image?.manifest.recipeDigest === hash ? image : undefined };
}

/** Builds the recipe unless an image of its current inputs exists; `built` says which happened. */
export async function buildRecipe(recipe: string, opts: BuildOptions): Promise<{ image: BuiltImage; built: boolean }> {
  const from = opts.recipesDir ?? recipesDir();
  const builds = recipeBuildsDir(opts.imagesDir, recipe);
  // Up to date and in use: no lock (another process may be building something else meanwhile).
  const ready = await findBuiltImage(recipe, opts.imagesDir, from);
  if (ready.image && !opts.force && (await isCurrent(builds, ready.dir))) return { image: ready.image, built: false };
  await mkdir(builds, { recursive: true });
  const release = await takeLock(join(builds, ".build.lock"), opts.signal);
  try {
    const found = await findBuiltImage(recipe, opts.imagesDir, from);
    if (found.image && !opts.force) {
      await pointCurrentAt(builds, found.dir);
      return { image: found.image, built: false };
    }
    const image = await build(recipe, join(from, recipe), found.hash, found.dir, opts);
    await pointCurrentAt(builds, found.dir);
    await removeOtherBuilds(builds, found.dir);
    return { image, built: true };
  } finally {
    await release();
  }
}

async function build(
  recipeName: string,
  recipeDir: string,
  hash: string,
  outDir: string,
  opts: BuildOptions,
): Promise<BuiltImage> {
  const started = Date.now();
  const { signal } = opts;
  const progress = (step: number, title: string, detail?: string) =>
    opts.onProgress?.({ step, steps: STEPS, title, detail });
  const recipe = await loadRecipe(recipeDir);
  if (recipe.name !== recipeName)
    throw new RecipeError(recipeName, `recipe.yaml says name: ${recipe.name}; it must match its folder`);
  const work = join(dirname(outDir), `.build-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  const root = join(work, "root");
  const kroot = join(work, "kernel");
  await mkdir(kroot, { recursive: true });
  const warnings: string[] = [];
  const debCache = join(opts.imagesDir, ".cache", "debs");
  try {
    const ctx: RootContext = { recipeName, recipeDir, recipe, root, kroot, debCache, progress, warnings, signal };
    const { packages, kernel } =
      recipe.builder === "mmdebstrap"
        ? await mmdebstrapTree({
            ...ctx,
            epoch: buildEpoch(),
            mmdebstrapCache: join(opts.imagesDir, ".cache", "mmdebstrap"),
          })
        : await unpackedTree(ctx);
    const rootFiles = await treeBytes(root);

    progress(6, "writing the initrd", `${recipe.modules.boot.length} boot modules`);
    const tmpOut = `${outDir}.tmp-${process.pid}`;
    await rm(tmpOut, { recursive: true, force: true });
    await mkdir(tmpOut, { recursive: true });
    const initrd = await initrdImage(recipeName, recipeDir, kernel, recipe.modules.boot);
    await writeFile(join(tmpOut, "initrd.img"), initrd);
    await copyFile(kernel.vmlinuz, join(tmpOut, "vmlinuz"));

    progress(7, "writing the ext4 disk", `${recipe.diskSizeMiB} MiB`);
    const raw = join(work, "disk.raw");
    await runTool(
      "mke2fs",
      [
        "-q",
        "-F",
        "-t",
        "ext4",
        "-L",
        "gnomon-root",
        // No journal: a job's disk lives for one job; lazy init off, so the guest never zeroes inode
        // tables into its overlay.
        "-O",
        "^has_journal",
        "-E",
        // The UUID and directory hash seed from the recipe, the times from the build's epoch: the
        // same files give the same file system.
        `lazy_itable_init=0,root_owner=0:0,hash_seed=${uuidOf(hash)}`,
        "-U",
        uuidOf(hash),
        "-d",
        root,
        raw,
        `${recipe.diskSizeMiB}M`,
      ],
      { signal, env: { ...process.env, E2FSPROGS_FAKE_TIME: String(buildEpoch()) } },
    );

    await settleCtimes(root, raw, buildEpoch(), signal);

    progress(8, "converting to qcow2");
    await runTool("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", "-c", raw, join(tmpOut, "disk.qcow2")], {
      signal,
    });
    const manifest: BuiltImageManifest = {
      v: BUILT_IMAGE_VERSION,
      recipe: recipeName,
      recipeDigest: hash,
      builderVersion: BUILDER_VERSION,
      builtAt: new Date().toISOString(),
      buildMs: Date.now() - started,
      arch: "x86_64",
      files: { disk: "disk.qcow2", kernel: "vmlinuz", initrd: "initrd.img" },
      kernelCmdline: recipe.kernelCmdline,
      kernelVersion: kernel.version,
      diskSha256: await sha256File(join(tmpOut, "disk.qcow2")),
      packages: [...packages],
      bytes: {
        disk: (await stat(join(tmpOut, "disk.qcow2"))).size,
        kernel: (await stat(join(tmpOut, "vmlinuz"))).size,
        initrd: initrd.length,
        rootFiles,
      },
      warnings,
    };
    await writeFile(join(tmpOut, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(outDir, { recursive: true, force: true });
    await rename(tmpOut, outDir);
    const image = await readBuiltImage(outDir);
    if (!image) throw new RecipeError(recipeName, `the build in ${outDir} has no readable ${MANIFEST_FILE}`);
    return image;
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(`${outDir}.tmp-${process.pid}`, { recursive: true, force: true });
  }
}

interface RootContext {
  readonly recipeName: string;
  readonly recipeDir: string;
  readonly recipe: Recipe;
  readonly root: string;
  /** Where the kernel package (and for mmdebstrap busybox for the initrd) is unpacked. */
  readonly kroot: string;
  readonly debCache: string;
  readonly progress: (step: number, title: string, detail?: string) => void;
  readonly warnings: string[];
  readonly signal?: AbortSignal;
}

interface RootTree {
  /** "name=version" of what is in the image. */
  readonly packages: readonly string[];
  readonly kernel: KernelParts;
}

/** builder: unpack. The packages' files unpacked by gnomon, no maintainer scripts, busybox init. */
async function unpackedTree(c: RootContext): Promise<RootTree> {
  const { recipe, recipeName, root, progress, signal } = c;
  await mkdir(root, { recursive: true });
  if (process.getuid?.() !== 0)
    c.warnings.push(
      `built as uid ${process.getuid?.()}: the image's files belong to that uid, not root (mke2fs -d copies owners); setuid programs in it will not work`,
    );
  progress(1, "resolving packages", `${recipe.packages.length} requested`);
  const rules = { exclude: new Set(recipe.exclude), provides: recipe.provides };
  const pkgs = await resolveClosure(recipeName, recipe.packages, rules, signal);
  const kernelPkg = await resolveKernel(recipeName, recipe.kernel, signal);
  progress(1, "resolving packages", `${pkgs.length} packages with dependencies, kernel ${kernelPkg.name}`);
  const all = [...pkgs, kernelPkg];
  const debs = await fetchPackages(
    recipeName,
    all,
    c.debCache,
    (done, total) => progress(2, "downloading packages", `${done}/${total}`),
    signal,
  );
  for (const [i, deb] of debs.slice(0, -1).entries()) {
    await unpackDeb(deb, root, signal);
    if ((i + 1) % 10 === 0 || i === pkgs.length - 1) progress(3, "unpacking packages", `${i + 1}/${pkgs.length}`);
  }
  progress(4, "unpacking the kernel", kernelPkg.name);
  await unpackDeb(debs.at(-1)!, c.kroot, signal);
  const kernel = await kernelParts(recipeName, c.kroot, join(root, "usr", "bin", "busybox"));

  progress(5, "assembling the root file system");
  await mergeUsr(root);
  await strip(root, recipe.strip);
  await linkApplets(root, recipe.busyboxApplets);
  await cp(join(c.recipeDir, "rootfs"), root, { recursive: true, force: true, verbatimSymlinks: true });
  await finishTree(root, recipe);
  await guestModules(c, kernel);
  try {
    await runTool("ldconfig", ["-r", root], { signal });
  } catch (err) {
    c.warnings.push(`ldconfig -r failed, the guest uses ld.so's default paths: ${(err as Error).message}`);
  }
  return { packages: all.map((p) => `${p.name}=${p.version}`), kernel };
}

/** builder: mmdebstrap. Debian installs the packages (mmdebstrap.ts); the kernel is unpacked beside. */
async function mmdebstrapTree(c: RootContext & { epoch: number; mmdebstrapCache: string }): Promise<RootTree> {
  const { recipe, recipeName, root, progress, signal } = c;
  progress(1, "resolving the kernel", recipe.kernel);
  const kernelPkg = await resolveKernel(recipeName, recipe.kernel, signal);
  const busybox = (await showPackages(["busybox-static"], signal)).get("busybox-static");
  if (!busybox) throw new RecipeError(recipeName, "busybox-static (for the initrd) is not in the Debian archive");
  const debs = await fetchPackages(
    recipeName,
    [kernelPkg, busybox],
    c.debCache,
    (done, total) => progress(2, "downloading the kernel and the initrd's busybox", `${done}/${total}`),
    signal,
  );
  progress(3, "installing packages with mmdebstrap", `${recipe.packages.length} requested, ${recipe.suite}`);
  const packages = await mmdebstrapRoot({
    recipeName,
    recipeDir: c.recipeDir,
    recipe,
    root,
    debCache: join(c.mmdebstrapCache, recipeName),
    epoch: c.epoch,
    onLine: (line) => progress(3, "installing packages with mmdebstrap", line),
    signal,
  });
  progress(4, "unpacking the kernel", kernelPkg.name);
  for (const deb of debs) await unpackDeb(deb, c.kroot, signal);
  const kernel = await kernelParts(recipeName, c.kroot, join(c.kroot, "bin", "busybox"));
  progress(5, "assembling the root file system");
  await strip(root, recipe.strip);
  await guestModules(c, kernel);
  await runTool("chroot", [root, "depmod", kernel.version], { signal });
  await clampMtimes(root, c.epoch, signal);
  return { packages: [...packages, `${kernelPkg.name}=${kernelPkg.version}`].sort(), kernel };
}

/** The kernel's modules in the guest: all of them (allModules) or modules.extra with their closure. */
async function guestModules(c: RootContext, kernel: KernelParts): Promise<void> {
  if (c.recipe.allModules) {
    await cp(kernel.modulesDir, join(c.root, "usr", "lib", "modules", kernel.version), { recursive: true });
    return;
  }
  const extra = await installModules(c.recipeName, c.root, kernel, c.recipe.modules.extra);
  if (extra.missing.length) c.warnings.push(`kernel modules not found: ${extra.missing.join(", ")}`);
}

/**
 * The build's timestamp: SOURCE_DATE_EPOCH when set, else a fixed one, so that the same packages
 * give the same files, times included (docs/images.md says how far that goes).
 */
function buildEpoch(): number {
  const env = Number(process.env["SOURCE_DATE_EPOCH"]);
  return Number.isInteger(env) && env > 0 ? env : FIXED_EPOCH;
}

/**
 * mke2fs -d copies each file's ctime and atime from the build tree, where they are times of the
 * build (no program can set a ctime, and reading a folder sets its atime); debugfs sets them all
 * to the epoch, so that two builds of the same files give the same disk.
 */
async function settleCtimes(root: string, raw: string, epoch: number, signal?: AbortSignal): Promise<void> {
  const { stdout } = await runTool("find", [root, "-mindepth", "1", "-printf", "%P\\0"], { signal });
  const paths = ["", ...stdout.split("\0").filter(Boolean)];
  const commands = paths
    .filter((p) => !/["\n]/.test(p)) // debugfs takes a backslash as it is, not a quote or a newline
    .map((p) => `set_inode_field "/${p}" ctime @${epoch}\nset_inode_field "/${p}" atime @${epoch}\n`)
    .join("");
  const file = `${raw}.debugfs`;
  await writeFile(file, commands);
  try {
    await runTool("debugfs", ["-w", "-f", file, raw], {
      signal,
      env: { ...process.env, E2FSPROGS_FAKE_TIME: String(epoch) },
    });
  } finally {
    await rm(file, { force: true });
  }
}

/** A UUID made of the first 128 bits of a hex digest. */
function uuidOf(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** 2025-01-01T00:00:00Z. */
const FIXED_EPOCH = 1_735_689_600;

async function resolveKernel(recipe: string, meta: string, signal?: AbortSignal) {
  const found = await showPackages([meta], signal);
  const pkg = found.get(meta);
  if (!pkg) throw new RecipeError(recipe, `kernel package ${meta} is not in the Debian archive`);
  // The meta package depends on one versioned image package; that one carries vmlinuz and modules.
  const versioned = pkg.depends.flat().find((d) => d.startsWith("linux-image-"));
  if (!versioned) return pkg;
  const real = (await showPackages([versioned], signal)).get(versioned);
  if (!real) throw new RecipeError(recipe, `kernel package ${versioned} (from ${meta}) is not in the archive`);
  return real;
}

interface KernelParts {
  readonly version: string;
  readonly vmlinuz: string;
  /** busybox-static's binary, the initrd's only program. */
  readonly busybox: string;
  readonly modulesDir: string;
  readonly index: Map<string, ModuleInfo>;
  readonly builtin: Set<string>;
}

async function kernelParts(recipe: string, kroot: string, busybox: string): Promise<KernelParts> {
  const boot = await readdir(join(kroot, "boot"));
  const vmlinuz = boot.find((f) => f.startsWith("vmlinuz-"));
  if (!vmlinuz) throw new RecipeError(recipe, "the kernel package has no boot/vmlinuz-*");
  const version = vmlinuz.slice("vmlinuz-".length);
  const modulesDir = join(kroot, "lib", "modules", version);
  const index = new Map<string, ModuleInfo>();
  for (const file of await listFiles(join(modulesDir, "kernel"))) {
    if (!file.endsWith(".ko")) continue;
    const path = relative(modulesDir, file);
    index.set(moduleName(path), { path, depends: parseModuleDepends(await readFile(file)) });
  }
  const builtin = new Set<string>();
  try {
    for (const line of (await readFile(join(modulesDir, "modules.builtin"), "utf8")).split("\n"))
      if (line) builtin.add(moduleName(line));
  } catch {
    // no modules.builtin: treat nothing as built in
  }
  return { version, vmlinuz: join(kroot, "boot", vmlinuz), busybox, modulesDir, index, builtin };
}

/** Bytes of the regular files below `dir`, each hard-linked file once. */
async function treeBytes(dir: string, seen = new Set<string>()): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p, seen);
    else if (e.isFile()) {
      const st = await lstat(p);
      const id = `${st.dev}:${st.ino}`;
      if (!seen.has(id)) total += st.size;
      seen.add(id);
    }
  }
  return total;
}

const MERGED = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
const ALWAYS = new Set(["bin", "sbin", "lib", "lib64"]);

/** Debian 12 is merged-/usr: /bin, /sbin, /lib* are symlinks into /usr, whatever the .debs ship. */
async function mergeUsr(root: string): Promise<void> {
  for (const d of MERGED) {
    const top = join(root, d);
    const st = await lstat(top).catch(() => undefined);
    if (st?.isSymbolicLink()) continue;
    if (st?.isDirectory()) {
      await mergeInto(top, join(root, "usr", d));
      await rm(top, { recursive: true, force: true });
    } else if (!ALWAYS.has(d)) continue;
    await mkdir(join(root, "usr", d), { recursive: true });
    await symlink(`usr/${d}`, top);
  }
}

async function mergeInto(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from)) {
    const src = join(from, e);
    const dst = join(to, e);
    const [s, d] = await Promise.all([lstat(src), lstat(dst).catch(() => undefined)]);
    if (!d) await rename(src, dst);
    else if (s.isDirectory() && d.isDirectory()) await mergeInto(src, dst);
    else if (d.isSymbolicLink() && !s.isSymbolicLink()) {
      // The real file wins over a compatibility symlink pointing at it.
      await rm(dst, { force: true });
      await rename(src, dst);
    }
  }
}

async function strip(root: string, paths: readonly string[]): Promise<void> {
  for (const p of paths) {
    const abs = join(root, p);
    if (p !== "usr/share/doc") {
      await rm(abs, { recursive: true, force: true });
      continue;
    }
    for (const pkg of await readdir(abs).catch(() => [] as string[])) {
      for (const f of await readdir(join(abs, pkg)).catch(() => [] as string[]))
        if (f !== "copyright") await rm(join(abs, pkg, f), { recursive: true, force: true });
    }
  }
}

async function linkApplets(root: string, applets: readonly string[]): Promise<void> {
  for (const a of applets) {
    const taken = await Promise.all(
      ["usr/bin", "usr/sbin"].map((d) =>
        lstat(join(root, d, a)).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (!taken.includes(true)) await symlink("busybox", join(root, "usr", "bin", a));
  }
}

async function finishTree(root: string, r: Recipe): Promise<void> {
  for (const [d, mode] of [
    ["proc", 0o555],
    ["sys", 0o555],
    ["dev", 0o755],
    ["run", 0o755],
    ["tmp", 0o1777],
    ["var/tmp", 0o1777],
    ["var/log", 0o755],
    ["root", 0o700],
    ["mnt", 0o755],
  ] as const) {
    await mkdir(join(root, d), { recursive: true });
    await chmod(join(root, d), mode);
  }
  const sh = join(root, "usr", "bin", "sh");
  if (!(await lstat(sh).catch(() => undefined))) await symlink("dash", sh);
  const init = join(root, "usr", "sbin", "init");
  await rm(init, { force: true });
  await symlink("/bin/busybox", init);
  await writeFile(join(root, "etc", "hostname"), `gnomon-${r.name}\n`);
}

async function installModules(
  recipe: string,
  root: string,
  kernel: KernelParts,
  wanted: readonly string[],
): Promise<{ missing: string[] }> {
  const { order, missing } = loadOrder(wanted, kernel.index, kernel.builtin);
  const dest = join(root, "usr", "lib", "modules", kernel.version);
  for (const m of order) {
    await mkdir(dirname(join(dest, m.path)), { recursive: true });
    await copyFile(join(kernel.modulesDir, m.path), join(dest, m.path));
  }
  await mkdir(dest, { recursive: true });
  await writeFile(join(dest, "modules.dep"), modulesDep(order, kernel.index, kernel.builtin));
  for (const f of ["modules.builtin", "modules.order"]) {
    await copyFile(join(kernel.modulesDir, f), join(dest, f)).catch(() => undefined);
  }
  if (order.length === 0 && wanted.length > 0) throw new RecipeError(recipe, "none of modules.extra exist");
  return { missing };
}

async function initrdImage(
  recipe: string,
  recipeDir: string,
  kernel: KernelParts,
  boot: readonly string[],
): Promise<Buffer> {
  const { order, missing } = loadOrder(boot, kernel.index, kernel.builtin);
  if (missing.length) throw new RecipeError(recipe, `boot modules not in the kernel package: ${missing.join(", ")}`);
  const busybox = await readFile(kernel.busybox).catch(() => undefined);
  if (!busybox) throw new RecipeError(recipe, "the initrd needs busybox-static among the packages");
  const entries: CpioEntry[] = [
    ...["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"].map((path) => ({ kind: "dir" as const, path })),
    { kind: "chardev", path: "dev/console", major: 5, minor: 1 },
    { kind: "chardev", path: "dev/null", major: 1, minor: 3, mode: 0o666 },
    { kind: "file", path: "init", data: await readFile(join(recipeDir, "initrd-init")), mode: 0o755 },
    { kind: "file", path: "bin/busybox", data: busybox, mode: 0o755 },
    { kind: "symlink", path: "bin/sh", target: "busybox" },
  ];
  for (const m of order) {
    entries.push({
      kind: "file",
      path: `lib/modules/${moduleName(m.path)}.ko`,
      data: await readFile(join(kernel.modulesDir, m.path)),
    });
  }
  const loadList = order.map((m) => `${moduleName(m.path)}.ko\n`).join("");
  entries.push({ kind: "file", path: "lib/modules/load.order", data: Buffer.from(loadList) });
  // gzip -1: measured to boot faster under TCG than no compression or zstd.
  return gzipSync(cpioArchive(entries), { level: 1 });
}

async function isCurrent(builds: string, dir: string): Promise<boolean> {
  return (await readlink(join(builds, CURRENT_LINK)).catch(() => undefined)) === relative(builds, dir);
}

/** Points <recipe>/current at a build, atomically (a new link renamed over the old one). */
async function pointCurrentAt(builds: string, dir: string): Promise<void> {
  if (await isCurrent(builds, dir)) return;
  const link = join(builds, CURRENT_LINK);
  const target = relative(builds, dir);
  const tmp = `${link}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  await symlink(target, tmp);
  await rename(tmp, link);
}

async function removeOtherBuilds(recipeDir: string, keep: string): Promise<void> {
  for (const e of await readdir(recipeDir)) {
    const p = join(recipeDir, e);
    if (p === keep || e === CURRENT_LINK || e.startsWith(".")) continue;
    // A VM still running on an old base keeps its open file; new VMs use the new build.
    await rm(p, { recursive: true, force: true });
  }
}

/** An exclusive lock file holding our pid; a lock whose pid is gone is taken over. */
async function takeLock(path: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  for (;;) {
    signal?.throwIfAborted();
    try {
      const fh = await open(path, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number(await readFile(path, "utf8").catch(() => ""));
    if (!holder || !isAlive(holder)) {
      await rm(path, { force: true });
      continue;
    }
    await sleep(500, undefined, { signal });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
