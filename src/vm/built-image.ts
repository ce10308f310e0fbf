// A recipe image as `gnomon images build` leaves it: <imagesDir>/<recipe>/<digest prefix>/ holds the
// disk, the kernel and initrd when it boots directly, and manifest.json, which says what they are;
// <imagesDir>/<recipe>/current points at the build in use. This is all the VM layer knows of
// recipes: a job's label resolves by reading this manifest, never by reading or hashing a recipe.
import { readFile, realpath } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

/** The manifest's format; a build whose manifest is of another version counts as not built. */
export const BUILT_IMAGE_VERSION = 1;

const FileName = z.string().regex(/^[A-Za-z0-9._-]+$/, "must be a file name in the build's folder");

export const BuiltImageManifest = z.object({
  v: z.literal(BUILT_IMAGE_VERSION),
  recipe: z.string(),
  /** SHA-256 of the recipe's folder and the builder's version: which recipe this was built from. */
  recipeDigest: z.string().regex(/^[0-9a-f]{64}$/),
  builderVersion: z.number().int(),
  builtAt: z.string(),
  buildMs: z.number(),
  arch: z.literal("x86_64"),
  /** Files of the build, relative to its folder; kernel and initrd for direct boot. */
  files: z.object({ disk: FileName, kernel: FileName.optional(), initrd: FileName.optional() }).strict(),
  /** The kernel command line for direct boot (the catalog's kernelCmdline overrides it). */
  kernelCmdline: z.string().optional(),
  kernelVersion: z.string(),
  /** SHA-256 of the disk file: two builds of the same packages compare by it. */
  diskSha256: z.string().regex(/^[0-9a-f]{64}$/),
  packages: z.array(z.string()),
  bytes: z.object({ disk: z.number(), kernel: z.number(), initrd: z.number(), rootFiles: z.number() }),
  warnings: z.array(z.string()),
});
export type BuiltImageManifest = z.infer<typeof BuiltImageManifest>;

export interface BuiltImage {
  /** The build's folder. */
  readonly dir: string;
  readonly disk: string;
  readonly kernel?: string;
  readonly initrd?: string;
  readonly manifest: BuiltImageManifest;
}

export const MANIFEST_FILE = "manifest.json";
/** The symlink in <imagesDir>/<recipe>/ naming the build in use. */
export const CURRENT_LINK = "current";

/** Where the builds of one recipe live. */
export function recipeBuildsDir(imagesDir: string, recipe: string): string {
  return join(imagesDir, recipe);
}

/** The build in a folder, or undefined when it has no readable manifest of this format. */
export async function readBuiltImage(dir: string): Promise<BuiltImage | undefined> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(join(dir, MANIFEST_FILE), "utf8"));
  } catch {
    return undefined;
  }
  const parsed = BuiltImageManifest.safeParse(raw);
  if (!parsed.success) return undefined;
  const m = parsed.data;
  return {
    dir,
    disk: join(dir, m.files.disk),
    kernel: m.files.kernel && join(dir, m.files.kernel),
    initrd: m.files.initrd && join(dir, m.files.initrd),
    manifest: m,
  };
}

/**
 * The build of `recipe` in use on this host, if any: the folder `current` points at, by its real
 * path, so that a VM's overlay names a base that a later build does not swap under it.
 */
export async function currentBuild(imagesDir: string, recipe: string): Promise<BuiltImage | undefined> {
  const dir = await realpath(join(recipeBuildsDir(imagesDir, recipe), CURRENT_LINK)).catch(() => undefined);
  return dir === undefined ? undefined : readBuiltImage(dir);
}
