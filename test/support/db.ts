// Databases for tests, on both back ends: a fresh PostgreSQL database per test file, cloned from a
// template migrated once; a fresh PGlite data directory, copied from a template directory created
// once. Every database is dropped (or deleted) when its test or file ends.

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rename, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import { Client } from "pg";
import { type Db, openDb } from "../../src/store/db.js";
import { MIGRATIONS, migrate } from "../../src/store/migrate.js";

export const BACKENDS = ["postgres", "pglite"] as const;
export type Backend = (typeof BACKENDS)[number];

/** The PostgreSQL the tests use (trust auth); each test file makes its own databases in it. */
export const ADMIN_URL = process.env["GNOMON_TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test";

export interface TestDatabase {
  readonly backend: Backend;
  /** The first handle, opened by createTestDatabase. */
  readonly db: Db;
  /** postgres: the database URL; pglite: the directory that holds `pglite/` (a Store's dataDir). */
  readonly location: string;
  /** One more handle onto the same database: its own pool (postgres) or a shared instance (pglite). */
  open(opts?: { poolMax?: number }): Promise<Db>;
  /** Closes every handle and drops the database. Idempotent. */
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** Default true: the schema of this checkout's migrations is in place. */
  migrated?: boolean;
}

/** A fresh database dropped when `t` ends. */
export async function freshDatabase(t: TestContext, backend: Backend, opts?: TestDatabaseOptions) {
  const td = await createTestDatabase(backend, opts);
  t.after(() => td.drop());
  return td;
}

export async function createTestDatabase(backend: Backend, opts: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const migrated = opts.migrated ?? true;
  return backend === "postgres" ? postgresDatabase(migrated) : pgliteDatabase(migrated);
}

/** Makes a lease look expired without waiting: moves its expiry into the database's past. */
export async function expireLease(db: Db, jobId: string): Promise<void> {
  await db.query("update leases set expires_at = now() - interval '1 second' where job_id = $1", [jobId]);
}

/** Changes whenever a migration does, so that a template of an older schema is never reused. */
const SCHEMA_TAG = createHash("sha256")
  .update(MIGRATIONS.map((m) => m.checksum).join(","))
  .digest("hex")
  .slice(0, 12);

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function postgresDatabase(migrated: boolean): Promise<TestDatabase> {
  const name = `gnomon_t_${randomBytes(6).toString("hex")}`;
  const template = migrated ? await postgresTemplate() : "template0";
  await admin((c) => c.query(`create database ${name} template ${template}`));
  const url = withDatabase(ADMIN_URL, name);
  const handles: Db[] = [];
  const open = async (o: { poolMax?: number } = {}) => {
    const db = await openDb({ kind: "postgres", url, poolMax: o.poolMax });
    handles.push(db);
    return db;
  };
  let dropping: Promise<void> | undefined;
  return {
    backend: "postgres",
    db: await open(),
    location: url,
    open,
    drop: () => {
      dropping ??= (async () => {
        await Promise.all(handles.map((h) => h.close()));
        await admin((c) => c.query(`drop database if exists ${name} with (force)`));
      })();
      return dropping;
    },
  };
}

/** The migrated template database, built once per schema by whichever test file gets there first. */
async function postgresTemplate(): Promise<string> {
  const template = `gnomon_tpl_${SCHEMA_TAG}`;
  await admin(async (c) => {
    await c.query("select pg_advisory_lock(hashtext('gnomon test template'))");
    try {
      const exists = await c.query("select 1 from pg_database where datname = $1", [template]);
      if (exists.rowCount) return;
      // Built under another name and renamed when complete: a crash never leaves a half template.
      const building = `${template}_building`;
      await c.query(`drop database if exists ${building} with (force)`);
      await c.query(`create database ${building} template template0`);
      const db = await openDb({ kind: "postgres", url: withDatabase(ADMIN_URL, building), poolMax: 1 });
      try {
        await migrate(db);
      } finally {
        await db.close();
      }
      await c.query(`alter database ${building} rename to ${template}`);
    } finally {
      await c.query("select pg_advisory_unlock(hashtext('gnomon test template'))");
    }
  });
  return template;
}

/**
 * A Store dataDir holding a closed PGlite database (`<dataDir>/pglite`), opened by nobody yet;
 * deleted when `t` ends.
 */
export async function freshPgliteDataDir(t: TestContext, opts: TestDatabaseOptions = {}): Promise<string> {
  const location = await pgliteCopy(opts.migrated ?? true);
  t.after(() => rm(location, { recursive: true, force: true }));
  return location;
}

async function pgliteCopy(migrated: boolean): Promise<string> {
  const location = await mkdtemp(join(tmpdir(), "gnomon-test-"));
  // cp -a copies the template's ~1 000 small files in a fraction of fs.cp's time.
  await promisify(execFile)("cp", ["-a", await pgliteTemplate(migrated), join(location, "pglite")]);
  return location;
}

async function pgliteDatabase(migrated: boolean): Promise<TestDatabase> {
  const location = await pgliteCopy(migrated);
  const dir = join(location, "pglite");
  const handles: Db[] = [];
  const open = async () => {
    const db = await openDb({ kind: "pglite", dir });
    handles.push(db);
    return db;
  };
  let dropping: Promise<void> | undefined;
  return {
    backend: "pglite",
    db: await open(),
    location,
    open,
    drop: () => {
      dropping ??= (async () => {
        await Promise.all(handles.map((h) => h.close()));
        await rm(location, { recursive: true, force: true });
      })();
      return dropping;
    },
  };
}

function pgliteVersion(): string {
  const entry = createRequire(import.meta.url).resolve("@electric-sql/pglite");
  const pkg: unknown = JSON.parse(readFileSync(join(dirname(entry), "..", "package.json"), "utf8"));
  return typeof pkg === "object" && pkg !== null && "version" in pkg ? String(pkg.version) : "unknown";
}

/** A closed PGlite data directory (initdb done, migrated or not), kept in the temp dir between runs. */
async function pgliteTemplate(migrated: boolean): Promise<string> {
  const template = join(tmpdir(), `gnomon-test-pglite-${pgliteVersion()}-${migrated ? SCHEMA_TAG : "empty"}`);
  if (existsSync(join(template, "PG_VERSION"))) return template;
  const building = `${template}.build-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const db = await openDb({ kind: "pglite", dir: building });
    try {
      if (migrated) await migrate(db);
    } finally {
      await db.close();
    }
    await rename(building, template);
  } catch (err) {
    // Another test file finished the same template first: use theirs.
    if (!existsSync(join(template, "PG_VERSION"))) throw err;
  } finally {
    await rm(building, { recursive: true, force: true });
  }
  return template;
}

const runCommand = promisify(execFile);

/** Stops, starts or restarts this machine's PostgreSQL cluster (for outage tests; always start it again). */
export async function pgCluster(action: "stop" | "start" | "restart"): Promise<void> {
  const { stdout } = await runCommand("ls", ["/etc/postgresql"]);
  const version = stdout.trim().split("\n")[0] ?? "";
  await runCommand("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", action], { timeout: 120_000 });
}
