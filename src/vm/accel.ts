// Chooses KVM or TCG by really trying KVM once per process: /dev/kvm can exist where KVM cannot run a
// guest (this machine kind: the device is there, the CPU has no vmx/svm and the first KVM_RUN aborts
// QEMU). The probe starts a tiny QEMU with accel=kvm, lets its vCPU run briefly and asks whether it
// is still running. The answer is cached; which one was chosen is logged once.
import { spawn } from "node:child_process";
import { constants, promises as fs } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../telemetry/log.js";
import type { Accel } from "./qemu-args.js";

let cached: Promise<{ accel: Accel; why: string }> | undefined;

export function detectAccel(qemu: string, log?: Logger): Promise<Accel> {
  if (!cached) {
    cached = probe(qemu);
    void cached.then(({ accel, why }) => log?.info({ accel, why }, `vm acceleration: ${accel}`));
  }
  return cached.then((r) => r.accel);
}

/** Forgets the cached answer (tests). */
export function resetAccelCache(): void {
  cached = undefined;
}

async function probe(qemu: string): Promise<{ accel: Accel; why: string }> {
  try {
    await fs.access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { accel: "tcg", why: "/dev/kvm is missing or not accessible" };
  }
  const child = spawn(
    qemu,
    [
      "-machine",
      "pc,accel=kvm",
      "-cpu",
      "host",
      "-m",
      "32",
      "-nodefaults",
      "-display",
      "none",
      "-no-reboot",
      "-monitor",
      "stdio",
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let out = "";
  child.stdin.on("error", () => {}); // QEMU may be gone when we send quit
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    out += s;
  });
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    out += s;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on("close", (code) => resolve(code));
    child.on("error", () => resolve(-1));
  });
  const deadline = AbortSignal.timeout(10_000);
  try {
    // The monitor prompt appears once the machine is initialised; then let the vCPU run for a moment.
    while (!out.includes("(qemu)")) {
      const done = await Promise.race([exited.then(() => true), sleep(50, false, { signal: deadline })]);
      if (done) return { accel: "tcg", why: `KVM did not start: ${lastLine(out)}` };
    }
    await sleep(500, undefined, { signal: deadline });
    child.stdin.write("info status\n");
    const answered = await Promise.race([
      exited.then(() => false),
      (async () => {
        while (!/VM status: \w+/.test(out)) await sleep(50, undefined, { signal: deadline });
        return true;
      })(),
    ]);
    if (answered && /VM status: running/.test(out)) return { accel: "kvm", why: "a KVM guest ran" };
    return { accel: "tcg", why: `a KVM guest did not run: ${lastLine(out)}` };
  } catch {
    return { accel: "tcg", why: "the KVM probe did not answer within 10 s" };
  } finally {
    child.stdin.end("quit\n");
    child.kill("SIGKILL");
    await exited;
  }
}

function lastLine(text: string): string {
  const lines = text
    .replace(/\x1b\[[0-9;]*[A-Za-z]/g, "")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("(qemu)") && !l.startsWith("QEMU "));
  return lines.at(-1) ?? "no output";
}
