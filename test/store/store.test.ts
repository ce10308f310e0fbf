// The Store service on both back ends: start migrates, stop closes and settles done, transactions
// commit all or nothing, misuse is refused the same way everywhere. Then what only the embedded
// database has: its data directory, its lock file, its memory setting.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import {
  DatabaseTooNewError,
  DataDirInUseError,
  NestedQueryError,
  StoreClosedError,
  StoreUnavailableError,
} from "../../src/store/errors.js";
import { MIGRATIONS, migrate, toMigration } from "../../src/store/migrate.js";
import { Store, type StoreOptions } from "../../src/store/store.js";
import { BACKENDS, createTestDatabase, freshDatabase, freshPgliteDataDir, type TestDatabase } from "../support/db.js";
import { sampleJobRequest } from "../support/samples.js";

const STOP_TIMEOUT_MS = 10_000;
const KILL_AFTER_JOBS = 200;

function optionsFor(td: TestDatabase): StoreOptions {
  return td.backend === "postgres" ? { databaseUrl: td.location, dataDir: "unused" } : { dataDir: td.location };
}

/** A started Store, stopped when the test ends. */
async function startedStore(t: TestContext, opts: StoreOptions): Promise<Store> {
  const store = new Store(opts);
  await store.start();
  t.after(() => store.stop(AbortSignal.timeout(STOP_TIMEOUT_MS)));
  return store;
}

for (const backend of BACKENDS) {
  describe(`Store (${backend})`, () => {
    it("migrates an empty database on start, and on stop closes it and settles done without a reason", async (t) => {
      const td = await freshDatabase(t, backend, { migrated: false });
      const store = new Store(optionsFor(td));
      await store.start();
      const { rows } = await store.db.query<{ n: number }>("select count(*)::int as n from schema_migrations");
      assert.equal(rows[0]?.n, MIGRATIONS.length);
      const { job } = await store.jobs.insert(sampleJobRequest());
      assert.equal((await store.jobs.get(job.id))?.state, "queued");

      await store.stop(AbortSignal.timeout(STOP_TIMEOUT_MS));
      assert.equal(await store.done, undefined);
      await store.stop(AbortSignal.timeout(STOP_TIMEOUT_MS)); // idempotent
      assert.throws(() => store.jobs, StoreClosedError);
      assert.throws(() => store.db, StoreClosedError);
    });

    describe("once started", () => {
      let td: TestDatabase;
      let store: Store;
      before(async () => {
        td = await createTestDatabase(backend);
        store = new Store(optionsFor(td));
        await store.start();
      });
      after(async () => {
        await store?.stop(AbortSignal.timeout(STOP_TIMEOUT_MS));
        await td?.drop();
      });

      it("commits every operation of a transaction together", async () => {
        const request = sampleJobRequest();
        await store.transaction(async (tx) => {
          await tx.jobs.insert(request);
          assert.ok((await tx.leases.acquire(request.id, "orch-a", 30_000)).acquired);
          await tx.jobs.assign(request.id, "orch-a");
        });
        assert.equal((await store.jobs.get(request.id))?.state, "assigned");
        assert.equal((await store.leases.get(request.id))?.owner, "orch-a");
      });

      it("keeps nothing of a transaction that throws", async () => {
        const request = sampleJobRequest();
        const boom = new Error("the VM could not be created");
        await assert.rejects(
          store.transaction(async (tx) => {
            await tx.jobs.insert(request);
            await tx.leases.acquire(request.id, "orch-a", 30_000);
            throw boom;
          }),
          (err: unknown) => err === boom,
        );
        assert.equal(await store.jobs.get(request.id), undefined);
        assert.equal(await store.leases.get(request.id), undefined);
      });

      it("refuses the outer handle inside its own transaction or connection, instead of escaping or deadlocking", async () => {
        await assert.rejects(
          store.transaction(() => store.jobs.get(sampleJobRequest().id)),
          NestedQueryError,
        );
        await assert.rejects(
          store.db.withConnection(() => store.db.query("select 1")),
          NestedQueryError,
        );
        assert.equal((await store.db.query<{ one: number }>("select 1 as one")).rows[0]?.one, 1, "still usable");
      });
    });

    it("refuses to start against a database a newer gnomon migrated, changing nothing in it", async (t) => {
      const td = await freshDatabase(t, backend, { migrated: false });
      const future = toMigration({ version: MIGRATIONS.length + 1, name: "9999_future", sql: "select 1;" });
      await migrate(td.db, { migrations: [...MIGRATIONS, future] });
      const store = new Store(optionsFor(td));
      await assert.rejects(store.start(), DatabaseTooNewError);
      const { rows } = await td.db.query<{ n: number }>("select count(*)::int as n from schema_migrations");
      assert.equal(rows[0]?.n, MIGRATIONS.length + 1);
    });
  });
}

