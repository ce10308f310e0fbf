// A recipe image on the job path is what its build's manifest says: the label resolves without the
// recipe folder, and a build of another recipe than the one the CLI hashed is stale, with the fix.
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { BUILDER_VERSION, recipesDir } from "../../src/images/build-recipe.js";
import { recipeHash } from "../../src/images/recipe.js";
import { withRecipeDigests } from "../../src/images/recipe-digests.js";
import { BUILT_IMAGE_VERSION, type BuiltImageManifest } from "../../src/vm/built-image.js";
import { catalogStatus, parseCatalog, resolveImage } from "../../src/vm/catalog.js";
import { ImageMissingError, StaleImageError } from "../../src/vm/errors.js";

const CATALOG = `images:
  box:
    labels: [box]
    os: linux
    arch: x86_64
    source: { recipe: box }
    boot: direct
    login: { user: runner, shell: /bin/bash }
    cpus: 1
    memoryMiB: 512
    diskGiB: 4
    bootTimeout: 2m
`;

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** What `gnomon images build` leaves: a build folder with its manifest, and `current` pointing at it. */
async function fakeBuild(imagesDir: string, recipeDigest: string): Promise<string> {
  const dir = join(imagesDir, "box", recipeDigest.slice(0, 16));
  await mkdir(dir, { recursive: true });
  for (const f of ["disk.qcow2", "vmlinuz", "initrd.img"]) await writeFile(join(dir, f), Buffer.alloc(512));
  const manifest: BuiltImageManifest = {
    v: BUILT_IMAGE_VERSION,
    recipe: "box",
    recipeDigest,
    builderVersion: BUILDER_VERSION,
    builtAt: new Date().toISOString(),
    buildMs: 1,
    arch: "x86_64",
    files: { disk: "disk.qcow2", kernel: "vmlinuz", initrd: "initrd.img" },
    kernelCmdline: "console=ttyS0 root=/dev/vda",
    kernelVersion: "6.1.0-test",
    diskSha256: "0".repeat(64),
    packages: [],
    bytes: { disk: 512, kernel: 512, initrd: 512, rootFiles: 0 },
    warnings: [],
  };
  await writeFile(join(dir, "manifest.json"), JSON.stringify(manifest));
  await symlink(recipeDigest.slice(0, 16), join(imagesDir, "box", "current"));
  return dir;
}

describe("recipe images on the job path", () => {
  it("resolve from their build's manifest, with no recipe folder on the host", async (t) => {
    const images = await tempDir(t, "gnomon-built-");
    const catalog = parseCatalog(CATALOG, "cat.yaml");
    await assert.rejects(resolveImage(catalog, "box", images), (err: unknown) => {
      assert.ok(err instanceof ImageMissingError && !(err instanceof StaleImageError));
      assert.match(err.message, /build it with `gnomon images build box`/);
      return true;
    });
    const dir = await fakeBuild(images, "a".repeat(64));
    const spec = await resolveImage(catalog, "box", images);
    assert.deepEqual(spec.disk, { path: join(dir, "disk.qcow2"), format: "qcow2" });
    assert.deepEqual(spec.boot, {
      method: "direct",
      kernel: join(dir, "vmlinuz"),
      initrd: join(dir, "initrd.img"),
      cmdline: "console=ttyS0 root=/dev/vda",
    });
  });

  it("are stale once the recipe changes: the label fails saying to rebuild, and images list says stale", async (t) => {
    const recipes = await tempDir(t, "gnomon-recipes-");
    await cp(join(recipesDir(), "test"), join(recipes, "box"), { recursive: true });
    const images = await tempDir(t, "gnomon-built-");
    await fakeBuild(images, await recipeHash(join(recipes, "box"), BUILDER_VERSION));
    const before = await withRecipeDigests(parseCatalog(CATALOG, "cat.yaml"), recipes);
    assert.equal((await resolveImage(before, "box", images)).name, "box", "the build is of the recipe as it is");

    await writeFile(join(recipes, "box", "rootfs", "etc", "motd"), "changed\n");
    const after = await withRecipeDigests(parseCatalog(CATALOG, "cat.yaml"), recipes);
    await assert.rejects(resolveImage(after, "box", images), (err: unknown) => {
      assert.ok(err instanceof StaleImageError);
      assert.equal(err.code, "vm.image-stale");
      assert.match(err.message, /was built from another recipe .*; rebuild it with `gnomon images build box`\.$/);
      return true;
    });
    const [row] = await catalogStatus(after, images);
    assert.equal(row?.present, false);
    assert.equal(row?.stale, true);
  });
});
