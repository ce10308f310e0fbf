// An image recipe: its zod schema, loading recipe.yaml, and the hash of everything in the recipe's
// folder that decides the built image (a changed file means a rebuild). Pure apart from reading files.
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { RecipeError } from "./errors.js";

const Name = z.string().regex(/^[a-z0-9][a-z0-9.+-]*$/, "must be a Debian package name");

export const Recipe = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
    description: z.string().default(""),
    /**
     * How the root file system is made. unpack: gnomon unpacks the packages' files itself (no
     * maintainer scripts, no root); mmdebstrap: Debian's mmdebstrap installs them as dpkg does
     * (maintainer scripts, services enabled), as root, then the recipe's customize script runs.
     */
    builder: z.enum(["unpack", "mmdebstrap"]).default("unpack"),
    /** mmdebstrap: the Debian suite and the apt source lines (the image keeps them). */
    suite: z
      .string()
      .regex(/^[a-z]+$/)
      .optional(),
    sources: z
      .array(
        z
          .string()
          .regex(
            /^deb (\[[^\]]*\] )?https?:\/\/\S+ \S+ .+$/,
            "must be a one-line apt source: deb URL SUITE COMPONENTS",
          ),
      )
      .default([]),
    /** mmdebstrap: a script of the recipe's folder run in the finished root (chroot) to trim and configure it. */
    customize: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/)
      .optional(),
    /** Every module of the kernel in the guest (udev loads what the machine needs), not only modules.extra. */
    allModules: z.boolean().default(false),
    packages: z.array(Name).min(1),
    exclude: z.array(Name).default([]),
    provides: z.record(z.string(), Name).default({}),
    /** Paths removed after unpacking; below usr/share/doc, copyright files are kept. */
    strip: z.array(z.string().regex(/^[^/]/, "must be relative to the root")).default([]),
    /** busybox applets linked into /usr/bin where no package provides the command. */
    busyboxApplets: z.array(z.string().regex(/^[a-z0-9_.[-]+$/)).default([]),
    kernel: Name,
    modules: z.object({ boot: z.array(z.string()).default([]), extra: z.array(z.string()).default([]) }).strict(),
    kernelCmdline: z.string(),
    diskSizeMiB: z.number().int().min(256),
  })
  .strict()
  .refine((r) => r.builder !== "mmdebstrap" || (r.suite !== undefined && r.sources.length > 0), {
    message: "builder: mmdebstrap needs suite and sources",
  });
export type Recipe = z.infer<typeof Recipe>;

export async function loadRecipe(dir: string): Promise<Recipe> {
  const file = join(dir, "recipe.yaml");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new RecipeError(dir, `cannot read ${file}`, { cause: err });
  }
  const parsed = Recipe.safeParse(parseYaml(text));
  if (!parsed.success)
    throw new RecipeError(
      dir,
      `${file} is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  return parsed.data;
}

/** Every file below `dir` (not directories), depth first. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else out.push(p);
  }
  return out;
}

/**
 * SHA-256 over the builder's format version and every file of the recipe folder (path, executable
 * bit, content), in sorted order. Two hosts with the same gnomon build the same image name.
 */
export async function recipeHash(dir: string, builderVersion: number): Promise<string> {
  const hash = createHash("sha256").update(`gnomon-recipe-builder ${builderVersion}\n`);
  for (const file of (await listFiles(dir)).sort()) {
    const mode = (await stat(file)).mode & 0o111 ? "x" : "-";
    hash.update(`${relative(dir, file)}\0${mode}\0`).update(await readFile(file));
    hash.update("\0");
  }
  return hash.digest("hex");
}
