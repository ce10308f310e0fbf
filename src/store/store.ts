// The store as a Service: start() connects (PostgreSQL, or the embedded PGlite under dataDir) and
// migrates; stop() closes. Its table operations are bound to the database, or to one transaction
// through transaction(). It holds no job logic: the orchestrator decides, the store records.
import { join } from "node:path";
import type { JobRequest } from "../contract/job-request.js";
import { deferred, type Service, type ServiceStatus } from "../lifecycle/service.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import { getCancellation, requestCancellation } from "./cancellations.js";
import { type Db, openDb, type Queryable } from "./db.js";
import {
  type DebugSessionEnd,
  endDebugSession,
  listDebugSessions,
  type NewDebugSession,
  startDebugSession,
} from "./debug-sessions.js";
import { StoreClosedError } from "./errors.js";
import {
  assignJob,
  type Finish,
  finishJob,
  getJob,
  insertJob,
  markFirstStepStarted,
  markProvisioning,
  markRunning,
  recordEventSeq,
  requeueJob,
} from "./jobs.js";
import { acquireLease, getLease, listExpiredLeases, releaseLease, renewLease } from "./leases.js";
import { migrate } from "./migrate.js";
import {
  assignPooledVm,
  deleteVm,
  getVm,
  listOrphanVms,
  listVmsOnHost,
  type NewVm,
  recordPooledVm,
  recordVm,
  renewPooledVms,
  setVmPid,
} from "./vms.js";

export interface StoreOptions {
  /** PostgreSQL shared by the fleet; absent: the embedded database in `<dataDir>/pglite`. */
  databaseUrl?: string;
  dataDir: string;
  /** `shared_buffers` of the embedded database, e.g. "4MB"; default: pglite-db.ts DEFAULT_SHARED_BUFFERS. */
  embeddedSharedBuffers?: string;
  /** Most PostgreSQL connections of this process. */
  poolMax?: number;
  /** How long statements wait out an unreachable PostgreSQL; default 60 s (db.ts). */
  outageToleranceMs?: number;
  log?: Logger;
}

/** Every table operation, bound to one Queryable (the database or a transaction). */
export function bindOperations(q: Queryable) {
  return {
    jobs: {
      insert: (request: JobRequest) => insertJob(q, request),
      get: (id: string) => getJob(q, id),
      assign: (id: string, orchestrator: string) => assignJob(q, id, orchestrator),
      markProvisioning: (id: string) => markProvisioning(q, id),
      markRunning: (id: string) => markRunning(q, id),
      markFirstStepStarted: (id: string) => markFirstStepStarted(q, id),
      finish: (id: string, finish: Finish) => finishJob(q, id, finish),
      requeue: (id: string) => requeueJob(q, id),
      recordEventSeq: (id: string, nextSeq: number) => recordEventSeq(q, id, nextSeq),
    },
    cancellations: {
      request: (jobId: string, reason: string) => requestCancellation(q, jobId, reason),
      get: (jobId: string) => getCancellation(q, jobId),
    },
    leases: {
      acquire: (jobId: string, owner: string, ttlMs: number) => acquireLease(q, jobId, owner, ttlMs),
      renew: (jobId: string, owner: string, ttlMs: number) => renewLease(q, jobId, owner, ttlMs),
      release: (jobId: string, owner: string) => releaseLease(q, jobId, owner),
      get: (jobId: string) => getLease(q, jobId),
      listExpired: (limit?: number) => listExpiredLeases(q, limit),
    },
    vms: {
      record: (vm: NewVm) => recordVm(q, vm),
      setPid: (id: string, pid: number) => setVmPid(q, id, pid),
      delete: (id: string) => deleteVm(q, id),
      get: (id: string) => getVm(q, id),
      listOnHost: (host: string) => listVmsOnHost(q, host),
      listOrphans: (host: string) => listOrphanVms(q, host),
      recordPooled: (vm: Omit<NewVm, "jobId">, ttlMs: number) => recordPooledVm(q, vm, ttlMs),
      renewPooled: (owner: string, ids: readonly string[], ttlMs: number) => renewPooledVms(q, owner, ids, ttlMs),
      assignPooled: (id: string, jobId: string) => assignPooledVm(q, id, jobId),
    },
    debugSessions: {
      start: (session: NewDebugSession) => startDebugSession(q, session),
      end: (id: string, end: DebugSessionEnd) => endDebugSession(q, id, end),
      list: (opts?: { readonly jobId?: string; readonly limit?: number }) => listDebugSessions(q, opts),
    },
  };
}

