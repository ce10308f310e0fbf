// Runs the shipped program (dist/gnomon.mjs through bin/gnomon.js) as a user would, and captures it.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const GNOMON_BIN = fileURLToPath(new URL("../../bin/gnomon.js", import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runGnomon(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GNOMON_BIN, ...args], {
      cwd: opts.cwd,
      env: { PATH: process.env["PATH"], HOME: process.env["HOME"], ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 60_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}
