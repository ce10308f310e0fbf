// One held job's debug window: who may log in (the actor's keys), until when, and the logins it
// has. Every login is recorded in the store and said in the job's log; the window closes when its
// time runs out, when its last login ends (the user logged out), or when it is closed (the job was
// cancelled, the orchestrator stops, the VM's connection is gone). It never touches the VM itself:
// sessions go through `openSession`, and the orchestrator destroys the VM after the window.
import { randomUUID } from "node:crypto";
import type { Connection, Session } from "ssh2";
import { SshDisconnectedError } from "../executor/ssh.js";
import type { Store } from "../store/store.js";
import type { Logger } from "../telemetry/log.js";
import { type ByteCounter, type OpenSession, proxySession } from "./session-proxy.js";
import type { PublicKey } from "./ssh-keys.js";

export interface WindowSpec {
  readonly jobId: string;
  /** The orchestrator holding the job, for the audit trail. */
  readonly orchestrator: string;
  /** The only user who may log in. */
  readonly actor: string;
  /** The actor's public keys, as the forge listed them when the job was held. */
  readonly keys: readonly PublicKey[];
  /** When the window closes at the latest (ms since the epoch). */
  readonly deadlineMs: number;
  readonly openSession: OpenSession;
  /** Says a line in the job's log. */
  readonly note: (text: string) => void;
}

export interface WindowDeps {
  readonly store: Pick<Store, "debugSessions">;
  readonly log: Logger;
  readonly now: () => number;
  /** How long closing waits for logins to end and their records to be written. */
  readonly closeGraceMs?: number;
}

/** Logins a window takes at once; more are refused (a person needs a few terminals, not dozens). */
export const MAX_LOGINS = 4;

interface Login {
  readonly id: string;
  readonly source: string;
  readonly key: PublicKey;
  readonly startedMs: number;
  readonly counter: ByteCounter;
}

export class DebugWindow {
  readonly username: string;
  readonly spec: WindowSpec;
  /** Resolves with why the window closed, once every login has ended and been recorded. */
  readonly ended: Promise<string>;
  readonly #d: WindowDeps;
  readonly #logins = new Map<Connection, Login>();
  /** Every login's record, until it is closed: closing the window waits for them. */
  readonly #records = new Set<Promise<void>>();
  readonly #timer: NodeJS.Timeout;
  #why: string | undefined;
  /** Until when the job's log last said logins are throttled (said once per streak). */
  #throttledUntil = 0;
  #resolve: (why: string) => void = () => {};

  constructor(username: string, spec: WindowSpec, deps: WindowDeps) {
    this.username = username;
    this.spec = spec;
    this.#d = deps;
    this.ended = new Promise((resolve) => {
      this.#resolve = resolve;
    });
    const minutes = Math.round((spec.deadlineMs - deps.now()) / 60_000);
    this.#timer = setTimeout(
      () => this.close(`its time ran out (${minutes} minute${minutes === 1 ? "" : "s"})`),
      Math.max(0, spec.deadlineMs - deps.now()),
    );
  }

  get closed(): boolean {
    return this.#why !== undefined;
  }

  get logins(): number {
    return this.#logins.size;
  }

  /** The actor's key with this blob, if it is one. */
  keyFor(blob: Buffer): PublicKey | undefined {
    return this.spec.keys.find((k) => k.blob.equals(blob));
  }

  /** Whether one more login fits. */
  get hasRoom(): boolean {
    return !this.closed && this.#logins.size < MAX_LOGINS;
  }

  /** A login authenticated with the actor's `key`: its sessions go into the VM until it or the window ends. */
  attach(conn: Connection, key: PublicKey, source: string): void {
    const spec = this.spec;
    const { store, log } = this.#d;
    const id = randomUUID();
    const counter: ByteCounter = { bytesIn: 0, bytesOut: 0 };
    const recorded = store.debugSessions
      .start({
        id,
        jobId: spec.jobId,
        orchestrator: spec.orchestrator,
        actor: spec.actor,
        keyFingerprint: key.fingerprint,
        source,
      })
      .catch((err: unknown) => log.warn({ err, session: id }, "could not record a debug SSH session"));
    let closeRecord: () => void = () => {};
    const ended = new Promise<void>((resolve) => {
      closeRecord = resolve;
    });
    const login: Login = { id, source, key, startedMs: this.#d.now(), counter };
    this.#logins.set(conn, login);
    this.#records.add(ended);
    void ended.then(() => this.#records.delete(ended));
    spec.note(`debug SSH: ${spec.actor} logged in from ${source} (key ${key.fingerprint})`);
    log.info({ session: id, source, key: key.fingerprint }, "debug SSH login");

    conn.on("session", (accept: () => Session, reject: () => void) => {
      if (this.closed) return reject();
      proxySession(accept(), spec.openSession, counter, (err) => {
        log.warn({ err, session: id }, "could not open a session in the held VM");
        if (err instanceof SshDisconnectedError) this.close("the connection to the VM was lost");
      });
    });
    conn.once("close", () => {
      this.#logins.delete(conn);
      const reason = this.#why ?? "logged out";
      const tookS = Math.round((this.#d.now() - login.startedMs) / 1000);
      spec.note(
        `debug SSH: ${spec.actor}'s session from ${source} ended after ${tookS} s (${size(counter.bytesIn)} in, ${size(counter.bytesOut)} out)`,
      );
      void recorded
        .then(() => store.debugSessions.end(id, { ...counter, reason }))
        .catch((err: unknown) => log.warn({ err, session: id }, "could not record the end of a debug SSH session"))
        .finally(closeRecord);
      // The user logged out of the last session: nothing is left to wait for.
      if (this.#logins.size === 0) this.close(`${spec.actor} logged out`);
    });
  }

  /** Too many failed logins for this job: the job's log says so, once until the throttling ends. */
  throttled(until: Date): void {
    if (this.#d.now() < this.#throttledUntil) return;
    this.#throttledUntil = until.getTime();
    this.spec.note(
      `debug SSH: too many failed logins for this job; new logins are refused until ${until.toISOString()}`,
    );
  }

  /** Closes the window (once): every login ends, and `ended` resolves with `why` once they are recorded. */
  close(why: string): void {
    if (this.#why !== undefined) return;
    this.#why = why;
    clearTimeout(this.#timer);
    for (const conn of this.#logins.keys()) conn.end();
    const recorded = Promise.all([...this.#records]);
    const grace = new Promise<void>((resolve) => setTimeout(resolve, this.#d.closeGraceMs ?? 5_000).unref());
    void Promise.race([recorded, grace]).then(() => this.#resolve(why));
  }
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
