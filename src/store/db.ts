// One small query interface over PostgreSQL (a pg Pool) or the embedded PGlite, so the same SQL runs
// on both. Nothing here knows a table; the table modules hold their SQL next to their functions.
// Never add a method that only one back end can honour.
import { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "../telemetry/log.js";
import { NestedQueryError } from "./errors.js";

export type Row = Record<string, unknown>;

export interface QueryResult<R> {
  readonly rows: R[];
  /** Rows returned (SELECT, RETURNING) or changed (INSERT, UPDATE, DELETE). */
  readonly rowCount: number;
}

/** Something SQL can be sent to: the database, a transaction, or a checked-out connection. */
export interface Queryable {
  /** One statement with `$1 …` parameters. `R` is the row shape the SQL's column aliases produce. */
  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** A script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

/** A connection held for a while: session state such as advisory locks lives on it. */
export interface Connection extends Queryable {
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

export type DbKind = "postgres" | "pglite";

export interface Db extends Queryable {
  readonly kind: DbKind;
  /** Where the data is, for messages: the URL without its password, or the data directory. */
  readonly where: string;
  /** When statements began to find the server unreachable (epoch ms); undefined while it answers. */
  readonly unreachableSince: number | undefined;
  /**
   * Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. On
   * PostgreSQL `fn` runs again when the server went away before the commit (the first attempt was
   * rolled back), so it must do nothing but database work.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` on one connection held for its whole duration (advisory locks). Any advisory lock
   * left on it is released afterwards. On the embedded database this excludes all other queries.
   */
  withConnection<T>(fn: (conn: Connection) => Promise<T>): Promise<T>;
  /** Waits for queries in flight, then closes. Idempotent. */
  close(): Promise<void>;
}

export interface PostgresDbOptions {
  kind: "postgres";
  url: string;
  /** Most connections in the pool. */
  poolMax?: number;
  /**
   * Send parameterised statements as named prepared statements (parsed once per connection).
   * Turn off behind a transaction-pooling proxy such as PgBouncer in transaction mode.
   */
  preparedStatements?: boolean;
  /**
   * How long a statement waits out an unreachable server (a restart, a failover, a network blip)
   * before it fails with StoreUnavailableError. Default 60 s; 0 fails at once.
   */
  outageToleranceMs?: number;
  log?: Logger;
}

export interface PgliteDbOptions {
  kind: "pglite";
  /** The data directory; created (initdb) on first open. */
  dir: string;
  /** PostgreSQL `shared_buffers`, e.g. "4MB": the biggest lever on the embedded database's memory. */
  sharedBuffers?: string;
  log?: Logger;
}

export type DbOptions = PostgresDbOptions | PgliteDbOptions;

export async function openDb(opts: DbOptions): Promise<Db> {
  // Loaded on demand: a PostgreSQL host never loads PGlite's WebAssembly, and vice versa.
  if (opts.kind === "postgres") return (await import("./postgres-db.js")).openPostgres(opts);
  return (await import("./pglite-db.js")).openPglite(opts);
}

/**
 * Guards against using a Db from inside its own transaction()/withConnection() callback: on
 * PostgreSQL that silently runs outside the transaction, on PGlite it deadlocks. Both back ends
 * refuse it the same way, so code that works on one works on the other.
 */
const insideOf = new AsyncLocalStorage<object>();

/** Runs `fn` marked as inside a transaction/connection of `database` (the pool or embedded instance). */
export function runInside<T>(database: object, fn: () => Promise<T>): Promise<T> {
  return insideOf.run(database, fn);
}

/** Throws NestedQueryError when called from inside a transaction/connection of `database`. */
export function assertOutside(database: object): void {
  if (insideOf.getStore() === database) throw new NestedQueryError();
}
