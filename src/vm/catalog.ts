// The image catalog (images/catalog.yaml or the file in config images.catalog): its zod schema,
// loading it, and resolving a runs-on label to an ImageSpec with the files on this host. Resolution
// reads the file system but never downloads, builds or reads a recipe: a recipe image is what its
// build's manifest says (built-image.ts). A missing image is an ImageMissingError that says which
// command fetches it; a recipe image built from another recipe than the one the catalog was given
// (recipeDigests, computed once by the CLI, src/images/recipe-digests.ts) a StaleImageError.
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { currentBuild, recipeBuildsDir } from "./built-image.js";
import { CatalogError, ImageMissingError, StaleImageError, UnknownLabelError } from "./errors.js";
import type { SeedFormat } from "./seed.js";
import { shippedImagesDir } from "./shipped-images.js";

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const Duration = z
  .string()
  .regex(/^\d+(ms|s|m|h)$/, 'must be a number with ms, s, m or h, e.g. "90s"')
  .transform((s) => {
    const m = /^(\d+)(ms|s|m|h)$/.exec(s)!;
    return Number(m[1]) * UNIT_MS[m[2]!]!;
  });

const Checksum = z
  .string()
  .regex(/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/, "must be sha256:<64 hex> or sha512:<128 hex>");

const UrlSource = z
  .object({
    url: z.string().url(),
    checksum: Checksum.optional(),
    /** A vendor checksum file (sha256sum format or a bare hash) used when no checksum is pinned. */
    checksumUrl: z.string().url().optional(),
  })
  .strict()
  .refine((s) => s.checksum !== undefined || s.checksumUrl !== undefined, {
    message: "needs checksum (pinned) or checksumUrl (the vendor's checksum file)",
  });

const Source = z.union([
  z.object({ recipe: z.string().regex(/^[a-z0-9][a-z0-9-]*$/) }).strict(),
  z.object({ path: z.string().min(1) }).strict(),
  UrlSource,
]);

/** An image's own Node.js for one major: where it is in the guest, and the package that installs it. */
const ImageNode = z
  .object({
    path: z.string().startsWith("/", "must be an absolute path in the guest, e.g. /opt/ooce/node-20/bin/node"),
    package: z.string().min(1).optional(),
  })
  .strict();

const Label = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "must be a runs-on label (letters, digits, . _ : -)");

export const ImageEntry = z
  .object({
    description: z.string().default(""),
    labels: z.array(Label).min(1),
    os: z.enum(["linux", "illumos", "freebsd", "openbsd", "netbsd"]),
    // Only x86_64 guests boot today (qemu-system-x86_64); aarch64 needs qemu-system-aarch64 and UEFI.
    arch: z.literal("x86_64"),
    source: Source,
    format: z.enum(["qcow2", "raw", "vmdk"]).default("qcow2"),
    boot: z.enum(["bios", "uefi", "direct"]),
    /** direct boot: the kernel command line; default: the recipe's. */
    kernelCmdline: z.string().optional(),
    /** uefi boot: OVMF firmware (Debian's ovmf package by default). */
    firmware: z
      .object({ code: z.string(), vars: z.string() })
      .strict()
      .default({ code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd" }),
    cloudInit: z
      .object({
        datasource: z.literal("nocloud").default("nocloud"),
        seed: z.enum(["vfat", "iso9660"]).default("vfat"),
      })
      .strict()
      .default({ datasource: "nocloud", seed: "vfat" }),
    login: z.object({ user: z.string().regex(/^[a-z_][a-z0-9_-]*$/), shell: z.string().startsWith("/") }).strict(),
    cpus: z.number().int().min(1).max(64),
    memoryMiB: z.number().int().min(128),
    diskGiB: z.number().int().min(1),
    bootTimeout: Duration,
    machine: z.enum(["pc", "q35"]).default("pc"),
    /** nat: user-mode networking with outbound access; isolated: only the forwarded SSH port. */
    network: z.enum(["nat", "isolated"]).default("nat"),
    diskBus: z.enum(["virtio", "ide"]).default("virtio"),
    nic: z.enum(["virtio-net-pci", "e1000"]).default("virtio-net-pci"),
    /**
     * The image's own Node.js per major, for JavaScript actions; a major not listed gets gnomon's
     * runtime where gnomon brings one (linux-x64), docs/javascript-actions.md.
     */
    node: z.object({ node20: ImageNode.optional(), node24: ImageNode.optional() }).strict().default({}),
  })
  .strict();
export type ImageEntry = z.output<typeof ImageEntry>;

const CatalogFile = z
  .object({
    images: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, "must be a lowercase image name"), ImageEntry),
  })
  .strict();