export type StoreOperations = ReturnType<typeof bindOperations>;

export class Store implements Service {
  readonly name = "store";
  readonly done: Promise<Error | undefined>;
  readonly #opts: StoreOptions;
  readonly #log: Logger;
  readonly #ended = deferred<Error | undefined>();
  #db: Db | undefined;
  #ops: StoreOperations | undefined;
  #stopping: Promise<void> | undefined;
  #starting = false;
  #closed = false;

  constructor(opts: StoreOptions) {
    this.#opts = opts;
    this.#log = (opts.log ?? rootLogger()).child({ component: "store" });
    this.done = this.#ended.promise;
  }

  async start(): Promise<void> {
    this.#starting = true;
    const startedAt = performance.now();
    const { databaseUrl, dataDir } = this.#opts;
    const db = databaseUrl
      ? await openDb({
          kind: "postgres",
          url: databaseUrl,
          poolMax: this.#opts.poolMax,
          outageToleranceMs: this.#opts.outageToleranceMs,
          log: this.#log,
        })
      : await openDb({
          kind: "pglite",
          dir: join(dataDir, "pglite"),
          sharedBuffers: this.#opts.embeddedSharedBuffers,
          log: this.#log,
        });
    try {
      const outcome = await migrate(db, { log: this.#log });
      this.#log.info(
        { db: db.kind, where: db.where, schema: outcome.version, tookMs: Math.round(performance.now() - startedAt) },
        "store ready",
      );
    } catch (err) {
      await db.close();
      throw err;
    }
    this.#db = db;
    this.#ops = bindOperations(db);
  }

  stop(deadline: AbortSignal): Promise<void> {
    this.#stopping ??= this.#close(deadline);
    return this.#stopping;
  }

  /** "ok" while the database answers; degraded with the time since it stopped answering. */
  status(): ServiceStatus {
    if (this.#closed) return { state: "stopped", detail: "closed" };
    if (this.#stopping) return { state: "stopping", detail: "closing the database" };
    const db = this.#db;
    if (!db)
      return { state: "starting", detail: this.#starting ? "opening and migrating the database" : "not started yet" };
    const since = db.unreachableSince;
    if (since !== undefined) return { state: "degraded", detail: `unreachable since ${new Date(since).toISOString()}` };
    return { state: "ready", detail: "ok" };
  }

  /** The database, for queries the operations do not cover. */
  get db(): Db {
    if (!this.#db || this.#stopping) throw new StoreClosedError();
    return this.#db;
  }

  get jobs(): StoreOperations["jobs"] {
    return this.#operations().jobs;
  }

  get leases(): StoreOperations["leases"] {
    return this.#operations().leases;
  }

  get cancellations(): StoreOperations["cancellations"] {
    return this.#operations().cancellations;
  }

  get vms(): StoreOperations["vms"] {
    return this.#operations().vms;
  }

  get debugSessions(): StoreOperations["debugSessions"] {
    return this.#operations().debugSessions;
  }

  /** Runs `fn` with every operation bound to one transaction: all of it commits, or none. */
  transaction<T>(fn: (tx: StoreOperations) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) => fn(bindOperations(tx)));
  }

  #operations(): StoreOperations {
    if (!this.#ops || this.#stopping) throw new StoreClosedError();
    return this.#ops;
  }

  async #close(deadline: AbortSignal): Promise<void> {
    const db = this.#db;
    if (db) {
      // Closing waits for queries in flight; past the deadline the process is going down anyway.
      const aborted = new Promise<void>((resolve) => {
        if (deadline.aborted) resolve();
        else deadline.addEventListener("abort", () => resolve(), { once: true });
      });
      try {
        await Promise.race([db.close(), aborted]);
      } catch (err) {
        this.#log.warn({ err }, "closing the database failed; nothing is lost, its writes were committed");
      }
    }
    this.#closed = true;
    this.#ended.resolve(undefined);
  }
}
