// One VM from spawn to teardown: creates the overlay and seed, starts QEMU with the args qemu-args.ts
// computes, reads the serial console, and waits for SSH while telling the boot phases apart (no
// serial output / kernel booted but no network / SSH refused / auth failed). It owns the QEMU
// process, the overlay and the seed: destroy() removes all three on every path, and a process
// exit kills what is left; QEMU dies with this process even when it is killed (parent-death.ts).
// Decisions live in qemu-args.ts and machine-state.ts; this is the shell.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "ssh2";
import { withTimeout } from "../lifecycle/abort.js";
import { toError } from "../lifecycle/to-error.js";
import type { Logger } from "../telemetry/log.js";
import { detectAccel } from "./accel.js";
import type { ImageSpec } from "./catalog.js";
import { type BootPhase, BootTimeoutError, QemuExitedError, ToolMissingError } from "./errors.js";
import { type StopReason, transition, type VmEvent, type VmState } from "./machine-state.js";
import { createOverlay } from "./overlay.js";
import { parentDeathHelper, SETPRIV_EXEC_ENOENT, withParentDeathSignal } from "./parent-death.js";
import { acquirePort, releasePort } from "./ports.js";
import { type Accel, qemuArgs, qemuBinary, type RunPaths } from "./qemu-args.js";
import { QmpClient } from "./qmp.js";
import { seedDocuments, writeSeed } from "./seed.js";
import { SerialConsole } from "./serial-console.js";
import { generateJobKey, type JobKey } from "./ssh-key.js";
import { packageOf } from "./tool.js";

/** What happens before and during boot, for provisioning events; the names match the contract's. */
/** The egress proxy's variables (set by the orchestrator on every run), kept across sudo. */
const PROXY_VARIABLES = ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"];

export type ProvisioningStep = "creating-disk" | BootPhase | "ready";

/** Reported right after QEMU started, so the caller can record the VM for reaping after a crash. */
export interface SpawnedVm {
  readonly id: string;
  readonly pid: number;
  readonly sshPort: number;
  readonly dir: string;
  readonly overlay: string;
  readonly seed: string;
  readonly qmpSocket: string;
}

export interface MachineOptions {
  /** Folder for per-VM run folders (overlay, seed, QMP socket), e.g. <dataDir>/vms. */
  readonly runDir: string;
  readonly signal?: AbortSignal;
  readonly logger?: Logger;
  /** Default: KVM when it really works on this host, TCG otherwise. */
  readonly accel?: Accel;
  readonly onSpawn?: (vm: SpawnedVm) => void | Promise<void>;
  readonly onPhase?: (step: ProvisioningStep) => void;
  readonly onSerialLine?: (line: string) => void;
  /** Serial lines kept for error messages; default 200. */
  readonly serialLines?: number;
  /** Read-only disks attached after the seed and shared with other VMs (Node.js runtime disks); never removed. */
  readonly readOnlyDisks?: readonly string[];
}

export interface SshEndpoint {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  /** The job's private key (OpenSSH format), in memory only; wiped by destroy(). */
  readonly privateKey: Buffer;
  /** The guest's host key as first seen at boot; pin it when connecting again. */
  readonly hostKey: Buffer;
}

export interface Machine {
  readonly id: string;
  readonly image: ImageSpec;
  readonly accel: Accel;
  readonly pid: number;
  readonly ssh: SshEndpoint;
  /** QEMU start to SSH login, in ms. */
  readonly bootMs: number;
  readonly state: VmState;
  /** Resolves with QEMU's exit code when it ends, for whatever reason. */
  readonly exited: Promise<number | null>;
  /** The last serial console lines. */
  serialTail(n?: number): string[];
  /** The authenticated SSH connection made during boot; the first caller owns it, later ones get undefined. */
  takeSshClient(): Client | undefined;
  /**
   * The login key becomes `key` (a pooled VM handed to a job, vm/identity.ts); the old private key
   * is wiped. The guest must already accept `key`: this changes only what gnomon logs in with.
   */
  replaceKey(key: JobKey): void;
  /** QMP quit (after an optional ACPI power-down grace), then SIGKILL; removes overlay and seed. Idempotent. */
  destroy(opts?: { graceMs?: number; why?: StopReason }): Promise<void>;
}