export interface Catalog {
  readonly path: string;
  readonly images: ReadonlyMap<string, ImageEntry>;
  /** runs-on label → image name. */
  readonly labels: ReadonlyMap<string, string>;
  /**
   * Recipe name → the digest of the recipe gnomon ships now. Where given, a build of another
   * digest is stale; where absent, the current build is used as it is.
   */
  readonly recipeDigests?: ReadonlyMap<string, string>;
}

export type OsFamily = ImageEntry["os"];

export type BootSpec =
  | { readonly method: "bios" }
  | { readonly method: "uefi"; readonly code: string; readonly vars: string }
  | { readonly method: "direct"; readonly kernel: string; readonly initrd: string; readonly cmdline: string };

/** Everything needed to boot one image on this host; what bootMachine takes. */
export interface ImageSpec {
  readonly name: string;
  /** The runs-on label it was resolved for (the name when asked by name). */
  readonly label: string;
  readonly os: OsFamily;
  readonly arch: "x86_64";
  readonly disk: { readonly path: string; readonly format: "qcow2" | "raw" | "vmdk" };
  readonly boot: BootSpec;
  readonly seedFormat: SeedFormat;
  readonly login: { readonly user: string; readonly shell: string };
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
  readonly bootTimeoutMs: number;
  readonly machine: "pc" | "q35";
  readonly network: "nat" | "isolated";
  readonly diskBus: "virtio" | "ide";
  readonly nic: "virtio-net-pci" | "e1000";
  /** The image's own Node.js per major (absent: gnomon's runtime, where it brings one). */
  readonly node?: { readonly node20?: ImageNodeSpec; readonly node24?: ImageNodeSpec };
}

export type ImageNodeSpec = z.output<typeof ImageNode>;

export function defaultCatalogPath(): string {
  return join(shippedImagesDir(), "catalog.yaml");
}

/** Parses catalog text; `path` is only for messages and relative `source.path`s. */
export function parseCatalog(text: string, path: string): Catalog {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new CatalogError(path, [`not valid YAML: ${(err as Error).message.split("\n")[0]}`]);
  }
  const parsed = CatalogFile.safeParse(raw);
  if (!parsed.success)
    throw new CatalogError(
      path,
      parsed.error.issues.map((i) => `${i.path.join(".") || "(top level)"}: ${i.message}`),
    );
  const images = new Map(Object.entries(parsed.data.images));
  const labels = new Map<string, string>();
  const problems: string[] = [];
  for (const [name, entry] of images) {
    for (const label of entry.labels) {
      const other = labels.get(label);
      if (other !== undefined) problems.push(`label "${label}" is served by both ${other} and ${name}`);
      labels.set(label, name);
    }
    if (entry.boot === "direct" && !("recipe" in entry.source) && entry.kernelCmdline === undefined)
      problems.push(`images.${name}: boot: direct needs a recipe source or kernelCmdline`);
  }
  if (problems.length) throw new CatalogError(path, problems);
  return { path, images, labels };
}

