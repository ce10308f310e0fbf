// `gnomon images list | build | pull` through the shipped program (npm run build first).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { PINNED_NODE } from "../../src/vm/node-runtime.js";
import { runGnomon } from "../support/cli.js";
import { TEST_RUNTIMES_DIR, testNodeRuntimes } from "../support/node-runtimes.js";
import { TEST_IMAGES_DIR, testImage } from "../support/test-image.js";

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("gnomon images", () => {
  it("lists every catalog image with its labels, OS, source, presence, size and the Node.js its actions get", async (t) => {
    await testImage();
    const data = await tempDir(t, "gnomon-images-data-");
    const env = { GNOMON_IMAGES_DIR: TEST_IMAGES_DIR, GNOMON_DATA_DIR: data };
    const r = await runGnomon(["images", "list"], { env });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^NAME\s+LABELS\s+OS\s+SOURCE\s+PRESENT\s+SIZE\s+NODE$/);
    const gnomon = `gnomon ${PINNED_NODE[20].version}, ${PINNED_NODE[24].version}`.replace(/\./g, "\\.");
    assert.match(
      r.stdout,
      new RegExp(`^test\\s+test\\s+linux\\s+recipe\\s+yes\\s+\\d+ MiB\\s+${gnomon} \\(at first use\\)$`, "m"),
    );
    assert.match(r.stdout, /^ubuntu-24\.04\s+ubuntu-24\.04, ubuntu-latest\s+linux\s+url\s+no\s+-\s+gnomon /m);
    assert.match(r.stdout, /^omnios-r151056\s+.*illumos\s+url\s+no\s+-\s+image 20, 24$/m);
    assert.match(r.stdout, /^openindiana-hipster\s+.*illumos\s+url\s+no\s+-\s+-$/m);
    // Once this host has gnomon's runtimes, they are no longer "at first use".
    await symlink(TEST_RUNTIMES_DIR, join(data, "runtimes"));
    await Promise.all([testNodeRuntimes().prepare("linux-x64", 20), testNodeRuntimes().prepare("linux-x64", 24)]);
    const json = await runGnomon(["images", "list", "--json"], { env });
    const rows = JSON.parse(json.stdout) as { name: string; present: boolean; node: unknown[] }[];
    assert.equal(rows.find((x) => x.name === "test")?.present, true);
    assert.deepEqual(rows.find((x) => x.name === "test")?.node, [
      { major: 20, from: "gnomon", version: PINNED_NODE[20].version, present: true },
      { major: 24, from: "gnomon", version: PINNED_NODE[24].version, present: true },
    ]);
    assert.deepEqual(rows.find((x) => x.name === "omnios-r151054")?.node, [
      { major: 20, from: "image", path: "/opt/ooce/node-20/bin/node", package: "ooce/runtime/node-20" },
      { major: 24, from: "image", path: "/opt/ooce/node-24/bin/node", package: "ooce/runtime/node-24" },
    ]);
  });

  it("obtains gnomon's Node.js runtimes ahead of time, and says what to configure when it cannot", async (t) => {
    const data = await tempDir(t, "gnomon-images-node-");
    await symlink(TEST_RUNTIMES_DIR, join(data, "runtimes"));
    await Promise.all([testNodeRuntimes().prepare("linux-x64", 20), testNodeRuntimes().prepare("linux-x64", 24)]);
    const r = await runGnomon(["images", "node"], { env: { GNOMON_DATA_DIR: data } });
    assert.equal(r.code, 0, r.stderr);
    for (const major of [20, 24] as const)
      assert.match(
        r.stdout,
        new RegExp(
          `^Node\\.js ${PINNED_NODE[major].version.replace(/\./g, "\\.")} for linux-x64: already here, verified sha512-`,
          "m",
        ),
      );
    const offline = await tempDir(t, "gnomon-images-node-offline-");
    const off = await runGnomon(["images", "node"], {
      env: { GNOMON_DATA_DIR: offline, GNOMON_NODE_REGISTRY: "http://127.0.0.1:9" },
    });
    assert.equal(off.code, 1);
    assert.match(
      off.stderr,
      /gnomon could not obtain Node\.js 20 for linux-x64: .*point runtimes\.node\.registry at a mirror/,
    );
  });

  it("reuses a built recipe image until its recipe changes", async () => {
    await testImage();
    const r = await runGnomon(["images", "build", "test"], { env: { GNOMON_IMAGES_DIR: TEST_IMAGES_DIR } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^test is up to date \(built .*\): disk \d+ MiB \(qcow2 of \d+ MiB of files\), kernel/m);
  });

  it("sends URL images to pull and recipe images to build, and exits 2 for a name to change", async () => {
    const build = await runGnomon(["images", "build", "ubuntu-24.04"]);
    assert.equal(build.code, 2);
    assert.match(build.stderr, /not built from a recipe; download it with `gnomon images pull ubuntu-24.04`/);
    const pull = await runGnomon(["images", "pull", "test"], { env: { GNOMON_IMAGES_DIR: TEST_IMAGES_DIR } });
    assert.equal(pull.code, 2);
    assert.match(pull.stderr, /use `gnomon images build test`/);
    const unknown = await runGnomon(["images", "pull", "no-such-os"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /No image in the catalog serves runs-on "no-such-os"\. Known labels: /);
  });

  it("pulls an image from the catalog with progress and a verified checksum", async (t) => {
    const body = randomBytes(3 * 1024 * 1024);
    const srv = createServer((_req, res) => {
      res.writeHead(200, { "content-length": body.length }).end(body);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    t.after(() => new Promise<void>((r) => srv.close(() => r())));
    const port = (srv.address() as AddressInfo).port;
    const dir = await tempDir(t, "gnomon-images-cli-");
    const catalog = join(dir, "catalog.yaml");
    await writeFile(
      catalog,
      `images:
  local-cloud:
    labels: [local-cloud]
    os: linux
    arch: x86_64
    source: { url: "http://127.0.0.1:${port}/local-cloud.qcow2", checksum: "sha256:${createHash("sha256").update(body).digest("hex")}" }
    boot: bios
    login: { user: runner, shell: /bin/bash }
    cpus: 1
    memoryMiB: 512
    diskGiB: 4
    bootTimeout: 1m
`,
    );
    const env = { GNOMON_IMAGES_CATALOG: catalog, GNOMON_IMAGES_DIR: join(dir, "images") };
    const r = await runGnomon(["images", "pull", "local-cloud"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^downloading 100% 3\.0 MiB \/ 3\.0 MiB/m, "progress lines when stderr is not a terminal");
    assert.match(r.stdout, /^pulled local-cloud: 3\.0 MiB; sha256 matches the catalog's pinned checksum$/m);
    assert.deepEqual(await readFile(join(dir, "images", "local-cloud", "local-cloud.qcow2")), body);
    const list = await runGnomon(["images", "list"], { env });
    assert.match(list.stdout, /^local-cloud\s+local-cloud\s+linux\s+url\s+yes\s+3\.0 MiB\s+gnomon /m);
  });
});
