// The Db interface over PGlite, the embedded PostgreSQL of a one-process install. One instance per
// data directory per process, its memory sized on purpose, its first-start initdb run in a child
// process so that initdb's ~600 MB peak goes back to the OS. Never opens a directory another process
// holds, and keeps every file of it private to gnomon's user (pglite-private-fs.ts).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { setFlagsFromString } from "node:v8";
import type { PGlite, Results, Transaction } from "@electric-sql/pglite";
import { type Slot, Slots } from "../lifecycle/slots.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import { type DataDirLock, lockDataDir } from "./data-dir-lock.js";
import {
  assertOutside,
  type Connection,
  type Db,
  type PgliteDbOptions,
  type Queryable,
  type QueryResult,
  runInside,
} from "./db.js";
import { StoreClosedError, StoreUnavailableError } from "./errors.js";
import { makePrivate, privateNodeFs } from "./pglite-private-fs.js";

/**
 * PostgreSQL's `shared_buffers` for the embedded database. PGlite's own default (128MB) costs
 * ~310 MB idle RSS; a few MB keep it near ~150 MB and hold the working set of this schema, whose
 * hot rows are the few active jobs. See docs/store.md for the measurements.
 */
export const DEFAULT_SHARED_BUFFERS = "4MB";

/** initdb takes ~5–7 s on a 2-core host; far beyond that it is stuck, not slow. */
const INITDB_TIMEOUT_MS = 180_000;

interface Instance {
  readonly pg: PGlite;
  /** One holder at a time: a query, a transaction, or a checked-out connection. */
  readonly gate: Slots;
  readonly lock: DataDirLock;
  refs: number;
  closing?: Promise<void>;
}

/** Open instances by absolute data directory: a directory is opened once per process and shared. */
const instances = new Map<string, Promise<Instance>>();

export async function openPglite(opts: PgliteDbOptions): Promise<Db> {
  const dir = resolve(opts.dir);
  for (;;) {
    let pending = instances.get(dir);
    if (!pending) {
      pending = startInstance(dir, opts);
      instances.set(dir, pending);
      pending.catch(() => instances.delete(dir));
    }
    const instance = await pending;
    if (instance.closing) {
      await instance.closing; // the last handle is closing it: open afresh once it is closed
      continue;
    }
    instance.refs += 1;
    return new PgliteDb(dir, instance);
  }
}

async function startInstance(dir: string, opts: PgliteDbOptions): Promise<Instance> {
  const log = (opts.log ?? rootLogger().child({ component: "store" })).child({ dir });
  const sharedBuffers = opts.sharedBuffers ?? DEFAULT_SHARED_BUFFERS;
  if (!/^\d+(kB|MB|GB)$/.test(sharedBuffers))
    throw new StoreUnavailableError(dir, `sharedBuffers must be a size like "4MB" (got "${sharedBuffers}").`);
  // The data directory holds job data and keys as well: private from its creation on.
  await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  const lock = lockDataDir(`${dir}.lock`, dir);
  try {
    baselineWasmOnly();
    const { PGlite } = await import("@electric-sql/pglite");
    const startParams = [...PGlite.defaultStartParams, "-c", `shared_buffers=${sharedBuffers}`];
    if (!existsSync(join(dir, "PG_VERSION"))) await initInChild(dir, startParams, log);
    // Also tightens a database an earlier gnomon left group- and world-accessible.
    await makePrivate(dir);
    const pg = await PGlite.create({ fs: await privateNodeFs(dir), startParams });
    return { pg, gate: new Slots(1), lock, refs: 0 };
  } catch (err) {
    lock.release();
    throw err instanceof StoreUnavailableError
      ? err
      : new StoreUnavailableError(
          dir,
          "Check that the directory is writable and holds only a gnomon embedded database, or set DATABASE_URL.",
          { cause: err },
        );
  }
}

/**
 * PostgreSQL's WebAssembly compiled by V8's baseline compiler (Liftoff) only, never optimised
 * (TurboFan) as well: ~55 MB less idle RSS for an embedded gnomon (208 → 153 MB measured for PGlite
 * alone, shared_buffers=4MB), and no slower for this schema's short statements (1 100–1 600 against
 * 1 900–2 000 statements/s measured, TurboFan's compiles competing for the CPU). It is a process-wide
 * V8 setting for WebAssembly compiled from now on; no other WebAssembly in gnomon is on a hot path.
 */
function baselineWasmOnly(): void {
  setFlagsFromString("--liftoff-only");
}

// Runs as CommonJS in a plain `node -e`: no tsx, no bundle, only the PGlite package.
const INITDB_SCRIPT = `
const { PGlite } = require(process.env.GNOMON_PGLITE_MODULE);
PGlite.create({ dataDir: process.env.GNOMON_PGLITE_DIR, startParams: JSON.parse(process.env.GNOMON_PGLITE_START_PARAMS) })
  .then((db) => db.close())
  .then(() => process.exit(0), (e) => { process.stderr.write(String((e && e.stack) || e)); process.exit(1); });
`;