export async function loadCatalog(path: string = defaultCatalogPath()): Promise<Catalog> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new CatalogError(path, [`cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
  return parseCatalog(text, path);
}

/** The image name a label (or an image name) refers to. */
export function imageNameFor(catalog: Catalog, labelOrName: string): string {
  const name = catalog.labels.get(labelOrName) ?? (catalog.images.has(labelOrName) ? labelOrName : undefined);
  if (name === undefined) throw new UnknownLabelError(labelOrName, [...catalog.labels.keys()].sort(), catalog.path);
  return name;
}

/** Where `gnomon images pull` stores a URL image: <imagesDir>/<name>/<file name without compression suffix>. */
export function pulledImagePath(imagesDir: string, name: string, url: string): string {
  const file = basename(new URL(url).pathname).replace(/\.(zst|zstd|xz|gz)$/, "");
  return resolve(imagesDir, name, file);
}

export interface ImageFiles {
  readonly disk: string;
  readonly kernel?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
}

/** The files of an image on this host, or an ImageMissingError that names the command to run. */
export async function imageFiles(catalog: Catalog, name: string, imagesDir: string): Promise<ImageFiles> {
  const entry = catalog.images.get(name);
  if (!entry) throw new UnknownLabelError(name, [...catalog.labels.keys()].sort(), catalog.path);
  const src = entry.source;
  if ("recipe" in src) {
    const built = await currentBuild(resolve(imagesDir), src.recipe);
    if (!built)
      throw new ImageMissingError(
        name,
        recipeBuildsDir(resolve(imagesDir), src.recipe),
        `build it with \`gnomon images build ${name}\``,
      );
    const want = catalog.recipeDigests?.get(src.recipe);
    if (want !== undefined && want !== built.manifest.recipeDigest)
      throw new StaleImageError(name, built.dir, built.manifest.recipeDigest, want);
    return {
      disk: built.disk,
      kernel: built.kernel,
      initrd: built.initrd,
      cmdline: entry.kernelCmdline ?? built.manifest.kernelCmdline,
    };
  }
  if ("path" in src) {
    const disk = isAbsolute(src.path) ? src.path : resolve(dirname(catalog.path), src.path);
    if (!existsSync(disk)) throw new ImageMissingError(name, disk, "put the disk image there or fix source.path");
    return { disk, cmdline: entry.kernelCmdline };
  }
  const disk = pulledImagePath(imagesDir, name, src.url);
  if (!existsSync(disk) || !existsSync(`${disk}.verified`))
    throw new ImageMissingError(name, disk, `download it with \`gnomon images pull ${name}\``);
  return { disk, cmdline: entry.kernelCmdline };
}

/** Resolves a runs-on label (or image name) to a bootable ImageSpec. */
export async function resolveImage(catalog: Catalog, labelOrName: string, imagesDir: string): Promise<ImageSpec> {
  const name = imageNameFor(catalog, labelOrName);
  const entry = catalog.images.get(name)!;
  const files = await imageFiles(catalog, name, imagesDir);
  let boot: BootSpec;
  if (entry.boot === "direct") {
    if (!files.kernel || !files.initrd)
      throw new CatalogError(catalog.path, [
        `images.${name}: boot: direct needs a kernel and initrd (a recipe source)`,
      ]);
    boot = { method: "direct", kernel: files.kernel, initrd: files.initrd, cmdline: files.cmdline ?? "" };
  } else if (entry.boot === "uefi") {
    boot = { method: "uefi", code: entry.firmware.code, vars: entry.firmware.vars };
  } else boot = { method: "bios" };
  return {
    name,
    label: labelOrName,
    os: entry.os,
    arch: entry.arch,
    disk: { path: files.disk, format: "recipe" in entry.source ? "qcow2" : entry.format },
    boot,
    seedFormat: entry.cloudInit.seed,
    login: entry.login,
    cpus: entry.cpus,
    memoryMiB: entry.memoryMiB,
    diskGiB: entry.diskGiB,
    bootTimeoutMs: entry.bootTimeout,
    machine: entry.machine,
    network: entry.network,
    diskBus: entry.diskBus,
    nic: entry.nic,
    node: entry.node,
  };
}

export interface ImageStatus {
  readonly name: string;
  readonly labels: readonly string[];
  readonly os: OsFamily;
  readonly source: "recipe" | "path" | "url";
  readonly present: boolean;
  /** A recipe image whose build is of another recipe than the catalog's (present is false). */
  readonly stale?: true;
  /** Bytes on disk of the image's files, when present. */
  readonly bytes?: number;
  readonly path?: string;
}

/** For `gnomon images list`: every catalog image and whether it is on this host. */
export async function catalogStatus(catalog: Catalog, imagesDir: string): Promise<ImageStatus[]> {
  const out: ImageStatus[] = [];
  for (const [name, entry] of catalog.images) {
    const source = "recipe" in entry.source ? "recipe" : "path" in entry.source ? "path" : "url";
    try {
      const files = await imageFiles(catalog, name, imagesDir);
      let bytes = 0;
      for (const f of [files.disk, files.kernel, files.initrd]) if (f) bytes += (await stat(f)).size;
      out.push({ name, labels: entry.labels, os: entry.os, source, present: true, bytes, path: files.disk });
    } catch (err) {
      if (!(err instanceof ImageMissingError)) throw err;
      const stale = err instanceof StaleImageError ? { stale: true as const } : {};
      out.push({ name, labels: entry.labels, os: entry.os, source, present: false, ...stale, path: err.path });
    }
  }
  return out;
}
