// Chooses KVM or TCG by timing both on a tiny probe guest, once per process. /dev/kvm proves
// nothing: it exists where KVM cannot run a guest (no vmx/svm: the first KVM_RUN aborts QEMU) and
// where it runs one hundreds of times slower than TCG (nested or emulated KVM: a Debian kernel's
// decompressor took minutes and the test guest never booted). So the probe boots the same guest
// under TCG and then under KVM, and KVM wins only if it finishes sooner. The answer is cached and
// logged once with the figures.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { constants, promises as fs } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../telemetry/log.js";
import type { Accel } from "./qemu-args.js";

/**
 * The probe guest, a 238-byte multiboot kernel (QEMU loads it with -kernel). It writes byte 1 to
 * the debug console port 0x402, builds identity page tables for 64 MiB with 2 MiB pages, enters
 * long mode as a kernel does, writes a quadword to every 64th byte of 4..60 MiB eight times over
 * (memory traffic under guest paging is what slow KVM is slow at), writes byte 2 and halts.
 * Assembled with GNU as (--32) and `ld -m elf_i386 -Ttext=0x100000 --oformat binary` from:
 *
 *   entry:  mov $0x402,%dx; mov $1,%al; out %al,%dx
 *           zero 0x10000-0x12fff; PML4[0]=0x11003; PDPT[0]=0x12003; PD[i]=i*2MiB|0x83 (i<32)
 *           cr3=0x10000; cr4|=PAE; EFER|=LME; lgdt gdtr; cr0|=PG|PE; ljmp $8,long64
 *   long64: r8=8; do { for (rdi=4MiB; rdi<60MiB; rdi+=64) *rdi=rdi } while (--r8)
 *           mov $0x402,%dx; mov $2,%al; out %al,%dx; 1: hlt; jmp 1b
 *   gdt:    null, 0x00AF9A000000FFFF (64-bit code), 0x00CF92000000FFFF (data)
 *
 * sha256 e824d0e7616d26b76c1dfbafb514d1c23abb0658b072ecdccf6e8b430f607eb8.
 */
const PROBE_KERNEL = Buffer.from(
  "6yJmkAKwrRsAAAEA/k9R5AQAEAAAABAAAAAAAAAAAAAkABAAZroCBLAB7r8AAAEAMcC5AAwAAPOrxwUAAAEAAxABAMcFABABAAMgAQC/" +
    "ACABALiDAAAAuSAAAACJBwUAACAAg8cI4vS4AAABAA8i2A8g4IPIIA8i4LmAAADADzINAAEAAA8wDwEV6AAQAA8gwA0BAACADyLA6qAA" +
    "EAAIAEnHwAgAAABIx8cAAEAASIk/SIPHQEiB/wAAwANy8En/yHXkZroCBLAC7vTr/Y12AAAAAAAAAAAA//8AAACarwD//wAAAJLPABcA" +
    "0AAQAA==",
  "base64",
);
const PROBE_DONE = 2;
/** TCG may be slow on a loaded host, but a guest that cannot finish this in a minute is broken QEMU. */
const TCG_BUDGET_MS = 60_000;
/** However fast TCG was, KVM gets this long: QEMU's own start-up is most of it on a real KVM host. */
const KVM_MIN_BUDGET_MS = 1_000;

export interface AccelChoice {
  readonly accel: Accel;
  /** One sentence for the log: why this accelerator, with the probe's figures. */
  readonly why: string;
}

let cached: Promise<AccelChoice> | undefined;

export function detectAccel(qemu: string, log?: Logger): Promise<Accel> {
  if (!cached) {
    cached = probeAccel(qemu);
    void cached.then(({ accel, why }) => log?.info({ accel, why }, `vm acceleration: ${accel}`));
  }
  return cached.then((r) => r.accel);
}

/** Forgets the cached answer (tests). */
export function resetAccelCache(): void {
  cached = undefined;
}

/** Runs the probe guest under TCG, then under KVM when /dev/kvm is usable, and picks the faster. */
export async function probeAccel(qemu: string, kvmDevice = "/dev/kvm"): Promise<AccelChoice> {
  try {
    await fs.access(kvmDevice, constants.R_OK | constants.W_OK);
  } catch {
    return { accel: "tcg", why: `${kvmDevice} is missing or not accessible` };
  }
  const tcg = await timeProbeGuest(qemu, "tcg", TCG_BUDGET_MS);
  // KVM has to beat TCG outright; without a TCG figure it still has to finish within the minimum.
  const kvm = await timeProbeGuest(qemu, "kvm", Math.max(KVM_MIN_BUDGET_MS, tcg.ms ?? 0));
  return chooseAccel(tcg, kvm);
}

/** One run of the probe guest: `ms` from spawning QEMU to the guest's last byte, or why not. */
export interface ProbeRun {
  readonly ms?: number;
  readonly detail: string;
}

/** Pure: KVM only when it finished the probe guest, and sooner than TCG did. */
export function chooseAccel(tcg: ProbeRun, kvm: ProbeRun): AccelChoice {
  const tcgFigure = tcg.ms === undefined ? `TCG ${tcg.detail}` : `TCG took ${tcg.ms} ms`;
  if (kvm.ms === undefined) return { accel: "tcg", why: `KVM ${kvm.detail} (${tcgFigure})` };
  if (tcg.ms !== undefined && kvm.ms >= tcg.ms)
    return {
      accel: "tcg",
      why: `KVM ran the probe guest in ${kvm.ms} ms, no faster than TCG (${tcg.ms} ms): nested or emulated KVM`,
    };
  return { accel: "kvm", why: `KVM ran the probe guest in ${kvm.ms} ms (${tcgFigure})` };
}

/** Boots the probe guest with `accel` and times it, giving up after `budgetMs`. */
export async function timeProbeGuest(qemu: string, accel: Accel, budgetMs: number): Promise<ProbeRun> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-accel-"));
  try {
    const kernel = join(dir, "probe.bin");
    await writeFile(kernel, PROBE_KERNEL);
    return await runProbe(qemu, accel, kernel, budgetMs);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runProbe(qemu: string, accel: Accel, kernel: string, budgetMs: number): Promise<ProbeRun> {
  const started = Date.now();
  const child = spawn(
    qemu,
    [
      "-machine",
      `pc,accel=${accel}`,
      "-cpu",
      accel === "kvm" ? "host" : "max",
      "-m",
      "64",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
      "-monitor",
      "none",
      "-chardev",
      "stdio,id=probe",
      "-device",
      "isa-debugcon,iobase=0x402,chardev=probe",
      "-kernel",
      kernel,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-2_000);
  });
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(
        () => resolve({ detail: `did not finish the probe guest within ${budgetMs} ms` }),
        budgetMs,
      );
      // SeaBIOS logs text to the same port first; the probe's own bytes are control characters.
      child.stdout.on("data", (b: Buffer) => {
        if (b.includes(PROBE_DONE)) {
          clearTimeout(timer);
          resolve({ ms: Date.now() - started, detail: "finished" });
        }
      });
      child.on("error", (err) => {
        clearTimeout(timer);
        resolve({ detail: `could not start: ${err.message}` });
      });
      child.on("exit", () => {
        clearTimeout(timer);
        resolve({ detail: `did not start: ${lastLine(stderr)}` });
      });
    });
  } finally {
    const closed = once(child, "close").catch(() => undefined);
    child.kill("SIGKILL");
    await Promise.race([closed, sleep(5_000)]);
  }
}

function lastLine(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.at(-1) ?? "no output";
}
