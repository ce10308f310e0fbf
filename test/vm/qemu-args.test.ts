// The QEMU command line is a pure function of the image, the run paths and the accelerator.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ImageSpec } from "../../src/vm/catalog.js";
import { qemuArgs, qemuBinary } from "../../src/vm/qemu-args.js";

const image: ImageSpec = {
  name: "test",
  label: "ubuntu-latest",
  os: "linux",
  arch: "x86_64",
  disk: { path: "/images/test/disk.qcow2", format: "qcow2" },
  boot: {
    method: "direct",
    kernel: "/images/test/vmlinuz",
    initrd: "/images/test/initrd.img",
    cmdline: "console=ttyS0 root=/dev/vda rw",
  },
  seedFormat: "vfat",
  login: { user: "runner", shell: "/bin/bash" },
  cpus: 2,
  memoryMiB: 1536,
  diskGiB: 4,
  bootTimeoutMs: 90_000,
  machine: "pc",
  network: "nat",
  diskBus: "virtio",
  nic: "virtio-net-pci",
};
const paths = { overlay: "/run/vm1/disk.qcow2", seed: "/run/vm1/seed.img", qmpSocket: "/run/vm1/qmp.sock" };

/** The value after each occurrence of `flag`. */
function values(args: readonly string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

describe("qemuArgs", () => {
  it("uses TCG with -cpu max, and KVM with the host CPU", () => {
    const tcg = qemuArgs(image, paths, { id: "vm1", sshPort: 40022, accel: "tcg" });
    assert.deepEqual(values(tcg, "-machine"), ["pc,accel=tcg"]);
    assert.deepEqual(values(tcg, "-cpu"), ["max"]);
    const kvm = qemuArgs(image, paths, { id: "vm1", sshPort: 40022, accel: "kvm" });
    assert.deepEqual(values(kvm, "-machine"), ["pc,accel=kvm"]);
    assert.deepEqual(values(kvm, "-cpu"), ["host"]);
  });

  it("takes CPUs and memory from the image", () => {
    const args = qemuArgs(image, paths, { id: "vm1", sshPort: 40022, accel: "tcg" });
    assert.deepEqual(values(args, "-smp"), ["2"]);
    assert.deepEqual(values(args, "-m"), ["1536"]);
  });

  it("boots the overlay read-write and the seed read-only, and forwards SSH on loopback only", () => {
    const args = qemuArgs(image, paths, { id: "vm1", sshPort: 40022, accel: "tcg" });
    const drives = values(args, "-drive");
    assert.ok(drives.some((d) => d.startsWith("file=/run/vm1/disk.qcow2,") && d.includes("format=qcow2")));
    assert.ok(drives.some((d) => d.startsWith("file=/run/vm1/seed.img,") && d.includes("readonly=on")));
    assert.ok(!drives.some((d) => d.includes("/images/test/disk.qcow2")), "the base image is never a drive");
    assert.deepEqual(values(args, "-netdev"), ["user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22,restrict=on"]);
    assert.deepEqual(values(args, "-qmp"), ["unix:/run/vm1/qmp.sock,server=on,wait=off"]);
  });

  it("boots a kernel directly with the image's command line", () => {
    const args = qemuArgs(image, paths, { id: "vm1", sshPort: 1, accel: "tcg" });
    assert.deepEqual(values(args, "-kernel"), ["/images/test/vmlinuz"]);
    assert.deepEqual(values(args, "-initrd"), ["/images/test/initrd.img"]);
    assert.deepEqual(values(args, "-append"), ["console=ttyS0 root=/dev/vda rw"]);
  });

  it("boots BIOS images from their disk and UEFI images with OVMF and a per-VM variables copy", () => {
    const bios = qemuArgs({ ...image, boot: { method: "bios" } }, paths, { id: "vm1", sshPort: 1, accel: "tcg" });
    assert.equal(values(bios, "-kernel").length, 0);
    assert.ok(!values(bios, "-drive").some((d) => d.includes("pflash")));
    const uefi = qemuArgs(
      { ...image, boot: { method: "uefi", code: "/fw/CODE.fd", vars: "/fw/VARS.fd" } },
      { ...paths, firmwareVars: "/run/vm1/VARS.fd" },
      { id: "vm1", sshPort: 1, accel: "tcg" },
    );
    const flash = values(uefi, "-drive").filter((d) => d.includes("pflash"));
    assert.deepEqual(flash, [
      "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
      "if=pflash,format=raw,unit=1,file=/run/vm1/VARS.fd",
    ]);
  });

  it("gives no image a route out of QEMU's user network: egress goes through gnomon's proxy", () => {
    for (const network of ["nat", "isolated"] as const) {
      const args = qemuArgs({ ...image, network }, paths, { id: "vm1", sshPort: 2, accel: "tcg" });
      assert.deepEqual(values(args, "-netdev"), ["user,id=n0,hostfwd=tcp:127.0.0.1:2-:22,restrict=on"]);
    }
  });

  it("uses the image's disk bus and NIC model", () => {
    const args = qemuArgs({ ...image, diskBus: "ide", nic: "e1000" }, paths, { id: "vm1", sshPort: 2, accel: "tcg" });
    assert.ok(values(args, "-drive").every((d) => d.includes("if=ide")));
    assert.deepEqual(
      values(args, "-device").filter((d) => d.includes("netdev")),
      ["e1000,netdev=n0"],
    );
  });

  it("starts nothing the image did not ask for and puts the console on the serial port", () => {
    const args = qemuArgs(image, paths, { id: "vm1", sshPort: 2, accel: "tcg" });
    for (const flag of ["-nodefaults", "-no-user-config", "-no-reboot"]) assert.ok(args.includes(flag), flag);
    assert.deepEqual(values(args, "-display"), ["none"]);
    assert.deepEqual(values(args, "-serial"), ["chardev:console"]);
    assert.ok(values(args, "-name")[0]?.includes("process=gnomon-vm-vm1"), "the process is named after the VM");
  });

  it("attaches shared read-only disks after the seed, on the image's disk bus, and none unless asked", () => {
    const disks = ["/data/runtimes/node20/disk.iso", "/data/runtimes/node24/disk.iso"];
    for (const diskBus of ["virtio", "ide"] as const) {
      const args = qemuArgs(
        { ...image, diskBus },
        { ...paths, readOnlyDisks: disks },
        { id: "vm1", sshPort: 2, accel: "tcg" },
      );
      const drives = values(args, "-drive");
      assert.equal(drives.length, 4);
      assert.ok(drives[1]?.startsWith("file=/run/vm1/seed.img,"), "the seed stays second: guests name it vdb");
      assert.deepEqual(
        drives.slice(2),
        disks.map((d) => `file=${d},if=${diskBus},format=raw,readonly=on`),
      );
    }
    assert.equal(values(qemuArgs(image, paths, { id: "vm1", sshPort: 2, accel: "tcg" }), "-drive").length, 2);
  });

  it("names the QEMU binary after the guest architecture", () => {
    assert.equal(qemuBinary("x86_64"), "qemu-system-x86_64");
  });
});
