// The Db interface over a pg Pool: real PostgreSQL, shared by every host of a fleet. Parameterised
// statements go out as named prepared statements (parsed once per connection). It must never hold a
// pooled connection beyond the call that checked it out.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Pool, type PoolClient, type QueryConfig } from "pg";
import { toError } from "../lifecycle/to-error.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import { redactUrl } from "../telemetry/redact.js";
import {
  assertOutside,
  type Connection,
  type Db,
  type PostgresDbOptions,
  type Queryable,
  type QueryResult,
  runInside,
} from "./db.js";
import { CommitUnknownError, StoreClosedError, StoreUnavailableError } from "./errors.js";

const DEFAULT_POOL_MAX = 10;
const CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_OUTAGE_TOLERANCE_MS = 60_000;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

/** Socket errors that mean "the server is not there right now", not "this setting is wrong". */
const UNREACHABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH"]);

/**
 * True for an error that says the server went away or is not back yet, after which the statement
 * did not take effect: a refused or dropped connection, or the server ending the session because it
 * shuts down or restarts (57P01-57P03, class 08). Wrong passwords, missing databases and SQL errors
 * are not: retrying those only hides them.
 */
export function isServerUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { code } = err as { code?: unknown };
  if (typeof code === "string") {
    if (UNREACHABLE_ERRNOS.has(code)) return true;
    if (code === "57P01" || code === "57P02" || code === "57P03" || code.startsWith("08")) return true;
  }
  return /^Connection terminated|timeout exceeded when trying to connect/i.test(err.message);
}

type Sender = Pool | PoolClient;

export async function openPostgres(opts: PostgresDbOptions): Promise<Db> {
  const db = new PostgresDb(opts);
  try {
    await db.probe();
  } catch (err) {
    await db.close();
    throw new StoreUnavailableError(
      db.where,
      "Check that PostgreSQL is running and that DATABASE_URL names a database this user may use.",
      { cause: err },
    );
  }
  return db;
}

class PostgresDb implements Db {
  readonly kind = "postgres";
  readonly where: string;
  readonly #pool: Pool;
  readonly #prepared: boolean;
  readonly #names = new Map<string, string>();
  readonly #toleranceMs: number;
  readonly #log: Logger;
  /** When the current outage began; undefined while the server answers. */
  #unreachableSince: number | undefined;

  get unreachableSince(): number | undefined {
    return this.#unreachableSince;
  }
  #closing: Promise<void> | undefined;

