// The debug SSH audit trail on both back ends: a login is recorded when it starts, closed once with
// its bytes and reason, and listed newest first, for one job or for all.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  endDebugSession,
  listDebugSessions,
  type NewDebugSession,
  startDebugSession,
} from "../../src/store/debug-sessions.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/db.js";

function session(jobId: string, source: string): NewDebugSession {
  return {
    id: randomUUID(),
    jobId,
    orchestrator: "orch-a",
    actor: "alice",
    keyFingerprint: "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    source,
  };
}

for (const backend of BACKENDS) {
  describe(`debug sessions (${backend})`, () => {
    let td: TestDatabase;
    before(async () => {
      td = await createTestDatabase(backend);
    });
    after(() => td?.drop());

    it("records a login when it starts and closes it once with its bytes and why it ended", async () => {
      const job = randomUUID();
      const s = session(job, "192.0.2.7:50123");
      await startDebugSession(td.db, s);
      const [open] = await listDebugSessions(td.db, { jobId: job });
      assert.ok(open);
      assert.equal(open.endedAt, null, "open while it lasts");
      assert.deepEqual(
        { ...open, startedAt: undefined },
        { ...s, startedAt: undefined, endedAt: null, bytesIn: 0, bytesOut: 0, endReason: null },
      );
      // More than 2^31 bytes: the columns are bigint, read back as numbers.
      assert.equal(
        await endDebugSession(td.db, s.id, { bytesIn: 1234, bytesOut: 3_000_000_000, reason: "logged out" }),
        true,
      );
      assert.equal(
        await endDebugSession(td.db, s.id, { bytesIn: 1, bytesOut: 1, reason: "again" }),
        false,
        "a session is closed once",
      );
      const [closed] = await listDebugSessions(td.db, { jobId: job });
      assert.ok(closed?.endedAt instanceof Date);
      assert.ok(closed.endedAt.getTime() >= closed.startedAt.getTime());
      assert.deepEqual([closed.bytesIn, closed.bytesOut, closed.endReason], [1234, 3_000_000_000, "logged out"]);
    });

    it("lists the newest sessions first, of one job or of all, up to the limit", async () => {
      const [a, b] = [randomUUID(), randomUUID()];
      const first = session(a, "192.0.2.1:1");
      const second = session(b, "192.0.2.2:2");
      const third = session(a, "192.0.2.3:3");
      for (const s of [first, second, third]) {
        await startDebugSession(td.db, s);
        await new Promise((r) => setTimeout(r, 5)); // distinct start times
      }
      assert.deepEqual(
        (await listDebugSessions(td.db, { jobId: a })).map((s) => s.source),
        ["192.0.2.3:3", "192.0.2.1:1"],
      );
      const all = (await listDebugSessions(td.db)).map((s) => s.id);
      assert.deepEqual(all.slice(0, 3), [third.id, second.id, first.id]);
      assert.equal((await listDebugSessions(td.db, { limit: 1 })).length, 1);
    });
  });
}
