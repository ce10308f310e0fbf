// The debug SSH endpoint, as a Service: one ssh2 server on orchestrator.debugSsh.listen for every
// job this orchestrator holds. The SSH username names the held job; only the job's actor gets in,
// with a key the forge lists for them, by public key and nothing else; failed logins are throttled
// per source address and per job. Sessions are carried into the VM over gnomon's own connection
// (session-proxy.ts); port, agent and X11 forwarding are refused. It never exposes a VM itself, and
// it never decides whether a job is held: run-job asks (ask), then holds the job here (hold).
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import type { AuthContext, ClientInfo, Connection, Server } from "ssh2";
import type { JobResult } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";
import { ssh2 } from "../executor/ssh2-module.js";
import { deferred, type Service, type ServiceStatus } from "../lifecycle/service.js";
import { toError } from "../lifecycle/to-error.js";
import type { Store } from "../store/store.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import type { DebugSshOutcome, Metrics } from "../telemetry/metrics.js";
import { fetchActorKeys } from "./actor-keys.js";
import { ADDRESS_LIMIT, type AttemptLimit, AttemptLimiter, JOB_LIMIT } from "./attempt-limiter.js";
import { actorOf, apiUrlOf, type DebugAsk, type DebugSshPolicy, debugAskOf, keysUrlOf } from "./debug-request.js";
import { DebugWindow } from "./debug-window.js";
import type { HostKey } from "./host-key.js";
import type { OpenSession } from "./session-proxy.js";

export interface DebugSshServerOptions {
  /** host:port; ":2222" listens on every address, port 0 on a free one (see `port`). */
  readonly listen: string;
  /** The name users reach this host by, in the printed command; empty: this host's name. */
  readonly host?: string;
  readonly hostKey: HostKey;
  readonly policy: DebugSshPolicy;
  /** Where sessions are recorded (read when a login happens, so the store may start later). */
  readonly store: Pick<Store, "debugSessions">;
  readonly metrics: Metrics;
  readonly log?: Logger;
  readonly addressLimit?: AttemptLimit;
  readonly jobLimit?: AttemptLimit;
  /** How long a connection may take to log in; default 30 s, as OpenSSH's LoginGraceTime is 2 min. */
  readonly loginGraceMs?: number;
  readonly now?: () => number;
}

/** What run-job hands over to hold a job whose result is decided. */
export interface HoldRequest {
  readonly request: JobRequest;
  /** The job's opened secrets: the debug variables may be secrets, and the token reads the forge's API. */
  readonly secrets: Readonly<Record<string, string>>;
  readonly ask: Extract<DebugAsk, { kind: "asked" }>;
  readonly result: JobResult;
  readonly orchestrator: string;
  readonly openSession: OpenSession;
  /** Lines for the job's log. */
  readonly note: (text: string) => void;
  /** The window is open: the job counts as held from now until hold() returns. */
  readonly onHeld: () => void;
  /** The job was cancelled (or its lease lost): its reason ends the window. */
  readonly cancel: AbortSignal;
  /** The orchestrator is stopping: the window ends at once. */
  readonly stopping: AbortSignal;
}

/** The endpoint cannot listen where orchestrator.debugSsh.listen says. */
export class DebugSshListenError extends Error {
  override readonly name = "DebugSshListenError";
  readonly code = "debug-ssh.listen";
  constructor(
    readonly listen: string,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(
      `orchestrator.debugSsh.listen (GNOMON_DEBUG_SSH_LISTEN) ${JSON.stringify(listen)}: ${problem}; ` +
        'choose a free port on an address of this host, e.g. ":2222", or turn debug SSH off (orchestrator.debugSsh.enabled)',
      options,
    );
  }
}

/** Most publickey attempts one connection may make before it is dropped (OpenSSH's MaxAuthTries). */
const MAX_AUTH_TRIES = 6;

export class DebugSshServer implements Service {
  readonly name = "debug SSH endpoint";
  readonly done: Promise<Error | undefined>;
  readonly #o: DebugSshServerOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #ended = deferred<Error | undefined>();
  readonly #windows = new Map<string, DebugWindow>();
  readonly #connections = new Set<Connection>();
  readonly #byAddress: AttemptLimiter;
  readonly #byJob: AttemptLimiter;
  #server: Server | undefined;
  #stopped = false;
  #pruner: NodeJS.Timeout | undefined;

