// Pure: the QEMU command line for one VM from its ImageSpec, run paths and accelerator. No files,
// no processes, no clock; machine.ts runs exactly what this returns.
import type { ImageSpec } from "./catalog.js";

export type Accel = "kvm" | "tcg";

export interface RunPaths {
  readonly overlay: string;
  readonly seed: string;
  readonly qmpSocket: string;
  /** UEFI only: this VM's writable copy of the firmware variables. */
  readonly firmwareVars?: string;
  /**
   * Read-only raw disks after the seed, shared by every VM that attaches them (the Node.js runtime
   * disks of src/vm/node-runtime.ts): read-only opens take only shared locks, so VMs never block
   * each other, and nothing is copied per VM.
   */
  readonly readOnlyDisks?: readonly string[];
}

export interface RunSettings {
  readonly id: string;
  readonly sshPort: number;
  readonly accel: Accel;
}

export function qemuBinary(arch: ImageSpec["arch"]): string {
  return `qemu-system-${arch}`;
}

export function qemuArgs(image: ImageSpec, paths: RunPaths, run: RunSettings): string[] {
  // restrict=on for every image: QEMU's user network would connect the guest to anything this host
  // reaches, its own loopback services (10.0.2.2) included. The guest gets no route out; its
  // traffic leaves only through ports gnomon serves over SSH (the egress proxy, src/egress/).
  const net = ["user", "id=n0", `hostfwd=tcp:127.0.0.1:${run.sshPort}-:22`, "restrict=on"].join(",");
  const args = [
    "-name",
    `gnomon-${run.id},process=gnomon-vm-${run.id}`,
    "-machine",
    `${image.machine},accel=${run.accel}`,
    // TCG: -cpu max has RDRAND, so the guest's entropy pool is ready at once (shared notes).
    "-cpu",
    run.accel === "kvm" ? "host" : "max",
    "-smp",
    String(image.cpus),
    "-m",
    String(image.memoryMiB),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-rtc",
    "base=utc",
    // The serial console goes to QEMU's stdout, which machine.ts reads into a ring buffer.
    "-chardev",
    "stdio,id=console,signal=off",
    "-serial",
    "chardev:console",
    "-qmp",
    `unix:${paths.qmpSocket},server=on,wait=off`,
    // Ephemeral disks: flushes are pointless, so cache=unsafe.
    "-drive",
    `file=${paths.overlay},if=${image.diskBus},format=qcow2,cache=unsafe,discard=unmap`,
    "-drive",
    `file=${paths.seed},if=${image.diskBus},format=raw,readonly=on`,
    ...(paths.readOnlyDisks ?? []).flatMap((disk) => [
      "-drive",
      `file=${disk},if=${image.diskBus},format=raw,readonly=on`,
    ]),
    "-netdev",
    net,
    "-device",
    `${image.nic},netdev=n0`,
    "-object",
    "rng-random,id=rng0,filename=/dev/urandom",
    "-device",
    "virtio-rng-pci,rng=rng0",
    "-sandbox",
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
  ];
  const boot = image.boot;
  switch (boot.method) {
    case "direct":
      args.push("-kernel", boot.kernel, "-initrd", boot.initrd, "-append", boot.cmdline);
      break;
    case "uefi":
      args.push(
        "-drive",
        `if=pflash,format=raw,unit=0,readonly=on,file=${boot.code}`,
        "-drive",
        `if=pflash,format=raw,unit=1,file=${paths.firmwareVars ?? boot.vars}`,
      );
      break;
    case "bios":
      break;
  }
  return args;
}