/** Boots `image` and resolves once the job key logs in over SSH; on any failure nothing is left behind. */
export async function bootMachine(image: ImageSpec, opts: MachineOptions): Promise<Machine> {
  const vm = new QemuMachine(image, opts);
  try {
    await vm.boot();
    return vm;
  } catch (err) {
    const why: StopReason = opts.signal?.aborted
      ? "cancelled"
      : err instanceof BootTimeoutError
        ? "boot-timeout"
        : "boot-failed";
    await vm.destroy({ why });
    throw err;
  }
}

const HOSTFWD_FAILED = /host forwarding rule/i;
const PORT_ATTEMPTS = 5;
const PROBE_INTERVAL_MS = 250;
/**
 * How long one probe waits for the guest's first bytes. Shorter finds a just-started SSH server
 * sooner (a probe sent before the guest's network was up only hears back on a SYN retransmit);
 * longer tolerates a loaded guest that accepts slowly.
 */
const SILENT_PROBE_MS = 1_500;

class QemuMachine implements Machine {
  readonly id = randomBytes(6).toString("hex");
  readonly #opts: MachineOptions;
  readonly #log: Logger | undefined;
  readonly #dir: string;
  readonly #paths: RunPaths;
  #key = generateJobKey(`gnomon-vm-${this.id}`);
  readonly #serial: SerialConsole;
  #state: VmState = { t: "creating" };
  #accel: Accel = "tcg";
  #child: ChildProcess | undefined;
  #exitedAc = new AbortController();
  #exited: Promise<number | null> = Promise.resolve(null);
  #stderr = "";
  #port = 0;
  #client: Client | undefined;
  #hostKey: Buffer = Buffer.alloc(0);
  #spawnedAt = 0;
  #bootMs = 0;
  #destroying: Promise<void> | undefined;
  #spawnError: Error | undefined;