  constructor(opts: PostgresDbOptions) {
    this.where = redactUrl(opts.url);
    this.#prepared = opts.preparedStatements ?? true;
    this.#pool = new Pool({
      connectionString: opts.url,
      max: opts.poolMax ?? DEFAULT_POOL_MAX,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      application_name: "gnomon",
    });
    const log = (opts.log ?? rootLogger().child({ component: "store" })).child({ db: this.where });
    this.#log = log;
    this.#toleranceMs = opts.outageToleranceMs ?? DEFAULT_OUTAGE_TOLERANCE_MS;
    // An idle pooled connection that dies (server restart, network) emits here; unhandled, it would
    // crash the process. The pool replaces it on next use, so a warning is all it needs.
    this.#pool.on("error", (err) => log.warn({ err }, "idle database connection lost; the pool replaces it"));
  }

  /** One round trip that fails at once when the server is not there: the check at start-up. */
  async probe(): Promise<void> {
    await this.#pool.query("select 1");
  }

  query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#assertOpen();
    assertOutside(this);
    return this.#riding(async () => {
      const client = await this.#checkout();
      try {
        const r = await this.#send<R>(client, sql, params);
        this.#release(client);
        return r;
      } catch (err) {
        this.#release(client, isServerUnreachable(err) ? (err as Error) : undefined);
        throw err;
      }
    });
  }

  async exec(script: string): Promise<void> {
    this.#assertOpen();
    assertOutside(this);
    await this.#riding(async () => {
      await this.#pool.query(script);
    });
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    this.#assertOpen();
    assertOutside(this);
    return this.#riding(async () => {
      const client = await this.#checkout();
      let broken: Error | undefined;
      try {
        return await runInside(this, () => this.#inTransaction(client, fn, (e) => (broken = e)));
      } catch (err) {
        if (isServerUnreachable(err)) broken ??= err as Error;
        throw err;
      } finally {
        this.#release(client, broken);
      }
    });
  }

  async withConnection<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
    this.#assertOpen();
    assertOutside(this);
    // Only getting the connection is retried: fn may hold session state (advisory locks) that a
    // new connection would not have.
    const client = await this.#riding(() => this.#checkout());
    let broken: Error | undefined;
    const conn: Connection = {
      ...this.#handle(client),
      transaction: (txFn) => this.#inTransaction(client, txFn, (e) => (broken = e)),
    };
    try {
      return await runInside(this, () => fn(conn));
    } finally {
      // A connection goes back to the pool without session locks, whatever fn left behind.
      try {
        await client.query("select pg_advisory_unlock_all()");
      } catch (err) {
        broken = toError(err);
      }
      this.#release(client, broken);
    }
  }

  /**
   * A connection of our own until #release. A connection that dies while checked out emits an error
   * on its client (besides failing its statement); unheard, that would end the process.
   */
  async #checkout(): Promise<PoolClient> {
    const client = await this.#pool.connect();
    client.on("error", this.#onCheckedOutError);
    return client;
  }

  #release(client: PoolClient, broken?: Error): void {
    client.off("error", this.#onCheckedOutError);
    client.release(broken);
  }

  readonly #onCheckedOutError = (err: Error): void => {
    this.#log.debug({ err }, "a database connection in use broke; its statement fails and is retried");
  };

  close(): Promise<void> {
    this.#closing ??= this.#pool.end();
    return this.#closing;
  }

  async #inTransaction<T>(
    client: PoolClient,
    fn: (tx: Queryable) => Promise<T>,
    onBroken: (err: Error) => void,
  ): Promise<T> {
    await client.query("begin");
    let result: T;
    try {
      result = await fn(this.#handle(client));
    } catch (err) {
      try {
        await client.query("rollback");
      } catch (rollbackErr) {
        // The connection cannot be trusted any more: the pool must discard it, not reuse it.
        onBroken(rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr)));
      }
      throw err;
    }
    try {
      await client.query("commit");
    } catch (err) {
      // The connection died during commit: the transaction may or may not have committed, so it is
      // not run again.
      throw new CommitUnknownError({ cause: err });
    }
    return result;
  }

  /**
   * Runs `attempt` again while the server is unreachable, for up to the outage tolerance, with
   * backoff; one warning when an outage starts, one line when it ends. Statements that failed this
   * way did not take effect (see isServerUnreachable), so running them again is safe.
   */
  async #riding<T>(attempt: () => Promise<T>): Promise<T> {
    const started = Date.now();
    let waitMs = RETRY_FIRST_MS;
    for (;;) {
      try {
        const value = await attempt();
        if (this.#unreachableSince !== undefined) {
          this.#log.info({ outageMs: Date.now() - this.#unreachableSince }, "the database answers again");
          this.#unreachableSince = undefined;
        }
        return value;
      } catch (err) {
        if (!isServerUnreachable(err) || this.#closing) throw err;
        if (this.#unreachableSince === undefined) {
          this.#unreachableSince = Date.now();
          this.#log.warn(
            { err, toleranceMs: this.#toleranceMs },
            "the database is unreachable; statements wait for it to come back",
          );
        }
        if (Date.now() - started + waitMs > this.#toleranceMs)
          throw new StoreUnavailableError(
            this.where,
            `It stayed unreachable for ${Math.round((Date.now() - started) / 1000)} s. Check that PostgreSQL is running and reachable from this host.`,
            { cause: err },
          );
        await sleep(waitMs);
        waitMs = Math.min(RETRY_MAX_MS, waitMs * 2);
      }
    }
  }

  #handle(client: PoolClient): Queryable {
    return {
      query: <R>(sql: string, params?: readonly unknown[]) => this.#send<R>(client, sql, params),
      exec: async (script: string) => {
        await client.query(script);
      },
    };
  }

  async #send<R>(to: Sender, sql: string, params: readonly unknown[] | undefined): Promise<QueryResult<R>> {
    const config: QueryConfig<unknown[]> = { text: sql, values: params as unknown[] | undefined };
    if (this.#prepared && params && params.length > 0) config.name = this.#statementName(sql);
    const r = await to.query(config);
    return { rows: r.rows as R[], rowCount: r.rowCount ?? r.rows.length };
  }

  #statementName(sql: string): string {
    let name = this.#names.get(sql);
    if (name === undefined) {
      // Derived from the text, so one name never stands for two statements on a connection.
      name = `gnomon_${createHash("sha1").update(sql).digest("hex").slice(0, 20)}`;
      this.#names.set(sql, name);
    }
    return name;
  }

  #assertOpen(): void {
    if (this.#closing) throw new StoreClosedError();
  }
}
