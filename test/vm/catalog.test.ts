// The image catalog: the shipped file is valid, labels resolve to ImageSpecs with files on this
// host, and every mistake is an error that names the fix.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { catalogStatus, loadCatalog, parseCatalog, pulledImagePath, resolveImage } from "../../src/vm/catalog.js";
import { CatalogError, ImageMissingError, UnknownLabelError } from "../../src/vm/errors.js";

const entry = (extra: string) => `
    os: linux
    arch: x86_64
    boot: bios
    login: { user: runner, shell: /bin/bash }
    cpus: 1
    memoryMiB: 512
    diskGiB: 4
    bootTimeout: 2m
${extra}`;

describe("image catalog", () => {
  it("ships a valid catalog with the test image and the real cloud images", async () => {
    const c = await loadCatalog();
    for (const name of [
      "test",
      "debian-12",
      "debian-12-genericcloud",
      "ubuntu-24.04",
      "omnios-r151054",
      "omnios-r151056",
      "openindiana-hipster",
    ])
      assert.ok(c.images.has(name), `${name} is in the catalog`);
    assert.equal(c.labels.get("ubuntu-latest"), "ubuntu-24.04");
    assert.equal(c.images.get("omnios-r151056")?.os, "illumos");
    for (const [name, e] of c.images) {
      if ("url" in e.source) assert.ok(e.source.checksum ?? e.source.checksumUrl, `${name} has a checksum source`);
    }
    // OmniOS images run JavaScript actions on OmniOS's own Node.js packages; Linux ones get gnomon's.
    assert.deepEqual(c.images.get("omnios-r151056")?.node.node24, {
      path: "/opt/ooce/node-24/bin/node",
      package: "ooce/runtime/node-24",
    });
    assert.deepEqual(c.images.get("debian-12")?.node, {});
  });

  it("takes an image's own Node.js per major, refusing a relative path and an unknown major", () => {
    const ok = parseCatalog(
      `images:\n  a:\n    labels: [a]\n    source: { path: a.raw }\n    node:\n      node20: { path: /usr/bin/node, package: nodejs }${entry("")}`,
      "cat.yaml",
    );
    assert.deepEqual(ok.images.get("a")?.node, { node20: { path: "/usr/bin/node", package: "nodejs" } });
    const bad = `images:\n  a:\n    labels: [a]\n    source: { path: a.raw }\n    node:\n      node20: { path: bin/node }\n      node18: { path: /x }${entry("")}`;
    assert.throws(
      () => parseCatalog(bad, "cat.yaml"),
      (err: unknown) => {
        assert.ok(err instanceof CatalogError);
        assert.match(err.message, /images\.a\.node\.node20\.path: must be an absolute path in the guest/);
        assert.match(err.message, /node18/);
        return true;
      },
    );
  });

  it("refuses a label served by two images, naming both", () => {
    const text = `images:\n  a:\n    labels: [same]\n    source: { path: a.qcow2 }${entry("")}  b:\n    labels: [same]\n    source: { path: b.qcow2 }${entry("")}`;
    assert.throws(
      () => parseCatalog(text, "cat.yaml"),
      (err: unknown) => {
        assert.ok(err instanceof CatalogError);
        assert.match(err.message, /label "same" is served by both a and b/);
        return true;
      },
    );
  });

  it("refuses a URL source without a checksum and an unknown field, with the path of each", () => {
    const text = `images:\n  a:\n    labels: [a]\n    source: { url: "https://example.com/a.qcow2" }\n    colour: blue${entry("")}`;
    assert.throws(
      () => parseCatalog(text, "cat.yaml"),
      (err: unknown) => {
        assert.ok(err instanceof CatalogError);
        assert.match(err.message, /images\.a\.source: needs checksum \(pinned\) or checksumUrl/);
        assert.match(err.message, /colour/);
        return true;
      },
    );
  });

  it("says which labels exist when runs-on names none of them", async () => {
    const c = parseCatalog(
      `images:\n  a:\n    labels: [alpha, beta]\n    source: { path: a.qcow2 }${entry("")}`,
      "cat.yaml",
    );
    await assert.rejects(resolveImage(c, "gamma", "/nowhere"), (err: unknown) => {
      assert.ok(err instanceof UnknownLabelError);
      assert.match(err.message, /runs-on "gamma".*Known labels: alpha, beta/);
      return true;
    });
  });

  it("tells how to get an image that is not on this host", async () => {
    const c = parseCatalog(
      `images:\n  cloud:\n    labels: [cloud]\n    source: { url: "https://example.com/x/cloud.qcow2.zst", checksum: "sha256:${"a".repeat(64)}" }${entry("")}`,
      "cat.yaml",
    );
    await assert.rejects(resolveImage(c, "cloud", "/nowhere"), (err: unknown) => {
      assert.ok(err instanceof ImageMissingError);
      assert.match(err.message, /gnomon images pull cloud/);
      return true;
    });
    const rows = await catalogStatus(c, "/nowhere");
    assert.deepEqual(
      rows.map((r) => [r.name, r.present, r.source]),
      [["cloud", false, "url"]],
    );
    assert.equal(pulledImagePath("/img", "cloud", "https://example.com/x/cloud.qcow2.zst"), "/img/cloud/cloud.qcow2");
    assert.equal(
      pulledImagePath("data/images", "cloud", "https://example.com/cloud.qcow2"),
      join(process.cwd(), "data/images/cloud/cloud.qcow2"),
      "a relative images folder still gives an absolute path",
    );
  });

  it("resolves a local-path image relative to the catalog file into an ImageSpec", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "gnomon-catalog-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, "local.raw"), Buffer.alloc(1024));
    const c = parseCatalog(
      `images:\n  local:\n    labels: [self-hosted]\n    source: { path: local.raw }\n    format: raw\n    network: isolated${entry("")}`,
      join(dir, "catalog.yaml"),
    );
    const spec = await resolveImage(c, "self-hosted", "/unused");
    assert.equal(spec.name, "local");
    assert.equal(spec.label, "self-hosted");
    assert.deepEqual(spec.disk, { path: join(dir, "local.raw"), format: "raw" });
    assert.deepEqual(spec.boot, { method: "bios" });
    assert.equal(spec.bootTimeoutMs, 120_000);
    assert.equal(spec.network, "isolated");
    assert.equal(spec.seedFormat, "vfat");
    const [row] = await catalogStatus(c, "/unused");
    assert.equal(row?.present, true);
    assert.equal(row?.bytes, 1024);
  });
});
