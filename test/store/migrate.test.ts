// Migrations on both back ends, each test on an empty database of its own: applied once in order
// (also by several hosts at once), edited ones refused, a newer database refused, failures rolled back.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Db } from "../../src/store/db.js";
import { DatabaseTooNewError, MigrationEditedError, MigrationFailedError } from "../../src/store/errors.js";
import { MIGRATE_LOCK_KEY, MIGRATIONS, type Migration, migrate, toMigration } from "../../src/store/migrate.js";
import { BACKENDS, freshDatabase } from "../support/db.js";

const LAST = MIGRATIONS.length;
const extra = (offset: number, sql: string): Migration =>
  toMigration({ version: LAST + offset, name: `${String(LAST + offset).padStart(4, "0")}_test_extra`, sql });

async function recorded(db: Db): Promise<{ version: number; name: string; checksum: string }[]> {
  const r = await db.query<{ version: number; name: string; checksum: string }>(
    "select version, name, checksum from schema_migrations order by version",
  );
  return r.rows;
}

async function tableExists(db: Db, name: string): Promise<boolean> {
  const r = await db.query<{ found: boolean }>("select to_regclass($1) is not null as found", [name]);
  return r.rows[0]?.found === true;
}

describe("embedded migrations", () => {
  it("match migrations/*.sql, so the bundle and tsx run the SQL in the checkout", () => {
    const script = fileURLToPath(new URL("../../.ci/generate-migrations.mjs", import.meta.url));
    const run = spawnSync(process.execPath, [script, "--check"], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
  });

  it("are numbered 1, 2, 3 … and start with the jobs, leases and vms tables, then the orchestrator's additions", () => {
    assert.deepEqual(
      MIGRATIONS.map((m) => m.version),
      MIGRATIONS.map((_, i) => i + 1),
    );
    assert.deepEqual(
      MIGRATIONS.slice(0, 4).map((m) => m.name),
      ["0001_jobs", "0002_leases", "0003_vms", "0004_orchestrator"],
    );
  });
});

for (const backend of BACKENDS) {
  describe(`migrate (${backend})`, () => {
    it("applies every migration to an empty database in order and records each with its checksum", async (t) => {
      const { db } = await freshDatabase(t, backend, { migrated: false });
      const outcome = await migrate(db);
      assert.deepEqual(
        outcome.applied,
        MIGRATIONS.map((m) => m.name),
      );
      assert.equal(outcome.version, LAST);
      assert.deepEqual(
        await recorded(db),
        MIGRATIONS.map(({ version, name, checksum }) => ({ version, name, checksum })),
      );
      for (const table of ["jobs", "leases", "vms"]) assert.ok(await tableExists(db, table), table);
    });

    it("changes nothing when applied a second time", async (t) => {
      const { db } = await freshDatabase(t, backend, { migrated: false });
      await migrate(db);
      const before = await recorded(db);
      const again = await migrate(db);
      assert.deepEqual(again.applied, []);
      assert.equal(again.version, LAST);
      assert.deepEqual(await recorded(db), before);
    });

    it("lets several hosts starting at once take turns, so each migration is applied exactly once", async (t) => {
      const td = await freshDatabase(t, backend, { migrated: false });
      const hosts = [td.db, ...(await Promise.all([td.open(), td.open(), td.open()]))];
      const outcomes = await Promise.all(hosts.map((db) => migrate(db)));
      assert.deepEqual(outcomes.flatMap((o) => o.applied).sort(), MIGRATIONS.map((m) => m.name).sort());
      for (const o of outcomes) assert.equal(o.version, LAST);
      assert.equal((await recorded(td.db)).length, LAST);
    });

    it("releases its lock when done, so a host starting later is not blocked", async (t) => {
      const td = await freshDatabase(t, backend, { migrated: false });
      await migrate(td.db);
      const later = await td.open();
      const r = await later.withConnection((conn) =>
        conn.query<{ got: boolean }>("select pg_try_advisory_lock($1::bigint) as got", [MIGRATE_LOCK_KEY]),
      );
      assert.equal(r.rows[0]?.got, true);
    });

    it("applies a migration added after the first start, and only that one", async (t) => {
      const { db } = await freshDatabase(t, backend, { migrated: false });
      await migrate(db);
      const added = extra(1, "create table test_added (x integer);");
      const outcome = await migrate(db, { migrations: [...MIGRATIONS, added] });
      assert.deepEqual(outcome.applied, [added.name]);
      assert.ok(await tableExists(db, "test_added"));
    });

    it("refuses to start when an applied migration was edited, naming it and the fix", async (t) => {
      const { db } = await freshDatabase(t, backend, { migrated: false });
      await migrate(db);
      const edited = MIGRATIONS.map((m) =>
        m.version === 2 ? toMigration({ ...m, sql: `${m.sql}\ncreate index leases_extra on leases (owner);\n` }) : m,
      );
      await assert.rejects(migrate(db, { migrations: edited }), (err: unknown) => {
        assert.ok(err instanceof MigrationEditedError);
        assert.equal(err.code, "store.migration-edited");
        assert.equal(err.migration, "0002_leases");
        assert.match(err.message, /Migration 0002_leases was applied with checksum/);
        assert.match(err.message, /new, higher-numbered migration/);
        return true;
      });
      assert.equal((await recorded(db)).find((m) => m.version === 2)?.checksum, MIGRATIONS[1]!.checksum);
    });

    it("refuses a database that a newer gnomon migrated further", async (t) => {
      const { db } = await freshDatabase(t, backend, { migrated: false });
      await migrate(db, { migrations: [...MIGRATIONS, extra(1, "create table test_future (x integer);")] });
      await assert.rejects(migrate(db), (err: unknown) => {
        assert.ok(err instanceof DatabaseTooNewError);
        assert.equal(err.databaseVersion, LAST + 1);
        assert.equal(err.programVersion, LAST);
        assert.match(err.message, /upgrade this host/);
        return true;
      });
    });

    it("rolls a failing migration back completely and tries none after it", async (t) => {
      const { db } = await freshDatabase(t, backend, { migrated: false });
      const failing = extra(1, "create table test_half (x integer);\nselect 1 / 0;");
      const after = extra(2, "create table test_after (x integer);");
      await assert.rejects(migrate(db, { migrations: [...MIGRATIONS, failing, after] }), (err: unknown) => {
        assert.ok(err instanceof MigrationFailedError);
        assert.equal(err.migration, failing.name);
        assert.match(err.message, /division by zero/);
        return true;
      });
      assert.equal(await tableExists(db, "test_half"), false);
      assert.equal(await tableExists(db, "test_after"), false);
      assert.equal((await recorded(db)).length, LAST, "the migrations before it stay applied");
      const fixed = extra(1, "create table test_half (x integer);");
      const outcome = await migrate(db, { migrations: [...MIGRATIONS, fixed, after] });
      assert.deepEqual(outcome.applied, [fixed.name, after.name]);
    });
  });
}
