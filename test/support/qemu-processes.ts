// QEMU processes on this machine, by what their command line contains (gnomon names each VM
// `gnomon-<id>` / `gnomon-vm-<id>`), and a poll-until helper: for tests that check nothing is left.
import { readdirSync, readFileSync } from "node:fs";

/** Pids of the QEMU processes whose command line contains `text` (a VM id, a run folder). */
export function qemuPids(text = "gnomon-"): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // it exited meanwhile
    }
    if (/qemu-system/.test(argv[0] ?? "") && argv.some((a) => a.includes(text))) pids.push(Number(name));
  }
  return pids;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves with the first truthy value of `probe`, asked every `everyMs`; rejects after `timeoutMs`. */
export async function until<T>(
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  what: string,
  timeoutMs: number,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