  constructor(
    readonly image: ImageSpec,
    opts: MachineOptions,
  ) {
    this.#opts = opts;
    this.#log = opts.logger?.child({ vm: this.id, image: image.name });
    this.#dir = join(opts.runDir, this.id);
    const sock = join(this.#dir, "qmp.sock");
    this.#paths = {
      overlay: join(this.#dir, "disk.qcow2"),
      seed: join(this.#dir, image.seedFormat === "vfat" ? "seed.img" : "seed.iso"),
      // A unix socket path must fit in 108 bytes; a deep runDir falls back to the temp folder.
      qmpSocket: sock.length < 100 ? sock : join(tmpdir(), `gnomon-${this.id}.qmp`),
      ...(image.boot.method === "uefi" ? { firmwareVars: join(this.#dir, "OVMF_VARS.fd") } : {}),
      ...(opts.readOnlyDisks?.length ? { readOnlyDisks: opts.readOnlyDisks } : {}),
    };
    this.#serial = new SerialConsole(opts.serialLines ?? 200, opts.onSerialLine);
  }

  get state(): VmState {
    return this.#state;
  }
  get accel(): Accel {
    return this.#accel;
  }
  get pid(): number {
    return this.#child?.pid ?? 0;
  }
  get bootMs(): number {
    return this.#bootMs;
  }
  get exited(): Promise<number | null> {
    return this.#exited;
  }
  get ssh(): SshEndpoint {
    return {
      host: "127.0.0.1",
      port: this.#port,
      username: this.image.login.user,
      privateKey: this.#key.privateKey,
      hostKey: this.#hostKey,
    };
  }

  serialTail(n?: number): string[] {
    return this.#serial.tail(n);
  }

  replaceKey(key: JobKey): void {
    const old = this.#key;
    this.#key = key;
    old.privateKey.fill(0);
  }

  takeSshClient(): Client | undefined {
    const c = this.#client;
    this.#client = undefined;
    return c;
  }

  async boot(): Promise<void> {
    const { signal } = this.#opts;
    signal?.throwIfAborted();
    track(this.id, this.#dir, this.#paths.qmpSocket, () => this.#child?.pid);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    this.#opts.onPhase?.("creating-disk");
    const docs = seedDocuments({
      instanceId: `gnomon-${this.id}`,
      hostname: `gnomon-${this.id}`,
      user: this.image.login.user,
      shell: this.image.login.shell,
      publicKey: this.#key.publicKey,
      sudoKeepsEnv: this.image.network === "nat" ? PROXY_VARIABLES : undefined,
    });
    const binary = qemuBinary(this.image.arch);
    // allSettled: on a failure nothing may still be writing into the run folder when teardown removes it.
    const [accel, ...made] = await Promise.allSettled([
      this.#opts.accel ?? detectAccel(binary, this.#opts.logger),
      createOverlay(this.image.disk.path, this.image.disk.format, this.#paths.overlay, this.image.diskGiB, signal),
      writeSeed(this.#paths.seed, docs, this.image.seedFormat, signal),
      this.image.boot.method === "uefi" && this.#paths.firmwareVars
        ? copyFile(this.image.boot.vars, this.#paths.firmwareVars)
        : undefined,
    ]);
    for (const r of [accel, ...made]) if (r.status === "rejected") throw r.reason;
    this.#accel = (accel as PromiseFulfilledResult<Accel>).value;

    for (let attempt = 1; ; attempt++) {
      this.#port = await acquirePort();
      await this.#spawn(binary);
      try {
        await this.#awaitLogin();
        break;
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) throw err;
        this.#log?.debug({ port: this.#port }, "vm ssh port was taken, retrying with another");
        releasePort(this.#port);
      }
    }
    this.#bootMs = Date.now() - this.#spawnedAt;
    this.#apply({ e: "ssh-ready" });
    this.#opts.onPhase?.("ready");
    this.#log?.info({ bootMs: this.#bootMs, accel: this.#accel, port: this.#port }, "vm ready");
  }

  async #spawn(binary: string): Promise<void> {
    const args = qemuArgs(this.image, this.#paths, { id: this.id, sshPort: this.#port, accel: this.#accel });
    this.#stderr = "";
    this.#exitedAc = new AbortController();
    const setpriv = await parentDeathHelper(this.#opts.logger);
    const run = withParentDeathSignal(binary, args, setpriv);
    const child = spawn(run.command, run.args, { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      child.on("error", (err: NodeJS.ErrnoException) => {
        this.#stderr += `${err.message}\n`;
        if (err.code === "ENOENT") this.#spawnError = new ToolMissingError(binary, packageOf(binary), { cause: err });
        this.#serial.end();
        this.#apply({ e: "exited", exitCode: null });
        this.#exitedAc.abort();
        resolve(null);
      });
      child.on("exit", (code) => {
        // Through setpriv a missing QEMU is not ENOENT from spawn but setpriv's exit code (QEMU never uses it).
        if (setpriv && code === SETPRIV_EXEC_ENOENT) this.#spawnError = new ToolMissingError(binary, packageOf(binary));
        this.#serial.end();
        this.#apply({ e: "exited", exitCode: code });
        this.#exitedAc.abort();
        resolve(code);
      });
    });
    child.stdout?.on("data", (b: Buffer) => {
      this.#serial.feed(b);
      // Any console output: the firmware or kernel is running.
      if (this.#state.t === "booting" && this.#state.phase === "booting") this.#advance("kernel");
    });
    child.stderr?.on("data", (b: Buffer) => {
      this.#stderr = (this.#stderr + b.toString("utf8")).slice(-4096);
    });
    this.#spawnedAt = Date.now();
    if (child.pid === undefined) {
      await this.#exited;
      throw this.#spawnError ?? this.#exitError("booting");
    }
    this.#apply({ e: "spawned", pid: child.pid, sshPort: this.#port });
    this.#opts.onPhase?.("booting");
    await this.#opts.onSpawn?.({
      id: this.id,
      pid: child.pid,
      sshPort: this.#port,
      dir: this.#dir,
      overlay: this.#paths.overlay,
      seed: this.#paths.seed,
      qmpSocket: this.#paths.qmpSocket,
    });
  }

  /** Probes the forwarded port until the job key logs in, QEMU exits, the deadline passes or we are cancelled. */
  async #awaitLogin(): Promise<void> {
    const deadline = this.#spawnedAt + this.image.bootTimeoutMs;
    const { signal } = this.#opts;
    for (;;) {
      if (this.#exitedAc.signal.aborted) {
        if (HOSTFWD_FAILED.test(this.#stderr)) throw new PortTakenError();
        throw this.#spawnError ?? this.#exitError(this.#phase());
      }
      signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (left <= 0)
        throw new BootTimeoutError(
          this.image.label,
          this.image.name,
          this.#phase(),
          this.image.bootTimeoutMs,
          this.#serial.tail(20),
        );
      const result = await this.#tryLogin(Math.min(left, 5_000));
      if (result === "ready") return;
      if (result === "refused") this.#advance("network");
      if (result === "auth-failed") this.#advance("ssh");
      const wake = withTimeout(Math.max(1, deadline - Date.now()), this.#exitedAc.signal, signal);
      await sleep(PROBE_INTERVAL_MS, undefined, { signal: wake }).catch(() => undefined);
    }
  }

  /**
   * One attempt: connect to the forwarded port and wait for the server's first bytes. Silence means
   * the guest's network is not up (QEMU accepted, the guest never answered); a close without data
   * means the guest refused port 22; an SSH banner gets a login with the job key on the same socket.
   */
  async #tryLogin(timeoutMs: number): Promise<"ready" | "silent" | "refused" | "auth-failed" | "not-listening"> {
    const sock = connect({ host: "127.0.0.1", port: this.#port });
    const first = await new Promise<Buffer | "closed" | "timeout" | "not-listening">((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), Math.min(timeoutMs, SILENT_PROBE_MS));
      const done = (v: Buffer | "closed" | "timeout" | "not-listening") => {
        clearTimeout(timer);
        sock.removeAllListeners("data");
        resolve(v);
      };
      sock.once("data", (b: Buffer) => {
        sock.pause();
        done(b);
      });
      sock.once("error", (err: NodeJS.ErrnoException) =>
        done(err.code === "ECONNREFUSED" ? "not-listening" : "closed"),
      );
      sock.once("close", () => done("closed"));
    });
    if (!Buffer.isBuffer(first)) {
      sock.destroy();
      return first === "timeout" ? "silent" : first === "closed" ? "refused" : "not-listening";
    }
    if (!first.toString("latin1").startsWith("SSH-")) {
      sock.destroy();
      return "silent";
    }
    this.#advance("ssh");
    sock.removeAllListeners();
    sock.unshift(first);
    return this.#login(sock, timeoutMs);
  }

  #login(sock: Socket, timeoutMs: number): Promise<"ready" | "auth-failed" | "refused"> {
    // ssh2 loaded on first use (it costs ~15 MB; see executor/ssh2-module.ts, which this stage may not import).
    const client = new (createRequire(import.meta.url)("ssh2") as typeof import("ssh2")).Client();
    return new Promise((resolve) => {
      let settled = false;
      const settle = (v: "ready" | "auth-failed" | "refused") => {
        if (settled) return;
        settled = true;
        client.removeAllListeners("error");
        client.removeAllListeners("close");
        if (v === "ready") {
          // Until someone takes the connection, a late error only ends it; the taker listens itself.
          client.on("error", (err) => this.#log?.debug({ err }, "vm boot connection error"));
          this.#client = client;
        } else client.end();
        resolve(v);
      };
      client.once("ready", () => settle("ready"));
      client.once("error", (err: Error & { level?: string }) =>
        settle(err.level === "client-authentication" ? "auth-failed" : "refused"),
      );
      client.once("close", () => settle("refused"));
      client.connect({
        sock,
        username: this.image.login.user,
        privateKey: this.#key.privateKey,
        readyTimeout: Math.max(timeoutMs, 1_000),
        keepaliveInterval: 15_000,
        keepaliveCountMax: 4,
        hostVerifier: (key: Buffer) => {
          this.#hostKey = Buffer.from(key);
          return true;
        },
      });
    });
  }

  #phase(): BootPhase {
    return this.#state.t === "booting" ? this.#state.phase : "booting";
  }

  #advance(phase: BootPhase): void {
    const before = this.#phase();
    this.#apply({ e: "phase", phase });
    const after = this.#phase();
    if (after !== before) this.#opts.onPhase?.(after);
  }

  #apply(ev: VmEvent): void {
    const prev = this.#state;
    const next = transition(prev, ev);
    this.#state = next;
    const changed = prev.t !== next.t || (prev.t === "booting" && next.t === "booting" && prev.phase !== next.phase);
    if (changed)
      this.#log?.debug(
        { from: prev.t, to: next.t, ...(next.t === "booting" ? { phase: next.phase } : {}) },
        "vm state changed",
      );
  }

  #exitError(phase: BootPhase): QemuExitedError {
    const code = this.#state.t === "gone" ? this.#state.exitCode : null;
    return new QemuExitedError(this.image.label, this.image.name, phase, code, this.#stderr, this.#serial.tail(20));
  }

  destroy(opts: { graceMs?: number; why?: StopReason } = {}): Promise<void> {
    this.#destroying ??= this.#teardown(opts.graceMs ?? 0, opts.why ?? "destroyed");
    return this.#destroying;
  }

  async #teardown(graceMs: number, why: StopReason): Promise<void> {
    this.#apply({ e: "stop", why });
    this.#client?.end();
    this.#client = undefined;
    const child = this.#child;
    try {
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        if (graceMs > 0 && (await this.#qmp((q) => q.powerdown(), graceMs))) await this.#exitWithin(graceMs);
        // QMP quit when QMP answers (it may not yet, right after spawn); SIGKILL otherwise or if quit hangs.
        const ended =
          (await this.#exitWithin(0)) || ((await this.#qmp((q) => q.quit(), 2_000)) && (await this.#exitWithin(2_000)));
        if (!ended) {
          child.kill("SIGKILL");
          await this.#exitWithin(10_000);
        }
      }
    } catch (err) {
      this.#log?.warn({ err: toError(err) }, "vm teardown: stopping QEMU failed, killing it");
      child?.kill("SIGKILL");
    } finally {
      await rm(this.#dir, { recursive: true, force: true });
      await rm(this.#paths.qmpSocket, { force: true });
      if (this.#port) releasePort(this.#port);
      untrack(this.id);
      this.#key.privateKey.fill(0);
      this.#log?.debug({ why }, "vm destroyed");
    }
  }

  /** Runs one QMP action; false when QMP could not be reached. */
  async #qmp(action: (q: QmpClient) => Promise<void>, timeoutMs: number): Promise<boolean> {
    let q: QmpClient | undefined;
    try {
      q = await QmpClient.connect(this.#paths.qmpSocket, Math.min(timeoutMs, 2_000));
      await within(action(q), timeoutMs, undefined);
      return true;
    } catch (err) {
      this.#log?.debug({ err: toError(err) }, "vm teardown: QMP unavailable");
      return false;
    } finally {
      q?.close();
    }
  }

  async #exitWithin(ms: number): Promise<boolean> {
    if (this.#exitedAc.signal.aborted) return true;
    if (ms <= 0) return false;
    return within(
      this.#exited.then(() => true),
      ms,
      false,
    );
  }
}

/** `p`'s value, or `fallback` after `ms`; the timer never outlives the race. */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  const ac = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, fallback, { signal: ac.signal })]);
  } finally {
    ac.abort();
  }
}

/** QEMU exited at once because its hostfwd port was taken: retried with another port. */
class PortTakenError extends Error {
  override readonly name = "PortTakenError";
}

// Every VM of this process, so an exit (normal, uncaught error, process.exit) still kills QEMU and
// deletes the overlay and seed. A SIGKILL of this process leaves them to the orchestrator's reaper.
const live = new Map<string, { dir: string; qmp: string; pid: () => number | undefined }>();
let exitHook = false;

function track(id: string, dir: string, qmp: string, pid: () => number | undefined): void {
  live.set(id, { dir, qmp, pid });
  if (exitHook) return;
  exitHook = true;
  process.once("exit", () => {
    for (const vm of live.values()) {
      const p = vm.pid();
      if (p !== undefined) {
        try {
          process.kill(p, "SIGKILL");
        } catch {
          // already gone
        }
      }
      rmSync(vm.dir, { recursive: true, force: true });
      rmSync(vm.qmp, { force: true });
    }
  });
}

function untrack(id: string): void {
  live.delete(id);
}
