// Where the images/ folder shipped with gnomon is (catalog.yaml and recipes/): found by walking up
// from this module, so it works from src/ under tsx and from the bundle in dist/. Reads nothing else.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let found: string | undefined;

export function shippedImagesDir(): string {
  if (found) return found;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "images", "catalog.yaml"))) {
      found = join(dir, "images");
      return found;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("gnomon's images/ folder is missing from its installation; reinstall gnomon");
    dir = up;
  }
}
