// The ssh executor: runs a job's processes in a VM over one SSH connection (ssh2) with the job's
// ephemeral key. Each run is an exec channel whose login shell is the session leader (OpenSSH
// makes every session its own session and process group), so an abort signals the whole group
// from a second channel: TERM, then KILL. Files go over one SFTP channel. It never touches the VM
// itself: closing the executor closes the connection, nothing more.
import { lstat, readdir, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { type Duplex, Transform } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { Client, ClientChannel, SFTPWrapper } from "ssh2";
import { create as createTar } from "tar";
import {
  type Executor,
  type ExecutorPlatform,
  FileNotFoundError,
  type RunOptions,
  type RunResult,
  type ServedPort,
  type ServeOptions,
  ServePortTakenError,
  ServeRefusedError,
  type UploadOptions,
} from "./executor.js";
import { LineSplitter } from "./lines.js";
import { ssh2 } from "./ssh2-module.js";

/** Where to connect; the VM layer's SshEndpoint has this shape. */
export interface SshTarget {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  /** OpenSSH or PEM private key, kept in memory only. */
  readonly privateKey: Buffer | string;
  /** Pin the server's host key (as first seen when the VM booted); omitted: accept any. */
  readonly hostKey?: Buffer;
}

export interface SshExecutorOptions {
  /** For the executor's name in logs: "ssh:<label>@<address>". */
  readonly label?: string;
  /** host:port for the name when `conn` is an open Client (which does not tell). */
  readonly address?: string;
  /** Time between TERM and KILL when a run is aborted. */
  readonly killGraceMs?: number;
  /** After the program exits, how long leftovers may hold its output open before they are killed. */
  readonly outputGraceMs?: number;
  readonly readyTimeoutMs?: number;
  readonly signal?: AbortSignal;
  /** How uploadDir sends files: "auto" (a tar stream into GNU or busybox tar, else SFTP) or "sftp". */
  readonly upload?: "auto" | "sftp";
}

/** A terminal for an interactive session (RFC 4254 pty-req), as an SSH client asks for one. */
export interface PtyRequest {
  readonly term: string;
  readonly rows: number;
  readonly cols: number;
  readonly width: number;
  readonly height: number;
  /** Terminal modes by name (ssh2's TerminalModes), passed on as they came. */
  readonly modes?: Readonly<Record<string, number>>;
}

/**
 * What a debug session runs in the VM: a command, or the user's login shell, with or without a
 * terminal; or the guest's SFTP server (`subsystem`), which then serves its files as the job's user.
 */
export interface SessionRequest {
  readonly command?: string;
  readonly pty?: PtyRequest;
  readonly subsystem?: "sftp";
}

/** The connection dropped while the executor was using it; the job's VM is probably gone. */
export class SshDisconnectedError extends Error {
  override readonly name = "SshDisconnectedError";
  readonly code = "executor.ssh-disconnected";
  constructor(
    readonly target: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(
      `The SSH connection to ${target} was lost (${detail}); the VM may have crashed or run out of memory.`,
      options,
    );
  }
}

/** A file operation the SSH server refused. */
export class SshFileError extends Error {
  override readonly name = "SshFileError";
  readonly code = "executor.ssh-file";
  constructor(
    readonly op: string,
    readonly path: string,
    detail: string,
    /** The SFTP status code, when the server sent one (2 = no such file). */
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(`${op} ${path} on the VM failed: ${detail}`, options);
  }
}

const SFTP_NO_SUCH_FILE = 2;
/** Where served ports listen inside the guest: its loopback, so only the guest itself reaches them. */
const GUEST_LOOPBACK = "127.0.0.1";
const DEFAULT_KILL_GRACE_MS = 5_000;
const DEFAULT_OUTPUT_GRACE_MS = 5_000;
const UPLOAD_CONCURRENCY = 8;
/** First stderr line of every run: the pid of the session leader, which is also its process group. */
const PID_MARK = "\u001egnomon-pid ";
const NO_CWD_MARK = "\u001egnomon-no-cwd";

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * Pure: the command line an exec channel runs for `opts`. The login shell reports its pid, changes
 * directory, and execs env (so the program keeps the shell's pid, the group leader) with the
 * variables; env looks argv[0] up in the PATH it was given.
 */
export function remoteCommand(argv: readonly string[], env: Readonly<Record<string, string>>, cwd: string): string {
  const assignments = Object.entries(env).map(([k, v]) => {
    if (k === "" || k.includes("=")) throw new TypeError(`environment variable name ${JSON.stringify(k)} is not valid`);
    return shellQuote(`${k}=${v}`);
  });
  if (argv[0]?.startsWith("-") || argv[0]?.includes("="))
    throw new TypeError(`program name ${JSON.stringify(argv[0])} cannot start with "-" or contain "="`);
  return [
    `printf '${PID_MARK}%s\\n' "$$" >&2;`,
    `cd -- ${shellQuote(cwd)} 2>/dev/null || { printf '${NO_CWD_MARK}\\n' >&2; exit 1; };`,
    "exec env",
    ...assignments,
    ...argv.map(shellQuote),
  ].join(" ");
}

/** Opens an authenticated connection, pinning the host key when the target has one. */
export function connectSsh(target: SshTarget, opts: { readyTimeoutMs?: number; signal?: AbortSignal } = {}) {
  return new Promise<Client>((resolve, reject) => {
    const client = new (ssh2().Client)();
    const onAbort = () => {
      client.end();
      reject(opts.signal?.reason);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    client.once("ready", () => {
      opts.signal?.removeEventListener("abort", onAbort);
      resolve(client);
    });
    client.once("error", (err) => {
      opts.signal?.removeEventListener("abort", onAbort);
      reject(err);
    });
    client.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      privateKey: target.privateKey,
      readyTimeout: opts.readyTimeoutMs ?? 20_000,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      hostVerifier: (key: Buffer) => !target.hostKey || target.hostKey.length === 0 || key.equals(target.hostKey),
    });
  });
}

/**
 * An executor on an open connection (the VM layer hands over the one it logged in with) or a
 * target to connect to. Probes the guest once for its OS, architecture and home directory, and
 * creates the work, temp and tool-cache directories under the home directory.
 */
export async function createSshExecutor(conn: Client | SshTarget, opts: SshExecutorOptions = {}): Promise<SshExecutor> {
  const open = conn instanceof ssh2().Client;
  const client = open ? conn : await connectSsh(conn, opts);
  const where = open ? (opts.address ?? "vm") : `${conn.host}:${conn.port}`;
  const ex = new SshExecutor(client, `ssh:${opts.label ?? "vm"}@${where}`, opts);
  try {
    await ex.probe(opts.signal);
  } catch (err) {
    await ex.close();
    throw err;
  }
  return ex;
}

export class SshExecutor implements Executor {
  #platform: ExecutorPlatform | undefined;
  #tarUpload = false;
  #sftp: Promise<SFTPWrapper> | undefined;
  #closed = false;
  #lost: Error | undefined;
  /** Variables of the machine itself (its egress proxy), under every run's own. */
  #machineEnv: Readonly<Record<string, string>> = {};
  /** Guest ports forwarded to this host: port → who takes its connections. */
  readonly #served = new Map<number, (stream: Duplex) => void>();
  readonly #life = new AbortController();
  readonly #killGraceMs: number;
  readonly #outputGraceMs: number;
  readonly #uploadMode: "auto" | "sftp";

  constructor(
    private readonly client: Client,
    readonly name: string,
    opts: SshExecutorOptions,
  ) {
    this.#killGraceMs = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.#outputGraceMs = opts.outputGraceMs ?? DEFAULT_OUTPUT_GRACE_MS;
    this.#uploadMode = opts.upload ?? "auto";
    const lost = (why: string) => (err?: Error) => {
      if (!this.#closed) this.#lost ??= new SshDisconnectedError(this.name, err?.message ?? why, { cause: err });
    };
    client.on("error", lost("connection error"));
    client.on("close", lost("connection closed"));
    // Connections to a port served into the guest; anything else the server offers is refused.
    client.on("tcp connection", (info, accept, reject) => {
      const take = this.#served.get(info.destPort);
      if (!take) {
        reject();
        return;
      }
      const stream = accept();
      stream.on("error", () => stream.destroy());
      take(stream);
    });
  }

  /**
   * Opens a session channel in the VM as the job's user, for a person debugging the job: their
   * command or a login shell, with a terminal when they asked for one, and the machine's own
   * variables (its egress proxy) set as for the job's steps. The caller owns the channel.
   */
  async openSession(req: SessionRequest): Promise<ClientChannel> {
    if (this.#lost) throw this.#lost;
    if (this.#closed) throw new Error(`${this.name} is closed`);
    const pty = req.pty ? { ...req.pty, modes: req.pty.modes ? { ...req.pty.modes } : undefined } : undefined;
    const assignments = Object.entries(this.#machineEnv).map(([k, v]) => shellQuote(`${k}=${v}`));
    // With variables to set, the shell or command is started through env (sshd lets a session set
    // only a few variables itself); $SHELL is the user's login shell, as sshd would start it.
    const command =
      assignments.length === 0
        ? req.command
        : req.command === undefined
          ? `exec env ${assignments.join(" ")} $SHELL -l`
          : `exec env ${assignments.join(" ")} $SHELL -c ${shellQuote(req.command)}`;
    return new Promise((resolve, reject) => {
      const done = (err: Error | undefined, channel: ClientChannel) => {
        if (err) reject(this.#lost ?? new SshDisconnectedError(this.name, err.message, { cause: err }));
        else resolve(channel);
      };
      if (req.subsystem) this.client.subsys(req.subsystem, done);
      else if (command === undefined) this.client.shell(pty ?? false, done);
      else this.client.exec(command, pty ? { pty } : {}, done);
    });
  }

  /** Gives every later run these variables, under its own (a run's env wins). */
  setMachineEnv(env: Readonly<Record<string, string>>): void {
    this.#machineEnv = { ...env };
  }

  async serve(accept: (stream: Duplex) => void, opts: ServeOptions = {}): Promise<ServedPort> {
    if (this.#lost) throw this.#lost;
    // Port 0 (the default): the guest's sshd picks a free port, so nothing the job runs can be in
    // the way. A port asked for is bound before any step runs, so only the guest's own services
    // (sshd on 22) or a privileged port can stand in its way; sshd does not say which.
    const wanted = opts.port ?? 0;
    const port = await new Promise<number>((resolve, reject) => {
      this.client.forwardIn(GUEST_LOOPBACK, wanted, (err, bound) => {
        if (!err) resolve(bound || wanted);
        else if (wanted !== 0) reject(new ServePortTakenError(this.name, wanted, err.message, { cause: err }));
        else reject(new ServeRefusedError(this.name, err.message, { cause: err }));
      });
    });
    this.#served.set(port, accept);
    return {
      port,
      close: async () => {
        this.#served.delete(port);
        if (this.#closed || this.#lost) return;
        await new Promise<void>((resolve) => this.client.unforwardIn(GUEST_LOOPBACK, port, () => resolve()));
      },
    };
  }

  get platform(): ExecutorPlatform {
    if (!this.#platform) throw new Error("SshExecutor used before probe(); create it with createSshExecutor()");
    return this.#platform;
  }

  /** Reads uname and $HOME and creates the job directories. */
  async probe(signal?: AbortSignal): Promise<void> {
    const out = await this.#capture(
      'uname -s -m; printf "%s\\n" "$HOME"; mkdir -p "$HOME/work/_temp" "$HOME/work/_tool"; command -v tar >/dev/null 2>&1 && echo tar',
      signal,
    );
    const [uname = "", home = "", tar = ""] = out.stdout.split("\n");
    const [sys = "", machine = ""] = uname.trim().split(/\s+/);
    if (out.code !== 0 || !home.startsWith("/"))
      throw new SshFileError("probe", "$HOME", `the guest answered ${JSON.stringify(out.stdout + out.stderr)}`);
    // GNU and busybox tar read what node-tar writes; other systems' tars get files over SFTP.
    this.#tarUpload = this.#uploadMode === "auto" && tar.trim() === "tar" && sys === "Linux";
    this.#platform = {
      os: runnerOs(sys),
      arch: runnerArch(machine),
      workDir: `${home}/work`,
      tempDir: `${home}/work/_temp`,
      toolCacheDir: `${home}/work/_tool`,
      homeDir: home,
    };
  }

  async run(opts: RunOptions): Promise<RunResult> {
    if (opts.argv.length === 0) throw new TypeError("run() needs a program: argv is empty");
    if (opts.signal.aborted) return { exitCode: null, signal: "SIGTERM" };
    const command = remoteCommand(opts.argv, { ...this.#machineEnv, ...opts.env }, opts.cwd);
    const channel = await this.#exec(command);
    return new Promise<RunResult>((resolve, reject) => {
      let pgid: number | undefined;
      let exit: RunResult | undefined;
      let noCwd = false;
      let aborted = false;
      let outputTimer: NodeJS.Timeout | undefined;
      const out = new LineSplitter((line) => opts.onLine("stdout", line));
      const err = new LineSplitter((line) => {
        if (pgid === undefined && line.startsWith(PID_MARK)) {
          pgid = Number(line.slice(PID_MARK.length));
          if (aborted) void this.#killGroup(pgid);
          return;
        }
        if (line === NO_CWD_MARK) {
          noCwd = true;
          return;
        }
        opts.onLine("stderr", line);
      });
      const onAbort = () => {
        aborted = true;
        if (pgid !== undefined && !exit) void this.#killGroup(pgid);
      };
      opts.signal.addEventListener("abort", onAbort, { once: true });
      channel.on("data", (b: Buffer) => out.push(b));
      channel.stderr.on("data", (b: Buffer) => err.push(b));
      channel.on("exit", (code: number | null, signalName?: string) => {
        exit = { exitCode: code ?? null, signal: signalName ? `SIG${signalName}` : null };
        // Something the program started in the background may still hold its output open.
        outputTimer = setTimeout(() => {
          if (pgid !== undefined) void this.#signalGroup(pgid, "KILL");
        }, this.#outputGraceMs);
      });
      channel.on("close", () => {
        clearTimeout(outputTimer);
        opts.signal.removeEventListener("abort", onAbort);
        out.end();
        err.end();
        if (noCwd) reject(new FileNotFoundError(opts.cwd));
        else if (exit) resolve(exit);
        else if (aborted) resolve({ exitCode: null, signal: "SIGKILL" });
        else reject(this.#lost ?? new SshDisconnectedError(this.name, "the channel closed without an exit status"));
      });
    });
  }

  async writeFile(path: string, data: string | Uint8Array, opts?: { mode?: number }): Promise<void> {
    await this.mkdirp(posix.dirname(path));
    const sftp = await this.#sftpSession();
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
    await sftpCall<void>((cb) => sftp.writeFile(path, bytes, cb), "write", path);
    if (opts?.mode !== undefined) await sftpCall<void>((cb) => sftp.chmod(path, opts.mode!, cb), "chmod", path);
  }

  async readFile(path: string): Promise<Buffer> {
    const sftp = await this.#sftpSession();
    try {
      return await sftpCall<Buffer>((cb) => sftp.readFile(path, cb), "read", path);
    } catch (err) {
      if (sftpCode(err) === SFTP_NO_SUCH_FILE) throw new FileNotFoundError(path, { cause: err });
      // Reading a directory fails generically; to callers it is "no such file" as on the host.
      const st = await sftpCall<{ isDirectory(): boolean }>((cb) => sftp.stat(path, cb), "stat", path).catch(
        () => undefined,
      );
      if (st?.isDirectory()) throw new FileNotFoundError(path, { cause: err });
      throw err;
    }
  }

  async mkdirp(path: string): Promise<void> {
    const sftp = await this.#sftpSession();
    await mkdirpWith(sftp, posix.normalize(path));
  }

  async uploadDir(localDir: string, remoteDir: string, opts: UploadOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    if (this.#tarUpload) return this.#uploadTar(localDir, remoteDir, opts);
    return this.#uploadSftp(localDir, remoteDir, opts);
  }

  /**
   * One tar stream into `tar -x` in the guest: a working tree of thousands of files costs one
   * channel, where SFTP costs several round trips per file.
   */
  async #uploadTar(localDir: string, remoteDir: string, { signal, skip }: UploadOptions): Promise<void> {
    const channel = await this.#exec(
      `mkdir -p ${shellQuote(remoteDir)} && exec tar -x -p -f - -C ${shellQuote(remoteDir)}`,
    );
    const stream = createTar(
      {
        cwd: localDir,
        portable: true,
        filter: (path, stat) => {
          const rel = path.replace(/^\.\/?/, "");
          if (rel !== "" && skip?.(rel)) return false;
          // Sockets, FIFOs and devices in a working tree cannot be copied and mean nothing to a job.
          const s = stat as { isFile?: () => boolean; isDirectory?: () => boolean; isSymbolicLink?: () => boolean };
          return Boolean(s.isFile?.() || s.isDirectory?.() || s.isSymbolicLink?.());
        },
      },
      ["."],
    );
    let stderr = "";
    channel.stderr.on("data", (b: Buffer) => {
      if (stderr.length < 4_000) stderr += b.toString("utf8");
    });
    const onAbort = () => channel.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const code = await new Promise<number | null>((resolve, reject) => {
        channel.on("exit", (c: number | null) => resolve(c ?? null));
        channel.on("close", () => resolve(null));
        stream.on("error", reject);
        // node-tar writes a header and each file as separate small chunks; sent as they come, each
        // is one SSH packet the guest's sshd handles alone. Whole 256 KiB writes are many times faster.
        stream.pipe(coalesce(256 * 1024)).pipe(channel);
      });
      signal?.throwIfAborted();
      if (code !== 0)
        throw new SshFileError(
          "upload",
          remoteDir,
          `tar in the guest exited with ${code}: ${stderr.trim() || "no message"}`,
        );
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async #uploadSftp(localDir: string, remoteDir: string, { signal, skip }: UploadOptions): Promise<void> {
    const sftp = await this.#sftpSession();
    await mkdirpWith(sftp, remoteDir);
    const files: { local: string; remote: string; mode: number }[] = [];
    const links: { target: string; remote: string }[] = [];
    const walk = async (local: string, remote: string, rel: string): Promise<void> => {
      for (const e of await readdir(local, { withFileTypes: true })) {
        const l = join(local, e.name);
        const r = posix.join(remote, e.name);
        const relPath = rel ? `${rel}/${e.name}` : e.name;
        if (skip?.(relPath)) continue;
        if (e.isDirectory()) {
          await sftpCall<void>((cb) => sftp.mkdir(r, cb), "mkdir", r).catch(async (err) => {
            if (!(await isRemoteDir(sftp, r))) throw err;
          });
          await walk(l, r, relPath);
        } else if (e.isSymbolicLink()) links.push({ target: await readlink(l), remote: r });
        else if (e.isFile()) files.push({ local: l, remote: r, mode: (await lstat(l)).mode & 0o7777 });
      }
    };
    await walk(localDir, remoteDir, "");
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        signal?.throwIfAborted();
        const f = files[next++]!;
        await sftpCall<void>((cb) => sftp.fastPut(f.local, f.remote, { mode: f.mode }, cb), "upload", f.remote);
        await sftpCall<void>((cb) => sftp.chmod(f.remote, f.mode, cb), "chmod", f.remote);
      }
    };
    await Promise.all(Array.from({ length: Math.min(UPLOAD_CONCURRENCY, files.length) }, worker));
    for (const link of links) {
      await sftpCall<void>((cb) => sftp.unlink(link.remote, cb), "unlink", link.remote).catch(() => undefined);
      await sftpCall<void>((cb) => sftp.symlink(link.target, link.remote, cb), "symlink", link.remote);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#life.abort();
    this.client.end();
  }

  #exec(command: string): Promise<ClientChannel> {
    if (this.#lost) return Promise.reject(this.#lost);
    if (this.#closed) return Promise.reject(new Error(`${this.name} is closed`));
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, channel) => {
        if (err) reject(this.#lost ?? new SshDisconnectedError(this.name, err.message, { cause: err }));
        else resolve(channel);
      });
    });
  }

  /** Runs a short helper command and collects its output. */
  async #capture(
    command: string,
    signal?: AbortSignal,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    signal?.throwIfAborted();
    const channel = await this.#exec(command);
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let code: number | null = null;
      channel.on("data", (b: Buffer) => out.push(b));
      channel.stderr.on("data", (b: Buffer) => err.push(b));
      channel.on("exit", (c: number | null) => {
        code = c;
      });
      channel.on("close", () =>
        resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }),
      );
    });
  }

  #signalGroup(pgid: number, sig: "TERM" | "KILL"): Promise<unknown> {
    // The group first; if the shell was not a group leader (a server that does not make each
    // session its own group), at least the process itself.
    return this.#capture(`kill -${sig} -${pgid} 2>/dev/null || kill -${sig} ${pgid} 2>/dev/null; true`).catch(
      () => undefined,
    );
  }

  async #killGroup(pgid: number): Promise<void> {
    await this.#signalGroup(pgid, "TERM");
    const waited = await sleep(this.#killGraceMs, true, { signal: this.#life.signal }).catch(() => false);
    if (!waited) return;
    const alive = await this.#capture(`kill -0 -${pgid} 2>/dev/null && echo alive`).catch(() => undefined);
    if (alive?.stdout.includes("alive")) await this.#signalGroup(pgid, "KILL");
  }

  #sftpSession(): Promise<SFTPWrapper> {
    if (this.#lost) return Promise.reject(this.#lost);
    this.#sftp ??= new Promise<SFTPWrapper>((resolve, reject) => {
      this.client.sftp((err, sftp) => {
        if (err) {
          this.#sftp = undefined;
          reject(
            new SshFileError("open sftp", this.name, `${err.message}; the guest needs an sftp subsystem`, undefined, {
              cause: err,
            }),
          );
        } else {
          sftp.on("close", () => {
            this.#sftp = undefined;
          });
          resolve(sftp);
        }
      });
    });
    return this.#sftp;
  }
}