describe("Store (embedded database)", () => {
  it("creates the embedded database under dataDir on first start and finds its data on the next", async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), "gnomon-test-first-"));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const first = new Store({ dataDir });
    await first.start();
    const request = sampleJobRequest();
    await first.jobs.insert(request);
    await first.stop(AbortSignal.timeout(STOP_TIMEOUT_MS));

    const second = await startedStore(t, { dataDir });
    assert.equal((await second.jobs.get(request.id))?.id, request.id);
    assert.equal(second.db.where, join(dataDir, "pglite"));
  });

  it("runs with the memory setting it was given, and a small one by default", async (t) => {
    const store = await startedStore(t, { dataDir: await freshPgliteDataDir(t) });
    const { rows } = await store.db.query<{ sb: string }>("select current_setting('shared_buffers') as sb");
    assert.equal(rows[0]?.sb, "4MB");
    await store.stop(AbortSignal.timeout(STOP_TIMEOUT_MS));

    const bigger = await startedStore(t, { dataDir: await freshPgliteDataDir(t), embeddedSharedBuffers: "16MB" });
    const r = await bigger.db.query<{ sb: string }>("select current_setting('shared_buffers') as sb");
    assert.equal(r.rows[0]?.sb, "16MB");
  });

  it("refuses a memory setting that is not a size", async (t) => {
    const store = new Store({ dataDir: await freshPgliteDataDir(t), embeddedSharedBuffers: "lots" });
    await assert.rejects(store.start(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /sharedBuffers must be a size like "4MB" \(got "lots"\)/);
      return true;
    });
  });

  it("refuses a data directory that another live process holds, naming it and the lock file", async (t) => {
    const dataDir = await freshPgliteDataDir(t);
    const lockFile = join(dataDir, "pglite.lock");
    await writeFile(lockFile, JSON.stringify({ pid: process.ppid, host: hostname() }));
    const store = new Store({ dataDir });
    await assert.rejects(store.start(), (err: unknown) => {
      assert.ok(err instanceof DataDirInUseError);
      assert.equal(err.pid, process.ppid);
      assert.match(err.message, new RegExp(`in use by process ${process.ppid}`));
      assert.ok(err.message.includes(lockFile));
      return true;
    });
  });

  it("takes over the lock file of a process that has died", async (t) => {
    const dataDir = await freshPgliteDataDir(t);
    const dead = spawnSync(process.execPath, ["-e", ""]).pid;
    await writeFile(join(dataDir, "pglite.lock"), JSON.stringify({ pid: dead, host: hostname() }));
    const store = await startedStore(t, { dataDir });
    assert.equal((await store.db.query<{ one: number }>("select 1 as one")).rows[0]?.one, 1);
  });

  it("keeps every committed job when its process is killed in the middle of writing", async (t) => {
    const dataDir = await freshPgliteDataDir(t);
    const fixture = fileURLToPath(new URL("./fixtures/insert-until-killed.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", fixture, dataDir], {
      cwd: fileURLToPath(new URL("../../", import.meta.url)),
      stdio: ["ignore", "pipe", "inherit"],
    });
    const committed: string[] = [];
    createInterface({ input: child.stdout }).on("line", (id) => {
      committed.push(id);
      if (committed.length === KILL_AFTER_JOBS) child.kill("SIGKILL");
    });
    await once(child, "close");
    assert.ok(committed.length >= KILL_AFTER_JOBS, `the writer ended after ${committed.length} jobs, before the kill`);

    const store = await startedStore(t, { dataDir }); // also takes over the lock the killed process left
    const { rows } = await store.db.query<{ n: number }>(
      "select count(*)::int as n from jobs where id = any($1::uuid[])",
      [committed],
    );
    assert.equal(rows[0]?.n, committed.length);
  });
});
