// QEMU processes on this machine, by what their command line contains (a VM id, the run folder or
// data directory a test gave its orchestrator), and a poll-until helper: for tests that check
// nothing is left. Only ever of the VMs a test started itself: other gnomons on the same machine
// (a developer's, a second checkout, another test run) have VMs of their own.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import type { TestContext } from "node:test";

/**
 * Pids of the QEMU processes whose command line contains `text`: a VM id, or a folder the test
 * created (a VM's overlay and seed lie under its orchestrator's data directory). There is no
 * default: "every gnomon QEMU on the machine" is never what a test started.
 */
export function qemuPids(text: string): number[] {
  if (text.length < 8) throw new Error(`qemuPids("${text}") would match other gnomons' VMs: pass a VM id or a folder`);
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

/**
 * A process that looks like another gnomon's VM on this machine: its command line starts with
 * qemu-system and names a gnomon VM, in no folder of the test's. A test that starts one shows that
 * it counts and kills only its own VMs (and that its orchestrators' reapers leave it alone).
 * Killed when `t` ends.
 */
export function foreignQemu(t: TestContext): { readonly pid: number } {
  const child = spawn(
    process.execPath,
    ["-e", "setInterval(() => {}, 60_000)", "--", "-name", `gnomon-vm-${randomUUID()}`],
    { argv0: "qemu-system-x86_64", stdio: "ignore" },
  );
  t.after(() => child.kill("SIGKILL"));
  if (child.pid === undefined) throw new Error("could not start the stand-in for another gnomon's QEMU");
  return { pid: child.pid };
}
