// The embedded database is private to gnomon's user whatever the umask: after it opens, and after
// PostgreSQL has created files while running, nothing under the data directory is accessible to
// group or others; a database an earlier gnomon left world-writable is tightened at the next open.
import assert from "node:assert/strict";
import { chmodSync, lstatSync, mkdtempSync, readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Store } from "../../src/store/store.js";

/** Every path under `dir` (itself included) with its permission bits. */
function modes(dir: string): [path: string, mode: number][] {
  const st = lstatSync(dir);
  const here: [string, number][] = [[dir, st.mode & 0o7777]];
  if (!st.isDirectory()) return here;
  return [...here, ...readdirSync(dir).flatMap((name) => modes(join(dir, name)))];
}

function assertPrivate(dir: string, when: string): void {
  const open = modes(dir).filter(([, mode]) => (mode & 0o077) !== 0);
  assert.deepEqual(
    open.slice(0, 5).map(([p, m]) => `${p} ${m.toString(8)}`),
    [],
    `${open.length} paths are group- or other-accessible ${when}`,
  );
}

/** Runs with the process umask at 0, the worst case, and puts it back afterwards. */
function withUmaskZero(t: TestContext): void {
  const before = process.umask(0);
  t.after(() => process.umask(before));
}

async function storeIn(dataDir: string): Promise<Store> {
  const store = new Store({ dataDir });
  await store.start();
  // Files PostgreSQL creates while it runs: a new table, rows, a checkpoint.
  await store.db.exec(
    "create table if not exists private_check (n int); insert into private_check select generate_series(1, 1000);",
  );
  await store.db.exec("checkpoint");
  return store;
}

describe("embedded database file modes", () => {
  it("creates the data directory 0700 and every file of the database 0600 (dirs 0700), under umask 0", async (t) => {
    withUmaskZero(t);
    const parent = mkdtempSync(join(tmpdir(), "gnomon-private-"));
    t.after(() => rm(parent, { recursive: true, force: true }));
    const dataDir = join(parent, "data");
    const store = await storeIn(dataDir);
    try {
      assert.equal(lstatSync(dataDir).mode & 0o777, 0o700, "the data directory gnomon created");
      assertPrivate(join(dataDir, "pglite"), "after opening and writing");
    } finally {
      await store.stop(AbortSignal.timeout(10_000));
    }
    assertPrivate(join(dataDir, "pglite"), "after closing");
  });

  it("tightens a database an earlier version left world-writable when it opens it again", async (t) => {
    const parent = mkdtempSync(join(tmpdir(), "gnomon-private-"));
    t.after(() => rm(parent, { recursive: true, force: true }));
    const dataDir = join(parent, "data");
    await (await storeIn(dataDir)).stop(AbortSignal.timeout(10_000));
    for (const [path] of modes(join(dataDir, "pglite"))) chmodSync(path, lstatSync(path).isDirectory() ? 0o777 : 0o666);
    withUmaskZero(t);
    const store = await storeIn(dataDir);
    try {
      assertPrivate(join(dataDir, "pglite"), "after opening it again");
    } finally {
      await store.stop(AbortSignal.timeout(10_000));
    }
  });
});