/**
 * Creates the data directory in a short-lived child process, beside the final place, then moves it
 * in: a crash half-way leaves no half-initialised directory behind, and the parent never pays
 * initdb's memory (a second PGlite instance plus a copy of its heap) for the rest of its life.
 */
async function initInChild(dir: string, startParams: readonly string[], log: Logger): Promise<void> {
  const aside = `${dir}.init-${process.pid}-${randomBytes(4).toString("hex")}`;
  const startedAt = performance.now();
  log.info("creating the embedded database (first start, a few seconds)");
  try {
    await runChild(aside, startParams);
    await makePrivate(aside); // before it appears under its real name
    if (existsSync(dir)) {
      if ((await readdir(dir)).length > 0)
        throw new StoreUnavailableError(
          dir,
          "The directory exists, is not empty and holds no PostgreSQL data (no PG_VERSION): move it away or choose another dataDir.",
        );
      await rmdir(dir);
    }
    await rename(aside, dir);
  } finally {
    await rm(aside, { recursive: true, force: true });
  }
  log.info({ tookMs: Math.round(performance.now() - startedAt) }, "embedded database created");
}

function runChild(dir: string, startParams: readonly string[]): Promise<void> {
  const pgliteModule = createRequire(import.meta.url).resolve("@electric-sql/pglite");
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ["-e", INITDB_SCRIPT], {
      env: {
        ...process.env,
        GNOMON_PGLITE_MODULE: pgliteModule,
        GNOMON_PGLITE_DIR: dir,
        GNOMON_PGLITE_START_PARAMS: JSON.stringify(startParams),
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4_000);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), INITDB_TIMEOUT_MS);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveRun();
      else
        reject(
          new Error(
            `initdb of the embedded database ${signal ? `was killed (${signal}) after ${INITDB_TIMEOUT_MS / 1000} s` : `exited with code ${code}`}` +
              (stderr ? `: ${stderr.trim()}` : ""),
          ),
        );
    });
  });
}

class PgliteDb implements Db {
  readonly kind = "pglite";
  /** In this process: never unreachable. */
  readonly unreachableSince = undefined;
  readonly where: string;
  readonly #instance: Instance;
  #closing: Promise<void> | undefined;

  constructor(dir: string, instance: Instance) {
    this.where = dir;
    this.#instance = instance;
  }

  query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#enter();
    return this.#exclusive(() => send<R>(this.#instance.pg, sql, params));
  }

  async exec(script: string): Promise<void> {
    this.#enter();
    await this.#exclusive(() => this.#instance.pg.exec(script));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    this.#enter();
    return this.#exclusive(() =>
      runInside(this.#instance, () => this.#instance.pg.transaction((tx) => fn(transactionHandle(tx)))),
    );
  }

  withConnection<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
    this.#enter();
    const { pg } = this.#instance;
    const conn: Connection = {
      query: <R>(sql: string, params?: readonly unknown[]) => send<R>(pg, sql, params),
      exec: async (script: string) => {
        await pg.exec(script);
      },
      transaction: (txFn) => pg.transaction((tx) => txFn(transactionHandle(tx))),
    };
    return this.#exclusive(async () => {
      try {
        return await runInside(this.#instance, () => fn(conn));
      } finally {
        // One session serves every handle: no advisory lock may outlive the connection's holder.
        await pg.query("select pg_advisory_unlock_all()");
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= closeHandle(this.where, this.#instance);
    return this.#closing;
  }

  #enter(): void {
    if (this.#closing || this.#instance.closing) throw new StoreClosedError();
    assertOutside(this.#instance);
  }

  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const slot: Slot = await this.#instance.gate.acquire();
    try {
      return await fn();
    } finally {
      slot.release();
    }
  }
}

async function closeHandle(dir: string, instance: Instance): Promise<void> {
  instance.refs -= 1;
  if (instance.refs > 0) return;
  instance.closing ??= (async () => {
    const slot = await instance.gate.acquire(); // after the queries in flight
    try {
      await instance.pg.close();
    } finally {
      instance.lock.release();
      instances.delete(dir);
      slot.release();
    }
  })();
  await instance.closing;
}

function transactionHandle(tx: Transaction): Queryable {
  return {
    query: async <R>(sql: string, params?: readonly unknown[]) => normalise<R>(await tx.query<R>(sql, mutable(params))),
    exec: async (script: string) => {
      await tx.exec(script);
    },
  };
}

async function send<R>(pg: PGlite, sql: string, params: readonly unknown[] | undefined): Promise<QueryResult<R>> {
  return normalise<R>(await pg.query<R>(sql, mutable(params)));
}

function normalise<R>(r: Results<R>): QueryResult<R> {
  return { rows: r.rows, rowCount: r.rowCount ?? r.affectedRows ?? r.rows.length };
}

// PGlite's signature asks for a mutable array but never writes to it.
function mutable(params: readonly unknown[] | undefined): unknown[] | undefined {
  return params as unknown[] | undefined;
}
