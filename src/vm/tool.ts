// Runs one host program the VM layer depends on (qemu-img, apt-get, dpkg-deb, mke2fs, mkfs.fat …) to
// completion and returns its output. Never a shell: argv only. A missing program becomes a
// ToolMissingError naming the Debian package to install.
import { spawn } from "node:child_process";
import { ToolFailedError, ToolMissingError } from "./errors.js";

/** Debian package of each host program, for the "install it" hint. */
const PACKAGE_OF: Readonly<Record<string, string>> = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  "apt-get": "apt",
  "apt-cache": "apt",
  "dpkg-deb": "dpkg",
  mke2fs: "e2fsprogs",
  debugfs: "e2fsprogs",
  "mkfs.fat": "dosfstools",
  mcopy: "mtools",
  genisoimage: "genisoimage",
  ldconfig: "libc-bin",
  zstd: "zstd",
  xz: "xz-utils",
  mmdebstrap: "mmdebstrap",
};

export interface ToolOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
  /** Exit codes that count as success; default [0]. */
  readonly okCodes?: readonly number[];
  /** Each line the program writes to stderr, as it comes (progress of a long build step). */
  readonly onStderrLine?: (line: string) => void;
}

export interface ToolResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

export function packageOf(program: string): string | undefined {
  return PACKAGE_OF[program];
}

export function runTool(program: string, args: readonly string[], opts: ToolOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, [...args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      signal: opts.signal,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    let partial = "";
    child.stderr.on("data", (b: Buffer) => {
      err.push(b);
      if (!opts.onStderrLine) return;
      const lines = (partial + b.toString("utf8")).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) opts.onStderrLine(line);
    });
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") reject(new ToolMissingError(program, packageOf(program), { cause: e }));
      else if (e.name === "AbortError") reject(opts.signal?.reason ?? e);
      else reject(e);
    });
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      const exit = code ?? -1;
      if ((opts.okCodes ?? [0]).includes(exit)) resolve({ stdout, stderr, code: exit });
      else if (!opts.signal?.aborted) reject(new ToolFailedError(program, args, exit, signal, stderr || stdout));
    });
  });
}
