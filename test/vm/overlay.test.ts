// Per-VM overlays: qcow2 on an absolute backing path, grown to the catalog's disk size.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { createOverlay, overlayArgs } from "../../src/vm/overlay.js";

describe("overlay", () => {
  it("builds qemu-img arguments with a size only when the disk grows, and refuses a relative base", () => {
    assert.deepEqual(overlayArgs("/img/base.qcow2", "qcow2", "/run/o.qcow2"), [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-F",
      "qcow2",
      "-b",
      "/img/base.qcow2",
      "/run/o.qcow2",
    ]);
    assert.equal(overlayArgs("/img/base.raw", "raw", "/run/o.qcow2", 4096).at(-1), "4096");
    assert.throws(() => overlayArgs("img/base.qcow2", "qcow2", "/run/o.qcow2"), /must be absolute/);
  });

  it("creates an overlay on a base given by a relative path, grown to the wanted size", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "gnomon-overlay-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const base = join(dir, "base.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", base, "512M"]);
    const overlay = join(dir, "vm", "..", "overlay.qcow2");
    await createOverlay(relative(process.cwd(), base), "qcow2", overlay, 1);
    const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", overlay], { encoding: "utf8" })) as {
      "backing-filename": string;
      "virtual-size": number;
    };
    assert.equal(info["backing-filename"], base, "the backing path is absolute");
    assert.equal(info["virtual-size"], 1024 ** 3, "grown to diskGiB");
    await createOverlay(base, "qcow2", join(dir, "small.qcow2"), 0);
    const small = JSON.parse(
      execFileSync("qemu-img", ["info", "--output=json", join(dir, "small.qcow2")], { encoding: "utf8" }),
    ) as {
      "virtual-size": number;
    };
    assert.equal(small["virtual-size"], 512 * 1024 ** 2, "never smaller than the base");
  });
});
