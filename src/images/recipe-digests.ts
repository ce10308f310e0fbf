// The digest of each recipe the catalog builds from, as gnomon ships it now: computed once where a
// process loads its catalog (gnomon up, orchestrator, exec, images list), so that resolving a label
// on the job path compares two strings instead of reading and hashing a recipe folder.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Catalog } from "../vm/catalog.js";
import { BUILDER_VERSION, recipesDir } from "./build-recipe.js";
import { recipeHash } from "./recipe.js";

/**
 * The catalog with recipeDigests for every recipe image whose recipe is in `fromDir` (one that is
 * not gets no digest: its build, if any, is used as it is, and `gnomon images build` says why it
 * cannot build it).
 */
export async function withRecipeDigests(catalog: Catalog, fromDir: string = recipesDir()): Promise<Catalog> {
  const digests = new Map<string, string>();
  for (const entry of catalog.images.values()) {
    if (!("recipe" in entry.source) || digests.has(entry.source.recipe)) continue;
    const dir = join(fromDir, entry.source.recipe);
    if (existsSync(dir)) digests.set(entry.source.recipe, await recipeHash(dir, BUILDER_VERSION));
  }
  return { ...catalog, recipeDigests: digests };
}