function sftpCode(err: unknown): number | undefined {
  if (err instanceof SshFileError) return err.status;
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

function sftpCall<T>(op: (cb: (err: Error | null | undefined, value: T) => void) => void, what: string, path: string) {
  return new Promise<T>((resolve, reject) => {
    op((err, value) => {
      if (err) reject(new SshFileError(what, path, err.message, sftpCode(err), { cause: err }));
      else resolve(value);
    });
  });
}

async function isRemoteDir(sftp: SFTPWrapper, path: string): Promise<boolean> {
  return sftpCall<{ isDirectory(): boolean }>((cb) => sftp.stat(path, cb), "stat", path).then(
    (st) => st.isDirectory(),
    () => false,
  );
}

/** mkdir -p over SFTP: try the path, create missing parents on "no such file", accept existing dirs. */
async function mkdirpWith(sftp: SFTPWrapper, path: string): Promise<void> {
  if (path === "/" || path === "." || path === "") return;
  try {
    await sftpCall<void>((cb) => sftp.mkdir(path, cb), "mkdir", path);
  } catch (err) {
    if (sftpCode(err) === SFTP_NO_SUCH_FILE) {
      await mkdirpWith(sftp, posix.dirname(path));
      await sftpCall<void>((cb) => sftp.mkdir(path, cb), "mkdir", path).catch(async (again) => {
        if (!(await isRemoteDir(sftp, path))) throw again;
      });
    } else if (!(await isRemoteDir(sftp, path))) throw err;
  }
}

/** `runner.os` for a `uname -s`. */
export function runnerOs(uname: string): string {
  switch (uname.trim()) {
    case "Linux":
      return "Linux";
    case "SunOS":
      return "illumos";
    case "FreeBSD":
      return "FreeBSD";
    case "OpenBSD":
      return "OpenBSD";
    case "NetBSD":
      return "NetBSD";
    case "Darwin":
      return "macOS";
    default:
      return uname.trim() || "unknown";
  }
}

/** Joins small chunks into writes of about `bytes`, flushing the rest at the end. */
function coalesce(bytes: number): Transform {
  let parts: Buffer[] = [];
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      parts.push(chunk);
      size += chunk.length;
      if (size >= bytes) {
        this.push(Buffer.concat(parts, size));
        parts = [];
        size = 0;
      }
      done();
    },
    flush(done) {
      if (size > 0) this.push(Buffer.concat(parts, size));
      done();
    },
  });
}

/** `runner.arch` for a `uname -m` (illumos reports i86pc on 64-bit x86). */
export function runnerArch(machine: string): string {
  switch (machine.trim()) {
    case "x86_64":
    case "amd64":
    case "i86pc":
      return "X64";
    case "aarch64":
    case "arm64":
      return "ARM64";
    case "i386":
    case "i686":
      return "X86";
    default:
      return machine.trim().toUpperCase() || "unknown";
  }
}
