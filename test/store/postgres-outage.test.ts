// PostgreSQL going away under a running store: statements wait out an outage (a restart, a
// failover, a network blip) up to a tolerance and then run once; what was cut mid-flight is rolled
// back by the server and run again, so it takes effect exactly once; real errors are not retried.
// The outage is a TCP proxy in front of this machine's PostgreSQL that the test cuts and refuses.
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Db } from "../../src/store/db.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { isServerUnreachable, openPostgres } from "../../src/store/postgres-db.js";
import { capturedLog, INFO, WARN } from "../support/captured-log.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { until } from "../support/qemu-processes.js";
import { TcpProxy } from "../support/tcp-proxy.js";

describe("PostgreSQL outages", () => {
  let td: TestDatabase;
  before(async () => {
    td = await createTestDatabase("postgres");
    await td.db.exec("create table outage_counts (k text primary key, n integer not null)");
  });
  after(() => td?.drop());

  /** A Db that reaches the test database through a proxy the test controls. */
  async function throughProxy(t: TestContext, outageToleranceMs?: number) {
    const url = new URL(td.location);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.port = String(await proxy.listen());
    const captured = capturedLog();
    const db: Db = await openPostgres({ kind: "postgres", url: url.href, outageToleranceMs, log: captured.log });
    t.after(async () => {
      await proxy.accept();
      await db.close();
      await proxy.close();
    });
    return { db, proxy, captured };
  }

  it("a statement sent while the server is down waits for it and then runs; one warning, one all-clear", async (t) => {
    const { db, proxy, captured } = await throughProxy(t);
    proxy.dropAll();
    await proxy.refuse();
    let settled = false;
    const pending = db.query<{ one: number }>("select 1 as one").finally(() => (settled = true));
    await sleep(1_500);
    assert.equal(settled, false, "the statement waits while the server is unreachable");
    await proxy.accept();
    assert.deepEqual((await pending).rows, [{ one: 1 }]);
    assert.equal(captured.count(/the database is unreachable/, WARN), 1);
    assert.equal(captured.count(/the database answers again/, INFO), 1);
  });

  it("a transaction cut mid-flight is rolled back by the server and run again: it takes effect exactly once", async (t) => {
    const { db, proxy } = await throughProxy(t);
    let attempts = 0;
    const pending = db.transaction(async (tx) => {
      attempts += 1;
      await tx.query(
        "insert into outage_counts (k, n) values ('tx', 1) on conflict (k) do update set n = outage_counts.n + 1",
      );
      if (attempts === 1) await tx.query("select pg_sleep(5) -- outage test"); // cut during this
    });
    await until(
      async () => {
        const r = await td.db.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'select pg_sleep(5) -- outage test%'",
        );
        return r.rows[0]!.n > 0;
      },
      "the transaction is inside its sleep",
      10_000,
      20,
    );
    proxy.dropAll();
    await pending;
    assert.equal(attempts, 2);
    const r = await td.db.query<{ n: number }>("select n from outage_counts where k = 'tx'");
    assert.deepEqual(r.rows, [{ n: 1 }]);
  });

  // The bound is far below the default tolerance (60 s): a store that ignored its own would time out.
  it("gives up after the tolerance with an error that names the database and what to check", {
    timeout: 30_000,
  }, async (t) => {
    const { db, proxy, captured } = await throughProxy(t, 800);
    proxy.dropAll();
    await proxy.refuse();
    await assert.rejects(db.query("select 1"), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /127\.0\.0\.1:\d+.*stayed unreachable.*Check that PostgreSQL is running/);
      return true;
    });
    assert.equal(captured.count(/the database is unreachable/, WARN), 1, "it waited for the server first");
    assert.notEqual(db.unreachableSince, undefined, "and still counts the database as unreachable");
  });

  it("does not retry what is not an outage: SQL errors and constraint violations fail at once", async (t) => {
    const { db, proxy } = await throughProxy(t);
    const before = proxy.accepted;
    await assert.rejects(db.query("selec 1"), { code: "42601" });
    await db.query("insert into outage_counts (k, n) values ('dup', 1)");
    await assert.rejects(db.query("insert into outage_counts (k, n) values ('dup', 1)"), { code: "23505" });
    assert.ok(proxy.accepted - before <= 1, "no reconnect storms for a plain error");
  });

  // The bound is far below the default tolerance (60 s): a start that waited it out would time out.
  it("a store that cannot reach its database at start fails at once (no waiting out a wrong URL)", {
    timeout: 30_000,
  }, async (t) => {
    const url = new URL(td.location);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.port = String(await proxy.listen());
    await proxy.refuse();
    t.after(() => proxy.close());
    const captured = capturedLog();
    await assert.rejects(openPostgres({ kind: "postgres", url: url.href, log: captured.log }), StoreUnavailableError);
    assert.equal(captured.count(/the database is unreachable/), 0, "it did not wait for the server");
  });

  it("tells outages from errors", () => {
    const coded = (code: string, message = "x") => Object.assign(new Error(message), { code });
    for (const e of [
      coded("ECONNREFUSED"),
      coded("ECONNRESET"),
      coded("57P01", "terminating connection due to administrator command"),
      coded("57P03", "the database system is starting up"),
      coded("08006"),
      new Error("Connection terminated unexpectedly"),
      new Error("timeout exceeded when trying to connect"),
    ])
      assert.equal(isServerUnreachable(e), true, e.message);
    for (const e of [
      coded("28P01", "password authentication failed"),
      coded("3D000", 'database "nope" does not exist'),
      coded("42601"),
      coded("23505"),
      coded("ENOTFOUND"),
      new Error("something else"),
      "not an error",
    ])
      assert.equal(isServerUnreachable(e), false, String(e));
  });
});
