// QEMU must not outlive the gnomon process that started it: a VM nobody owns keeps its CPUs,
// memory and disk until the next start reaps it. On Linux, QEMU is started through util-linux's
// `setpriv --pdeathsig KILL`, which sets PR_SET_PDEATHSIG and then execs QEMU in place (same pid):
// the kernel kills QEMU the moment its parent dies, however it dies (SIGKILL, the OOM killer, a
// crash). The signal fires when the parent *thread* ends; Node spawns from its main thread, which
// lives as long as the process. Where setpriv is missing, QEMU starts directly, with a warning.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { Logger } from "../telemetry/log.js";

/** What to spawn to run `binary args`: through `setpriv` when it is given, as is otherwise. Pure. */
export function withParentDeathSignal(
  binary: string,
  args: readonly string[],
  setpriv: string | undefined,
): { command: string; args: string[] } {
  if (!setpriv) return { command: binary, args: [...args] };
  return { command: setpriv, args: ["--pdeathsig", "KILL", "--", binary, ...args] };
}

/** setpriv's exit code when it could not find the program to run (util-linux's EX_EXEC_ENOENT). */
export const SETPRIV_EXEC_ENOENT = 127;

let cached: Promise<string | undefined> | undefined;

/**
 * The absolute path of a setpriv that supports --pdeathsig on this host (probed once per process),
 * or undefined, after one warning naming what a killed gnomon then leaves behind.
 */
export function parentDeathHelper(log?: Logger): Promise<string | undefined> {
  if (!cached) {
    cached = probe();
    void cached.then((found) => {
      if (!found)
        log?.warn(
          process.platform === "linux"
            ? "setpriv (util-linux) with --pdeathsig is not available: if gnomon is killed, its QEMU processes keep running until the next start reaps them; install util-linux"
            : "QEMU is not tied to gnomon's lifetime on this OS: if gnomon is killed, its QEMU processes keep running until the next start reaps them",
        );
    });
  }
  return cached;
}

/** Forgets the cached answer (tests). */
export function resetParentDeathCache(): void {
  cached = undefined;
}

async function probe(): Promise<string | undefined> {
  if (process.platform !== "linux") return undefined;
  const path = await onPath("setpriv");
  if (!path) return undefined;
  // An old util-linux has setpriv without --pdeathsig: try it once on a harmless program.
  const ok = await new Promise<boolean>((resolve) => {
    const child = spawn(path, ["--pdeathsig", "KILL", "--", process.execPath, "--version"], { stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("exit", (code) => resolve(code === 0));
  });
  return ok ? path : undefined;
}

async function onPath(program: string): Promise<string | undefined> {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
