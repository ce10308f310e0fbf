// The pure parts of the recipe builder: Debian dependency fields, kernel module ordering, and the
// initramfs cpio writer (checked by unpacking it with busybox cpio).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { cpioArchive } from "../../src/images/cpio.js";
import { parseDepends, parseStanzas, pickAlternative } from "../../src/images/debian-control.js";
import {
  loadOrder,
  type ModuleInfo,
  moduleName,
  modulesDep,
  parseModuleDepends,
} from "../../src/images/kernel-modules.js";

describe("Debian control data", () => {
  it("parses stanzas with folded fields", () => {
    const [a, b] = parseStanzas("Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nDepends: c\n");
    assert.equal(a?.["Package"], "a");
    assert.equal(a?.["Description"], "x\nmore");
    assert.equal(b?.["Depends"], "c");
  });

  it("reads dependency groups without versions, architectures or profiles", () => {
    assert.deepEqual(
      parseDepends("libc6 (>= 2.34), awk | mawk:any, debconf (>= 0.5) | debconf-2.0, foo [amd64] <!nocheck>"),
      [["libc6"], ["awk", "mawk"], ["debconf", "debconf-2.0"], ["foo"]],
    );
    assert.deepEqual(parseDepends(undefined), []);
  });

  it("takes the first allowed alternative, maps virtual names, and drops all-excluded groups", () => {
    const rules = { exclude: new Set(["debconf", "perl"]), provides: { awk: "mawk", "debconf-2.0": "debconf" } };
    assert.equal(pickAlternative(["awk"], new Set(), rules), "mawk");
    assert.equal(pickAlternative(["debconf", "debconf-2.0"], new Set(), rules), undefined);
    assert.equal(pickAlternative(["perl", "perl-base"], new Set(), rules), "perl-base");
    assert.equal(pickAlternative(["gawk", "awk"], new Set(["mawk"]), rules), undefined, "already satisfied");
  });
});

describe("kernel modules", () => {
  const ko = (depends: string) => Buffer.from(`\x7fELF junk\0license=GPL\0depends=${depends}\0name=x\0`, "latin1");
  const index = new Map<string, ModuleInfo>([
    ["virtio_ring", { path: "kernel/drivers/virtio/virtio_ring.ko", depends: [] }],
    ["virtio", { path: "kernel/drivers/virtio/virtio.ko", depends: ["virtio_ring"] }],
    ["virtio_blk", { path: "kernel/drivers/block/virtio_blk.ko", depends: ["virtio", "virtio_ring"] }],
    ["nls_iso8859_1", { path: "kernel/fs/nls/nls_iso8859-1.ko", depends: [] }],
  ]);

  it("reads depends= from a module's modinfo strings", () => {
    assert.deepEqual(parseModuleDepends(ko("virtio,virtio_ring")), ["virtio", "virtio_ring"]);
    assert.deepEqual(parseModuleDepends(ko("")), []);
    assert.equal(moduleName("kernel/fs/nls/nls_iso8859-1.ko"), "nls_iso8859_1");
  });

  it("orders modules after their dependencies, skipping built-ins and reporting unknown ones", () => {
    const { order, missing } = loadOrder(["virtio_blk", "nls_iso8859-1", "ext4", "nope"], index, new Set(["ext4"]));
    assert.deepEqual(
      order.map((m) => moduleName(m.path)),
      ["virtio_ring", "virtio", "virtio_blk", "nls_iso8859_1"],
    );
    assert.deepEqual(missing, ["nope"]);
  });

  it("writes modules.dep with each module's whole closure, nearest first", () => {
    const dep = modulesDep([...index.values()], index, new Set());
    assert.match(
      dep,
      /^kernel\/drivers\/block\/virtio_blk\.ko: kernel\/drivers\/virtio\/virtio\.ko kernel\/drivers\/virtio\/virtio_ring\.ko$/m,
    );
    assert.match(dep, /^kernel\/drivers\/virtio\/virtio_ring\.ko:$/m);
  });
});

describe("cpio (newc) archives", () => {
  it("unpack with busybox cpio into the same tree, modes and symlinks", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "gnomon-cpio-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const archive = cpioArchive([
      { kind: "dir", path: "bin" },
      { kind: "file", path: "init", data: Buffer.from("#!/bin/sh\necho hi\n"), mode: 0o755 },
      { kind: "file", path: "bin/odd", data: Buffer.from("abc") },
      { kind: "symlink", path: "bin/sh", target: "busybox" },
    ]);
    assert.equal(archive.length % 4, 0, "records are padded to 4 bytes");
    execFileSync("busybox", ["cpio", "-i", "-d", "-H", "newc"], {
      cwd: dir,
      input: archive,
      stdio: ["pipe", "ignore", "ignore"],
    });
    assert.equal(await readFile(join(dir, "init"), "utf8"), "#!/bin/sh\necho hi\n");
    assert.equal((await stat(join(dir, "init"))).mode & 0o777, 0o755);
    assert.equal(await readFile(join(dir, "bin", "odd"), "utf8"), "abc");
    assert.equal(await readlink(join(dir, "bin", "sh")), "busybox");
  });
});
