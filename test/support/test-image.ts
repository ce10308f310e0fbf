// The offline test guest for the test suite: built once from images/recipes/test into a cache that
// survives test runs (rebuilt only when the recipe changes), resolved through the shipped catalog,
// and booted per test file with guaranteed teardown. KVM is used when it works, TCG otherwise.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { buildRecipe } from "../../src/images/build-recipe.js";
import { type ImageSpec, loadCatalog, resolveImage } from "../../src/vm/catalog.js";
import { bootMachine, type Machine, type MachineOptions } from "../../src/vm/machine.js";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Where tests keep built images: GNOMON_TEST_IMAGES_DIR or .cache/images in the checkout. */
export const TEST_IMAGES_DIR = process.env["GNOMON_TEST_IMAGES_DIR"] ?? join(ROOT, ".cache", "images");
/** Where test VMs keep their overlay and seed while they run. */
export const TEST_RUN_DIR = join(ROOT, ".cache", "test-vms");

const built = new Map<string, Promise<ImageSpec>>();

/**
 * A recipe image of the shipped catalog in the test images folder, built first if this recipe has
 * not been built yet (the test image; debian-12 for the tests that need a real cloud guest).
 */
export function recipeImage(name: string): Promise<ImageSpec> {
  let image = built.get(name);
  if (!image) {
    image = (async () => {
      const started = Date.now();
      const { built: didBuild } = await buildRecipe(name, {
        imagesDir: TEST_IMAGES_DIR,
        onProgress: (p) =>
          process.stderr.write(`# ${name} image [${p.step}/${p.steps}] ${p.title}${p.detail ? `: ${p.detail}` : ""}\n`),
      });
      if (didBuild) process.stderr.write(`# ${name} image built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      await mkdir(TEST_RUN_DIR, { recursive: true });
      return resolveImage(await loadCatalog(), name, TEST_IMAGES_DIR);
    })();
    built.set(name, image);
  }
  return image;
}

/** The test image's ImageSpec, building the image first if this recipe has not been built yet. */
export function testImage(): Promise<ImageSpec> {
  return recipeImage("test");
}

/** The test image with extra kernel arguments (the guest's rcS knows gnomon.net/keys/ssh=off). */
export function withKernelArgs(image: ImageSpec, ...args: string[]): ImageSpec {
  if (image.boot.method !== "direct") throw new Error("the test image boots its kernel directly");
  return { ...image, boot: { ...image.boot, cmdline: [image.boot.cmdline, ...args].join(" ") } };
}

/** Boots a test VM that is destroyed when the test (or the suite hook given as `t`) ends. */
export async function bootTestVm(
  t: { after(fn: () => Promise<void>): unknown },
  image?: ImageSpec,
  opts: Partial<MachineOptions> = {},
): Promise<Machine> {
  const vm = await bootMachine(image ?? (await testImage()), { runDir: TEST_RUN_DIR, ...opts });
  t.after(() => vm.destroy());
  return vm;
}
