// The Executor: where a job's processes run (a VM over SSH, or this host). The engine drives it and
// knows nothing else about the machine; an executor knows nothing about Actions.
import type { Duplex } from "node:stream";

export interface ExecutorPlatform {
  /** The `runner.os` value: Linux, illumos, macOS, Windows, FreeBSD … */
  readonly os: string;
  /** The `runner.arch` value: X64, ARM64, X86, ARM. */
  readonly arch: string;
  /** Absolute directory under which job workspaces live (the runner's `_work`). */
  readonly workDir: string;
  /** RUNNER_TEMP: emptied for every job. */
  readonly tempDir: string;
  /** RUNNER_TOOL_CACHE. */
  readonly toolCacheDir: string;
  /** HOME of the user steps run as. */
  readonly homeDir: string;
}

export interface RunOptions {
  /** The program and its arguments; argv[0] is looked up in PATH from `env`. */
  readonly argv: readonly string[];
  /** Variables added to the executor's base environment (the login environment of its user). */
  readonly env: Readonly<Record<string, string>>;
  /** Absolute working directory; it must exist. */
  readonly cwd: string;
  /** When it aborts, the whole process tree is stopped: TERM, then KILL after a short grace. */
  readonly signal: AbortSignal;
  /** Called once per output line, without its line ending; a last unterminated line is flushed at exit. */
  readonly onLine: (stream: "stdout" | "stderr", line: string) => void;
}

export interface RunResult {
  /** The exit code, or null when the process was ended by a signal. */
  readonly exitCode: number | null;
  readonly signal: string | null;
}

export interface Executor {
  /** For logs: "host", "ssh:ubuntu-latest@127.0.0.1:40022" … */
  readonly name: string;
  readonly platform: ExecutorPlatform;
  run(opts: RunOptions): Promise<RunResult>;
  /** Writes a file, creating its parent directories. */
  writeFile(path: string, data: string | Uint8Array, opts?: { mode?: number }): Promise<void>;
  /** Reads a file; rejects with FileNotFoundError when it does not exist. */
  readFile(path: string): Promise<Buffer>;
  /** Creates a directory and its parents. */
  mkdirp(path: string): Promise<void>;
  /** Copies a directory tree from this host into the executor (contents of `localDir` into `remoteDir`). */
  uploadDir(localDir: string, remoteDir: string, opts?: UploadOptions): Promise<void>;
  /**
   * Offers a service of this host to the machine: connections to 127.0.0.1:<port> inside it reach
   * `accept` here, one stream each. Nothing else of this host becomes reachable. Rejects with
   * ServeRefusedError when the machine will not listen (an SSH server that forbids forwarding),
   * and with ServePortTakenError when `opts.port` was asked for and cannot be had.
   */
  serve(accept: (stream: Duplex) => void, opts?: ServeOptions): Promise<ServedPort>;
  /** Ends the session (closes connections, never touches the VM). Idempotent. */
  close(): Promise<void>;
}

export interface ServeOptions {
  /**
   * The port to listen on inside the machine (a forge's own port, so that its URLs need no
   * rewriting). Default: any free port, chosen by the machine.
   */
  readonly port?: number;
}

/** A port inside the machine that leads to a service on this host. */
export interface ServedPort {
  /** The port on 127.0.0.1 inside the machine. */
  readonly port: number;
  /** Stops listening inside the machine; open connections end with the executor. */
  close(): Promise<void>;
}

export class ServeRefusedError extends Error {
  override readonly name = "ServeRefusedError";
  readonly code = "executor.serve-refused";
  constructor(
    readonly executor: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(
      `${executor} would not listen on 127.0.0.1 for gnomon (${detail}); the image's SSH server must allow ` +
        "remote port forwarding (OpenSSH: AllowTcpForwarding yes, the default)",
      options,
    );
  }
}

/**
 * The port asked for cannot be had inside the machine: something there listens on it already, it is
 * privileged (below 1024 for a user that is not root), or the machine refuses to listen at all.
 * Callers that can live with another port serve on any free one instead.
 */
export class ServePortTakenError extends Error {
  override readonly name = "ServePortTakenError";
  readonly code = "executor.serve-port-taken";
  constructor(
    readonly executor: string,
    readonly port: number,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(
      `${executor} would not listen on 127.0.0.1:${port} for gnomon (${detail}); the port is in use there, ` +
        "privileged, or forwarding is refused; serve on any free port instead",
      options,
    );
  }
}

export interface UploadOptions {
  readonly signal?: AbortSignal;
  /** Leaves out a path (relative to the source folder, `/`-separated); a skipped folder is not entered. */
  readonly skip?: (relativePath: string) => boolean;
}

export class FileNotFoundError extends Error {
  override readonly name = "FileNotFoundError";
  readonly code = "executor.file-not-found";
  constructor(
    readonly path: string,
    options?: ErrorOptions,
  ) {
    super(`no such file on the executor: ${path}`, options);
  }
}
