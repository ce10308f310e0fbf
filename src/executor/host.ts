// The host executor: runs a job's processes on this machine, each run in its own process group
// inside a per-job directory, so that an abort or a timeout stops the whole tree (TERM, then KILL).
// Only for tests and explicit `NAME=host` labels: it never isolates a job from this host.

import { type ChildProcess, spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { chmod, cp, lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { homedir, tmpdir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import type { Duplex } from "node:stream";
import {
  type Executor,
  type ExecutorPlatform,
  FileNotFoundError,
  type RunOptions,
  type RunResult,
  type ServedPort,
  type ServeOptions,
  ServePortTakenError,
  type UploadOptions,
} from "./executor.js";
import { LineSplitter } from "./lines.js";

export interface HostExecutorOptions {
  /** Where the per-job directory is created; default the system temp directory. */
  readonly parentDir?: string;
  /** Time between TERM and KILL when a run is aborted. */
  readonly killGraceMs?: number;
  /**
   * How long a run waits, after its process exited, for processes it left behind to close
   * stdout/stderr before they are killed (GitHub's runner waits 5 s too).
   */
  readonly outputGraceMs?: number;
  /** The environment every run starts from; default this process's, without gnomon's own settings. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>;
  /** Keep the per-job directory on close (for debugging). */
  readonly keep?: boolean;
}

const DEFAULT_KILL_GRACE_MS = 5_000;
const DEFAULT_OUTPUT_GRACE_MS = 5_000;

/** gnomon's own configuration and credentials never reach a step's environment. */
function isPrivateVariable(name: string): boolean {
  return name.startsWith("GNOMON_") || name === "AMQP_URL" || name === "DATABASE_URL";
}

export function runnerOs(platform: NodeJS.Platform = process.platform): string {
  switch (platform) {
    case "linux":
      return "Linux";
    case "darwin":
      return "macOS";
    case "win32":
      return "Windows";
    case "freebsd":
      return "FreeBSD";
    case "openbsd":
      return "OpenBSD";
    case "sunos":
      return "illumos";
    default:
      return platform;
  }
}

export function runnerArch(arch: string = process.arch): string {
  switch (arch) {
    case "x64":
      return "X64";
    case "arm64":
      return "ARM64";
    case "ia32":
      return "X86";
    case "arm":
      return "ARM";
    default:
      return arch.toUpperCase();
  }
}

/** Creates the per-job directory (work, temp, tool cache) and an executor rooted in it. */
export async function createHostExecutor(opts: HostExecutorOptions = {}): Promise<HostExecutor> {
  // <dataDir>/host-jobs does not exist on a fresh data directory.
  if (opts.parentDir) await mkdir(opts.parentDir, { recursive: true, mode: 0o700 });
  const jobDir = await mkdtemp(join(opts.parentDir ?? tmpdir(), "gnomon-job-"));
  const platform: ExecutorPlatform = {
    os: runnerOs(),
    arch: runnerArch(),
    workDir: join(jobDir, "work"),
    tempDir: join(jobDir, "temp"),
    toolCacheDir: join(jobDir, "tool-cache"),
    homeDir: homedir(),
  };
  for (const dir of [platform.workDir, platform.tempDir, platform.toolCacheDir]) await mkdir(dir, { recursive: true });
  return new HostExecutor(jobDir, platform, opts);
}

export class HostExecutor implements Executor {
  readonly name = "host";
  private readonly baseEnv: Record<string, string>;
  private readonly killGraceMs: number;
  private readonly outputGraceMs: number;
  /** Process groups that may still have members: killed on close and if this process exits. */
  private readonly groups = new Set<number>();
  private closed = false;
  private readonly served = new Set<() => Promise<void>>();
  private readonly onProcessExit = () => {
    for (const pgid of this.groups) signalGroup(pgid, "SIGKILL");
  };

  constructor(
    /** The per-job directory; removed on close unless `keep`. */
    readonly jobDir: string,
    readonly platform: ExecutorPlatform,
    private readonly opts: HostExecutorOptions,
  ) {
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.baseEnv ?? process.env))
      if (v !== undefined && !isPrivateVariable(k)) base[k] = v;
    this.baseEnv = base;
    this.killGraceMs = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.outputGraceMs = opts.outputGraceMs ?? DEFAULT_OUTPUT_GRACE_MS;
  }

  async run(opts: RunOptions): Promise<RunResult> {
    const [file, ...args] = opts.argv;
    if (file === undefined) throw new TypeError("run() needs a program: argv is empty");
    if (opts.signal.aborted) return { exitCode: null, signal: "SIGTERM" };
    const cwdStat = await stat(opts.cwd).catch(() => undefined);
    if (!cwdStat?.isDirectory()) throw new FileNotFoundError(opts.cwd);

    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: { ...this.baseEnv, ...opts.env },
      detached: true, // its own process group: the whole tree can be signalled at once
      stdio: ["ignore", "pipe", "pipe"],
    });
    return await new Promise<RunResult>((resolve) => {
      let exit: RunResult | undefined;
      let openStreams = 2;
      let killTimer: NodeJS.Timeout | undefined;
      let outputTimer: NodeJS.Timeout | undefined;
      const pgid = child.pid;
      if (pgid !== undefined) {
        this.groups.add(pgid);
        if (this.groups.size === 1) process.on("exit", this.onProcessExit);
      }

      const finish = () => {
        if (!exit || openStreams > 0) return;
        opts.signal.removeEventListener("abort", onAbort);
        clearTimeout(outputTimer);
        if (pgid !== undefined && !groupAlive(pgid)) {
          clearTimeout(killTimer);
          this.forget(pgid);
        }
        resolve(exit);
      };
      const onAbort = () => {
        if (pgid === undefined || exit) return;
        signalGroup(pgid, "SIGTERM");
        killTimer = setTimeout(() => {
          signalGroup(pgid, "SIGKILL");
          this.forget(pgid);
        }, this.killGraceMs);
      };
      opts.signal.addEventListener("abort", onAbort, { once: true });

      const streamDone = () => {
        openStreams -= 1;
        finish();
      };
      pipeLines(child, "stdout", opts.onLine, streamDone);
      pipeLines(child, "stderr", opts.onLine, streamDone);

      child.once("error", (err: NodeJS.ErrnoException) => {
        // Spawning failed (no such program, or not executable): report it as a shell would.
        if (exit) return;
        const code = err.code === "ENOENT" ? 127 : 126;
        opts.onLine("stderr", `${file}: ${err.code === "ENOENT" ? "command not found" : err.message}`);
        exit = { exitCode: code, signal: null };
        openStreams = 0;
        finish();
      });
      child.once("exit", (code, sig) => {
        exit = { exitCode: code, signal: sig };
        if (openStreams > 0) {
          // Something the step started in the background still holds its output open.
          outputTimer = setTimeout(() => {
            if (pgid !== undefined) signalGroup(pgid, "SIGKILL");
            child.stdout?.destroy();
            child.stderr?.destroy();
          }, this.outputGraceMs);
        }
        finish();
      });
    });
  }

  async writeFile(path: string, data: string | Uint8Array, opts?: { mode?: number }): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
    // `mode` on writeFile applies to new files only and is reduced by the umask: set it explicitly.
    if (opts?.mode !== undefined) await chmod(path, opts.mode);
  }

  async readFile(path: string): Promise<Buffer> {
    try {
      return await readFile(path);
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR") || isErrno(err, "EISDIR"))
        throw new FileNotFoundError(path, { cause: err });
      throw err;
    }
  }

  async mkdirp(path: string): Promise<void> {
    await mkdir(path, { recursive: true });
  }

  async uploadDir(localDir: string, remoteDir: string, opts: UploadOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    const skip = opts.skip;
    await mkdir(remoteDir, { recursive: true });
    await cp(localDir, remoteDir, {
      recursive: true,
      force: true,
      verbatimSymlinks: true,
      mode: fsConstants.COPYFILE_FICLONE,
      // Sockets, FIFOs and devices in a working tree cannot be copied and mean nothing to a job.
      filter: async (src) => {
        const rel = relative(localDir, src).split(sep).join("/");
        if (rel !== "" && skip?.(rel)) return false;
        const s = await lstat(src);
        return s.isFile() || s.isDirectory() || s.isSymbolicLink();
      },
    });
  }

  /** On this host the machine is the host: a listener on a free loopback port. */
  async serve(accept: (stream: Duplex) => void, opts: ServeOptions = {}): Promise<ServedPort> {
    const server = createServer((socket) => {
      socket.on("error", () => socket.destroy());
      accept(socket);
    });
    const sockets = new Set<Socket>();
    server.on("connection", (s) => {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        const taken = opts.port && (err.code === "EADDRINUSE" || err.code === "EACCES");
        reject(taken ? new ServePortTakenError(this.name, opts.port!, err.message, { cause: err }) : err);
      });
      server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
    });
    const close = async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    };
    this.served.add(close);
    return { port: (server.address() as AddressInfo).port, close };
  }

  /** Kills what the job left running and removes the per-job directory. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.served) await stop();
    for (const pgid of [...this.groups]) {
      signalGroup(pgid, "SIGKILL");
      this.forget(pgid);
    }
    if (!this.opts.keep) await rm(this.jobDir, { recursive: true, force: true });
  }

  private forget(pgid: number): void {
    this.groups.delete(pgid);
    if (this.groups.size === 0) process.off("exit", this.onProcessExit);
  }
}

function pipeLines(
  child: ChildProcess,
  stream: "stdout" | "stderr",
  onLine: RunOptions["onLine"],
  done: () => void,
): void {
  const source = child[stream];
  if (!source) {
    done();
    return;
  }
  const lines = new LineSplitter((line) => onLine(stream, line));
  source.on("data", (chunk: Buffer) => lines.push(chunk));
  source.once("close", () => {
    lines.end();
    done();
  });
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is gone already.
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}