  constructor(opts: DebugSshServerOptions) {
    this.#o = opts;
    this.#log = (opts.log ?? rootLogger()).child({ component: "debug-ssh" });
    this.#now = opts.now ?? Date.now;
    this.#byAddress = new AttemptLimiter(opts.addressLimit ?? ADDRESS_LIMIT);
    this.#byJob = new AttemptLimiter(opts.jobLimit ?? JOB_LIMIT);
    this.done = this.#ended.promise;
  }

  /** The port it listens on, once started. */
  get port(): number {
    return (this.#server?.address() as AddressInfo | null | undefined)?.port ?? 0;
  }

  /** The ids of the jobs held open now. */
  get heldJobs(): readonly string[] {
    return [...this.#windows.values()].map((w) => w.spec.jobId);
  }

  status(): ServiceStatus {
    if (this.#stopped) return { state: "stopped", detail: "not listening" };
    if (!this.#server) return { state: "starting", detail: `about to listen on ${this.#o.listen}` };
    const n = this.#windows.size;
    return { state: "ready", detail: `listening on port ${this.port}; ${n} job${n === 1 ? "" : "s"} held` };
  }

  async start(): Promise<void> {
    const m = /^(.*):(\d+)$/.exec(this.#o.listen);
    if (!m) throw new DebugSshListenError(this.#o.listen, "is not host:port");
    const host = m[1]!.replace(/^\[|\]$/g, "") || undefined;
    const server = new (ssh2().Server)(
      { hostKeys: [this.#o.hostKey.privateKey], ident: "gnomon-debug-ssh" },
      (conn, info) => this.#onConnection(conn, info),
    );
    await new Promise<void>((resolve, reject) => {
      const refused = (err: NodeJS.ErrnoException) =>
        reject(
          new DebugSshListenError(this.#o.listen, `cannot listen there (${err.code ?? err.message})`, { cause: err }),
        );
      server.once("error", refused);
      server.listen(Number(m[2]), host, () => {
        server.off("error", refused);
        resolve();
      });
    });
    server.on("error", (err: Error) => this.#log.warn({ err }, "debug SSH endpoint error"));
    this.#server = server;
    // The failure tables forget addresses once their failures are a period old.
    this.#pruner = setInterval(() => {
      this.#byAddress.prune(this.#now());
      this.#byJob.prune(this.#now());
    }, 60_000).unref();
    this.#log.info({ port: this.port, fingerprint: this.#o.hostKey.fingerprint }, "debug SSH endpoint listening");
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#pruner);
    for (const w of this.#windows.values()) w.close("gnomon on this host is stopping");
    await Promise.all([...this.#windows.values()].map((w) => w.ended));
    const server = this.#server;
    this.#server = undefined;
    for (const c of this.#connections) c.end();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.#ended.resolve(undefined);
  }

  /** Whether the run asked for debug SSH, as this host's policy reads it (pure). */
  ask(req: Pick<JobRequest, "contexts" | "debugLogging">, secrets: Readonly<Record<string, string>>): DebugAsk {
    return debugAskOf(req, secrets, this.#o.policy);
  }

  /**
   * Holds a job whose result is decided: fetches its actor's keys from the forge, opens the window,
   * says in the job's log how to log in, and returns once the window has closed. Every way it ends
   * is said in the job's log; it never throws for the job's or the forge's sake.
   */
  async hold(h: HoldRequest): Promise<void> {
    const req = h.request;
    const actor = actorOf(req);
    const api = apiUrlOf(req);
    if (!actor || !api) {
      h.note("debug SSH: the job names no actor (github.actor) whose keys could let them in; the VM is not held");
      return;
    }
    if (this.#stopped || !this.#server || h.stopping.aborted) {
      h.note("debug SSH: gnomon on this host is stopping; the VM is not held");
      return;
    }
    const url = keysUrlOf(api, actor, req.source.forge);
    let keys: Awaited<ReturnType<typeof fetchActorKeys>>;
    try {
      keys = await fetchActorKeys(url, {
        forge: req.source.forge,
        token: h.secrets["GITHUB_TOKEN"],
        signal: AbortSignal.any([h.cancel, h.stopping]),
      });
    } catch (err) {
      // A cancel or a stop during the fetch is said by the job's own ending, not as a forge problem.
      if (!h.cancel.aborted && !h.stopping.aborted) h.note(`debug SSH: ${toError(err).message}; the VM is not held`);
      return;
    }
    if (h.cancel.aborted || h.stopping.aborted) return;
    if (keys.keys.length === 0) {
      h.note(
        `debug SSH: ${actor} has no public SSH key on the forge that gnomon can check${keys.unreadable > 0 ? ` (${keys.unreadable} of a type it does not know)` : ""}; ` +
          `add one to your account (${settingsUrlOf(req)}) and run the job again; the VM is not held`,
      );
      return;
    }
    const deadlineMs = this.#now() + h.ask.windowMs;
    const window = this.open({
      jobId: req.id,
      orchestrator: h.orchestrator,
      actor,
      keys: keys.keys,
      deadlineMs,
      openSession: h.openSession,
      note: h.note,
    });
    h.onHeld();
    const minutes = Math.round(h.ask.windowMs / 60_000);
    const port = this.port === 22 ? "" : `-p ${this.port} `;
    for (const note of h.ask.notes) h.note(note);
    h.note(
      `debug SSH: the job ${h.result === "failure" ? "failed" : `ended (${h.result})`}; its VM is held for ${actor} for ${minutes} minute${minutes === 1 ? "" : "s"}, until ${new Date(deadlineMs).toISOString()} (asked by ${h.ask.why})`,
    );
    h.note(
      `debug SSH: log in with one of ${actor}'s SSH keys on the forge: ssh ${port}${window.username}@${this.#publicHost()}`,
    );
    h.note(
      `debug SSH: the endpoint's host key is ${this.#o.hostKey.publicKey.split(" ")[0]} ${this.#o.hostKey.fingerprint}; check that ssh shows this fingerprint`,
    );
    h.note("debug SSH: logging out or cancelling the job ends the window; the VM is destroyed then");
    const onCancel = () => window.close(`the job was cancelled (${reasonOf(h.cancel)})`);
    const onStop = () => window.close("gnomon on this host is stopping");
    h.cancel.addEventListener("abort", onCancel, { once: true });
    h.stopping.addEventListener("abort", onStop, { once: true });
    if (h.cancel.aborted) onCancel();
    if (h.stopping.aborted) onStop();
    try {
      const why = await window.ended;
      h.note(`debug SSH: the window closed: ${why}. The VM is destroyed now; the job ends ${resultWord(h.result)}`);
      this.#log.info({ jobId: req.id, why }, "debug SSH window closed");
    } finally {
      h.cancel.removeEventListener("abort", onCancel);
      h.stopping.removeEventListener("abort", onStop);
    }
  }

  /** Opens a window for a held job; its username is free among the windows open now. */
  open(spec: ConstructorParameters<typeof DebugWindow>[1]): DebugWindow {
    const hex = spec.jobId.replaceAll("-", "");
    let username = hex.slice(0, 12);
    for (let n = 16; this.#windows.has(username) && n <= hex.length; n += 4) username = hex.slice(0, n);
    const window = new DebugWindow(username, spec, {
      store: this.#o.store,
      log: this.#log.child({ jobId: spec.jobId }),
      now: this.#now,
    });
    this.#windows.set(username, window);
    void window.ended.then(() => {
      if (this.#windows.get(username) === window) this.#windows.delete(username);
    });
    this.#log.info({ jobId: spec.jobId, username, actor: spec.actor, keys: spec.keys.length }, "debug SSH window open");
    return window;
  }

  #publicHost(): string {
    return this.#o.host || hostname();
  }

  #count(outcome: DebugSshOutcome): void {
    this.#o.metrics.debugSshSessions.inc({ outcome });
  }

  #onConnection(conn: Connection, info: ClientInfo): void {
    const address = info.ip.replace(/^::ffff:/, "");
    const source = address.includes(":") ? `[${address}]:${info.port}` : `${address}:${info.port}`;
    conn.on("error", (err: Error) => this.#log.debug({ err, source }, "debug SSH connection error"));
    if (this.#stopped) {
      conn.end();
      return;
    }
    if (!this.#byAddress.allows(address, this.#now())) {
      // Dropped before any key is looked at: a throttled address costs no signature check.
      this.#count("throttled");
      conn.end();
      return;
    }
    this.#connections.add(conn);
    let tries = 0;
    // A connection's first rejected attempt counts as one failed login at once (a client trying
    // again right away must find it counted); taken back if the same connection then gets in, so
    // that an agent offering other keys first costs the actor nothing.
    let failure: { readonly atMs: number; readonly job: string | undefined } | undefined;
    const grace = setTimeout(() => conn.end(), this.#o.loginGraceMs ?? 30_000);
    conn.on("authentication", (ctx: AuthContext) =>
      this.#authenticate(ctx, conn, source, {
        tried: () => ++tries,
        failed: (w) => {
          if (failure) return;
          failure = { atMs: this.#now(), job: w?.spec.jobId };
          this.#byAddress.failed(address, failure.atMs);
          if (failure.job) this.#byJob.failed(failure.job, failure.atMs);
        },
      }),
    );
    conn.once("ready", () => {
      clearTimeout(grace);
      if (!failure) return;
      this.#byAddress.forgive(address, failure.atMs);
      if (failure.job) this.#byJob.forgive(failure.job, failure.atMs);
    });
    conn.once("close", () => {
      clearTimeout(grace);
      this.#connections.delete(conn);
      if (conn.authenticated || !failure) return;
      this.#count("refused");
      this.#log.info({ source, jobId: failure.job }, "debug SSH login refused");
    });
  }

  #authenticate(
    ctx: AuthContext,
    conn: Connection,
    source: string,
    attempt: { tried: () => number; failed: (w: DebugWindow | undefined) => void },
  ): void {
    // Every client asks with "none" first, to learn the methods on offer: public keys only.
    if (ctx.method === "none") {
      ctx.reject(["publickey"]);
      return;
    }
    const window = this.#windows.get(ctx.username);
    if (attempt.tried() > MAX_AUTH_TRIES) {
      attempt.failed(window);
      ctx.reject([]);
      conn.end();
      return;
    }
    // A password or keyboard-interactive attempt fails like a wrong key, and counts like one.
    if (ctx.method !== "publickey" || !window || window.closed) {
      attempt.failed(window?.closed ? undefined : window);
      ctx.reject(["publickey"]);
      return;
    }
    if (!this.#byJob.allows(window.spec.jobId, this.#now())) {
      this.#count("throttled");
      window.throttled(new Date(this.#byJob.retryAt(window.spec.jobId, this.#now())));
      ctx.reject([]);
      conn.end();
      return;
    }
    const key = window.keyFor(ctx.key.data);
    if (!key) {
      attempt.failed(window);
      ctx.reject(["publickey"]);
      return;
    }
    // Without a signature the client only asks whether the key would do; it signs next.
    if (!ctx.signature || !ctx.blob) {
      ctx.accept();
      return;
    }
    if (!key.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) {
      attempt.failed(window);
      ctx.reject(["publickey"]);
      return;
    }
    if (!window.hasRoom) {
      this.#log.info({ source, jobId: window.spec.jobId }, "debug SSH login refused: the window has no room");
      ctx.reject([]);
      return;
    }
    ctx.accept();
    this.#count("accepted");
    window.attach(conn, key, source);
  }
}

function reasonOf(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error && r.name !== "AbortError" ? r.message : "the job was cancelled";
}

function resultWord(result: JobResult): string {
  return result === "success" ? "successful" : result === "failure" ? "failed" : "cancelled";
}

/** Where the actor adds an SSH key on the job's forge. */
function settingsUrlOf(req: JobRequest): string {
  const server = req.contexts.github["server_url"];
  const base = (typeof server === "string" && server ? server : req.source.instance).replace(/\/+$/, "");
  return req.source.forge === "forgejo" ? `${base}/user/settings/keys` : `${base}/settings/keys`;
}
