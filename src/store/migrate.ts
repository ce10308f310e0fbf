// Applies the embedded migrations in order at start: forward-only, each in its own transaction,
// checksummed, under an advisory lock so that hosts starting together take turns. Refuses an edited
// migration and a database migrated by a newer program. It never alters or skips an applied migration.
import { createHash } from "node:crypto";
import { type Logger, rootLogger } from "../telemetry/log.js";
import type { Connection, Db } from "./db.js";
import { DatabaseTooNewError, MigrationEditedError, MigrationFailedError } from "./errors.js";
import { EMBEDDED_MIGRATIONS } from "./migrations.generated.js";

export interface Migration {
  readonly version: number;
  /** The file name without `.sql`, e.g. `0001_jobs`. */
  readonly name: string;
  readonly sql: string;
  /** sha256 of the SQL text, hex. */
  readonly checksum: string;
}

export function checksumOf(sql: string): string {
  return createHash("sha256").update(sql.replace(/\r\n/g, "\n")).digest("hex");
}

export function toMigration(m: { version: number; name: string; sql: string }): Migration {
  return { ...m, checksum: checksumOf(m.sql) };
}

/** The migrations this program carries (migrations/*.sql, embedded at build time). */
export const MIGRATIONS: readonly Migration[] = EMBEDDED_MIGRATIONS.map(toMigration);

/** "gnomon" in ASCII: the advisory lock key that serialises migrations across hosts. */
export const MIGRATE_LOCK_KEY = "113724013506414";

export interface MigrateOptions {
  /** Default: the embedded MIGRATIONS. Tests pass their own lists. */
  migrations?: readonly Migration[];
  log?: Logger;
}

export interface MigrateOutcome {
  /** Names of the migrations this call applied, in order; empty when the schema was current. */
  readonly applied: readonly string[];
  /** The schema version afterwards. */
  readonly version: number;
}

export async function migrate(db: Db, opts: MigrateOptions = {}): Promise<MigrateOutcome> {
  const migrations = opts.migrations ?? MIGRATIONS;
  const log = opts.log ?? rootLogger().child({ component: "store" });
  return db.withConnection(async (conn) => {
    // Everything below, including creating the bookkeeping table, happens under the lock:
    // concurrent `create table if not exists` can still collide in PostgreSQL's catalog.
    await conn.query("select pg_advisory_lock($1::bigint)", [MIGRATE_LOCK_KEY]);
    try {
      await conn.exec(
        "create table if not exists schema_migrations (" +
          "version integer primary key, name text not null, checksum text not null, " +
          "applied_at timestamptz not null default now())",
      );
      const applied = await appliedMigrations(conn);
      check(applied, migrations);
      const done: string[] = [];
      for (const m of migrations) {
        if (applied.has(m.version)) continue;
        await applyOne(conn, m);
        log.info({ migration: m.name }, "applied migration");
        done.push(m.name);
      }
      return { applied: done, version: Math.max(0, ...migrations.map((m) => m.version), ...applied.keys()) };
    } finally {
      await conn.query("select pg_advisory_unlock($1::bigint)", [MIGRATE_LOCK_KEY]);
    }
  });
}

/** Version → checksum of what the database has applied. */
async function appliedMigrations(conn: Connection): Promise<Map<number, string>> {
  const r = await conn.query<{ version: number; checksum: string }>(
    "select version, checksum from schema_migrations order by version",
  );
  return new Map(r.rows.map((row) => [row.version, row.checksum]));
}

function check(applied: ReadonlyMap<number, string>, migrations: readonly Migration[]): void {
  const known = new Map(migrations.map((m) => [m.version, m]));
  const lastKnown = Math.max(0, ...known.keys());
  const newest = Math.max(0, ...applied.keys());
  if (newest > lastKnown) throw new DatabaseTooNewError(newest, lastKnown);
  for (const [version, checksum] of applied) {
    const m = known.get(version);
    // A gap below the newest known version: the program lost a migration the database has.
    if (!m) throw new DatabaseTooNewError(newest, lastKnown);
    if (m.checksum !== checksum) throw new MigrationEditedError(m.name, checksum, m.checksum);
  }
}

async function applyOne(conn: Connection, m: Migration): Promise<void> {
  try {
    await conn.transaction(async (tx) => {
      await tx.exec(m.sql);
      await tx.query("insert into schema_migrations (version, name, checksum) values ($1, $2, $3)", [
        m.version,
        m.name,
        m.checksum,
      ]);
    });
  } catch (err) {
    throw new MigrationFailedError(m.name, { cause: err });
  }
}
