// What a job's machine gets for Node.js, decided before boot (which disks), and how its locator
// answers: the image's declared node, gnomon's disk, or a reason that says what to do. The
// locator's commands run on this host's executor here (the VM case is test/e2e/javascript-actions).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { createHostExecutor } from "../../src/executor/host.js";
import { prepareNodeDelivery } from "../../src/orchestrator/node-delivery.js";
import { rootLogger } from "../../src/telemetry/log.js";
import type { ImageSpec } from "../../src/vm/catalog.js";
import { NodeRuntimes } from "../../src/vm/node-runtime.js";
import { testNodeRuntimes } from "../support/node-runtimes.js";

const linux: ImageSpec = {
  name: "debian-12",
  label: "debian-12",
  os: "linux",
  arch: "x86_64",
  disk: { path: "/images/debian.qcow2", format: "qcow2" },
  boot: { method: "bios" },
  seedFormat: "vfat",
  login: { user: "runner", shell: "/bin/bash" },
  cpus: 1,
  memoryMiB: 512,
  diskGiB: 4,
  bootTimeoutMs: 60_000,
  machine: "pc",
  network: "nat",
  diskBus: "virtio",
  nic: "virtio-net-pci",
};

async function locatorOn(t: TestContext, runtimes: NodeRuntimes | undefined, image: ImageSpec) {
  const timed: string[] = [];
  const delivery = await prepareNodeDelivery(runtimes, image, {
    signal: AbortSignal.timeout(120_000),
    log: rootLogger(),
    onTimed: (stage) => timed.push(stage),
  });
  const executor = await createHostExecutor();
  t.after(() => executor.close());
  return { delivery, locator: delivery.locator(executor, AbortSignal.timeout(60_000)), timed };
}

describe("Node.js delivery to a job's machine", () => {
  it("attaches gnomon's disk for each major a linux-x64 image does not bring itself", async (t) => {
    const runtimes = testNodeRuntimes();
    const [n20, n24] = await Promise.all([runtimes.prepare("linux-x64", 20), runtimes.prepare("linux-x64", 24)]);
    const all = await locatorOn(t, runtimes, linux);
    assert.deepEqual(all.delivery.disks, [n20.disk, n24.disk]);
    assert.deepEqual(all.timed, ["obtain"]);
    const own = await locatorOn(t, runtimes, { ...linux, node: { node20: { path: process.execPath } } });
    assert.deepEqual(own.delivery.disks, [n24.disk]);
    const found = await own.locator.locate(20, AbortSignal.timeout(60_000));
    assert.deepEqual(found, { found: true, path: process.execPath, describe: `the image's ${process.execPath}` });
    assert.deepEqual(own.timed, ["obtain", "locate"]);
    // This host has no disk labelled gnomon-node24: the reason says so, and what the image needs.
    const disk = await own.locator.locate(24, AbortSignal.timeout(60_000));
    assert.equal(disk.found, false);
    assert.match(
      disk.found ? "" : disk.reason,
      /gnomon's Node\.js 24 disk \(gnomon-node24\) is attached but could not be used in debian-12: no disk labelled gnomon-node24 is attached to this VM/,
    );
  });

  it("names the package to install when an image's declared node is not there", async (t) => {
    const { delivery, locator } = await locatorOn(t, undefined, {
      ...linux,
      name: "omnios-r151056",
      os: "illumos",
      node: { node24: { path: "/opt/ooce/node-24/bin/node", package: "ooce/runtime/node-24" } },
    });
    assert.deepEqual(delivery.disks, []);
    const r = await locator.locate(24, AbortSignal.timeout(60_000));
    assert.deepEqual(r, {
      found: false,
      reason:
        "the image omnios-r151056 declares Node.js 24 at /opt/ooce/node-24/bin/node, which is not there: install ooce/runtime/node-24 in the image",
    });
    const none = await locator.locate(20, AbortSignal.timeout(60_000));
    assert.match(
      none.found ? "" : none.reason,
      /gnomon brings Node\.js only for linux-x64 guests, and the image omnios-r151056 \(illumos-x64\) declares no Node\.js 20 of its own: install it in the image and add node\.node20 \(its path and package\) to omnios-r151056 in the image catalog/,
    );
  });

  it("boots the machine without a runtime it cannot obtain, and gives the reason to the step that needs it", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "gnomon-runtimes-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { delivery, locator } = await locatorOn(t, new NodeRuntimes({ dir, registry: "http://127.0.0.1:9" }), linux);
    assert.deepEqual(delivery.disks, []);
    const r = await locator.locate(24, AbortSignal.timeout(60_000));
    assert.match(
      r.found ? "" : r.reason,
      /^gnomon could not obtain Node\.js 24 for linux-x64: .*runtimes\.node\.registry/,
    );
  });
});
