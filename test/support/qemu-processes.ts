// QEMU processes on this machine, by what their command line contains (gnomon names each VM
// `gnomon-<id>` / `gnomon-vm-<id>`): for tests that check nothing is left running.
import { readdirSync, readFileSync } from "node:fs";

export function qemuProcesses(containing = "gnomon-"): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue;
    }
    if (cmdline.startsWith("qemu-system") || cmdline.includes("/qemu-system"))
      if (cmdline.includes(containing)) out.push({ pid: Number(name), cmdline });
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
