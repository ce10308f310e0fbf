// The Db interface over a pg Pool: real PostgreSQL, shared by every host of a fleet. Parameterised
// statements go out as named prepared statements (parsed once per connection). It must never hold a
// pooled connection beyond the call that checked it out.
import { createHash } from "node:crypto";
import { Pool, type PoolClient, type QueryConfig } from "pg";
import { rootLogger } from "../telemetry/log.js";
import {
  assertOutside,
  type Connection,
  type Db,
  type PostgresDbOptions,
  type Queryable,
  type QueryResult,
  redactUrl,
  runInside,
} from "./db.js";
import { StoreClosedError, StoreUnavailableError } from "./errors.js";

const DEFAULT_POOL_MAX = 10;
const CONNECT_TIMEOUT_MS = 10_000;

type Sender = Pool | PoolClient;

export async function openPostgres(opts: PostgresDbOptions): Promise<Db> {
  const db = new PostgresDb(opts);
  try {
    await db.query("select 1");
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
    const log = (opts.log ?? rootLogger()).child({ component: "store", db: this.where });
    // An idle pooled connection that dies (server restart, network) emits here; unhandled, it would
    // crash the process. The pool replaces it on next use, so a warning is all it needs.
    this.#pool.on("error", (err) => log.warn({ err }, "idle database connection lost; the pool replaces it"));
  }

  query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#assertOpen();
    assertOutside(this);
    return this.#send<R>(this.#pool, sql, params);
  }

  async exec(script: string): Promise<void> {
    this.#assertOpen();
    assertOutside(this);
    await this.#pool.query(script);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    this.#assertOpen();
    assertOutside(this);
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      return await runInside(this, () => this.#inTransaction(client, fn, (e) => (broken = e)));
    } finally {
      client.release(broken);
    }
  }

  async withConnection<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
    this.#assertOpen();
    assertOutside(this);
    const client = await this.#pool.connect();
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
        broken = err instanceof Error ? err : new Error(String(err));
      }
      client.release(broken);
    }
  }

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
    await client.query("commit");
    return result;
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
