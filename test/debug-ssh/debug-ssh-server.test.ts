// The debug SSH endpoint with real ssh2 clients, a real store on PostgreSQL and a stand-in forge
// serving users' public keys: who gets into a held job's window (its actor's keys, nothing else),
// how failed logins are throttled per address and per job, how a window ends (logout, deadline,
// cancel, stop), and what the job's log says. Sessions into a VM are the e2e tests' business
// (test/e2e/debug-ssh.test.ts); here no session is opened, so no VM is needed.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { isDeepStrictEqual } from "node:util";
import type { AttemptLimit } from "../../src/debug-ssh/attempt-limiter.js";
import type { DebugAsk } from "../../src/debug-ssh/debug-request.js";
import { DebugSshServer, type HoldRequest } from "../../src/debug-ssh/debug-ssh-server.js";
import type { DebugWindow } from "../../src/debug-ssh/debug-window.js";
import { hostKeyPath, loadOrCreateHostKey } from "../../src/debug-ssh/host-key.js";
import type { PublicKey } from "../../src/debug-ssh/ssh-keys.js";
import { Store } from "../../src/store/store.js";
import { createMetrics, type Metrics } from "../../src/telemetry/metrics.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { keyPair, login } from "../support/debug-ssh-client.js";
import { until } from "../support/qemu-processes.js";
import { sampleJobRequest } from "../support/samples.js";

let td: TestDatabase;
let store: Store;

interface Endpoint {
  readonly server: DebugSshServer;
  readonly metrics: Metrics;
}

async function startEndpoint(
  t: TestContext,
  o: { addressLimit?: AttemptLimit; jobLimit?: AttemptLimit } = {},
): Promise<Endpoint> {
  const metrics = createMetrics({ defaultMetrics: false });
  const server = new DebugSshServer({
    listen: "127.0.0.1:0",
    host: "ci.example.org",
    hostKey: loadOrCreateHostKey(hostKeyPath(mkdtempSync(join(tmpdir(), "gnomon-debug-ssh-")))),
    policy: { windowMs: 30 * 60_000, maxWindowMs: 120 * 60_000, mode: "on-failure", onDebugLogging: true },
    store,
    metrics,
    ...o,
  });
  await server.start();
  t.after(() => server.stop());
  return { server, metrics };
}

/** A window for a job of alice's, whose sessions cannot open (no VM here). */
function openWindow(
  e: Endpoint,
  keys: readonly PublicKey[],
  o: { deadlineMs?: number; notes?: string[] } = {},
): DebugWindow {
  return e.server.open({
    jobId: randomUUID(),
    orchestrator: "orch-test",
    actor: "alice",
    keys,
    deadlineMs: o.deadlineMs ?? Date.now() + 60_000,
    openSession: () => Promise.reject(new Error("no VM in this test")),
    note: (text) => o.notes?.push(text),
  });
}

async function outcomes(e: Endpoint): Promise<Record<string, number>> {
  const m = await e.metrics.debugSshSessions.get();
  return Object.fromEntries(m.values.map((v) => [String(v.labels["outcome"]), v.value]));
}

/** Waits until the logins counter shows `expected` (a refusal is counted when its connection closes). */
async function countsReach(e: Endpoint, expected: Record<string, number>): Promise<void> {
  await until(
    async () => isDeepStrictEqual(await outcomes(e), expected),
    `the logins counter to show ${JSON.stringify(expected)}`,
    5_000,
  ).catch(async (err: unknown) => {
    assert.deepEqual(await outcomes(e), expected, String(err));
  });
}

/** A forge's GET /users/{name}/keys, GitHub's and Forgejo's shape, keys per user; records the headers it got. */
async function startKeyForge(
  t: TestContext,
  keys: Record<string, readonly string[]>,
  o: { refuseTokens?: boolean } = {},
): Promise<{ url: string; calls: { path: string; headers: IncomingHttpHeaders }[] }> {
  const calls: { path: string; headers: IncomingHttpHeaders }[] = [];
  const http = createServer((req, res) => {
    calls.push({ path: req.url ?? "", headers: req.headers });
    const m = /^\/api\/v1\/users\/([^/?]+)\/keys(\?.*)?$/.exec(req.url ?? "");
    if (o.refuseTokens && req.headers.authorization) return void res.writeHead(401).end("{}");
    const list = m ? keys[decodeURIComponent(m[1]!)] : undefined;
    if (!list)
      return void res.writeHead(404, { "content-type": "application/json" }).end('{"message":"user does not exist"}');
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify(list.map((key, i) => ({ id: i + 1, key, title: `key ${i}`, fingerprint: "x" }))));
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => http.close(() => r())));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, calls };
}

const ASKED: Extract<DebugAsk, { kind: "asked" }> = {
  kind: "asked",
  mode: "on-failure",
  windowMs: 30 * 60_000,
  why: "variable GNOMON_DEBUG_SSH=on-failure",
  notes: [],
};

/** What run-job hands over for a failed Forgejo job of alice's whose forge is `forgeUrl`. */
function holdRequest(forgeUrl: string, o: { actor?: string; cancel?: AbortSignal; stopping?: AbortSignal } = {}) {
  const notes: string[] = [];
  let held = 0;
  const request = sampleJobRequest({
    source: { forge: "forgejo", instance: forgeUrl, runner: "r-1" },
    contexts: {
      github: { actor: o.actor ?? "alice", triggering_actor: "", server_url: forgeUrl, api_url: `${forgeUrl}/api/v1` },
    },
  });
  const h: HoldRequest = {
    request,
    secrets: { GITHUB_TOKEN: "job-token" },
    ask: ASKED,
    result: "failure",
    orchestrator: "orch-test",
    openSession: () => Promise.reject(new Error("no VM in this test")),
    note: (text) => notes.push(text),
    onHeld: () => {
      held += 1;
    },
    cancel: o.cancel ?? new AbortController().signal,
    stopping: o.stopping ?? new AbortController().signal,
  };
  return { h, notes, held: () => held };
}

describe("debug SSH endpoint", () => {
  before(async () => {
    td = await createTestDatabase("postgres");
    store = new Store({ databaseUrl: td.location, dataDir: mkdtempSync(join(tmpdir(), "gnomon-store-")) });
    await store.start();
  });
  after(async () => {
    await store?.stop(AbortSignal.timeout(5_000));
    await td?.drop();
  });

  it("lets in only the actor's keys for the job's username, records the login, and closes the window when they log out", async (t) => {
    const e = await startEndpoint(t);
    const [alice, mallory, stray] = [keyPair(), keyPair(), keyPair()];
    const notes: string[] = [];
    const window = openWindow(e, [alice.key], { notes });
    const port = e.server.port;

    assert.equal((await login(port, window.username, mallory)).outcome, "refused", "another user's key");
    assert.equal((await login(port, window.username, stray)).outcome, "refused", "a key nobody listed");
    assert.equal((await login(port, window.username, { password: "hunter2" })).outcome, "refused", "a password");
    assert.equal((await login(port, "000000000000", alice)).outcome, "refused", "a username that names no held job");

    const { outcome, client } = await login(port, window.username, alice);
    assert.equal(outcome, "in");
    assert.equal(window.logins, 1);
    const [row] = await until(
      async () => {
        const rows = await store.debugSessions.list({ jobId: window.spec.jobId });
        return rows.length > 0 && rows;
      },
      "the login recorded",
      10_000,
    );
    assert.equal(row?.actor, "alice");
    assert.equal(row?.keyFingerprint, alice.key.fingerprint);
    assert.match(row?.source ?? "", /^127\.0\.0\.1:\d+$/);
    assert.equal(row?.endedAt, null);
    await countsReach(e, { accepted: 1, refused: 4 });

    client.end();
    assert.equal(await window.ended, "alice logged out");
    const [ended] = await store.debugSessions.list({ jobId: window.spec.jobId });
    assert.ok(ended?.endedAt instanceof Date, "the session's end is recorded before the window says it closed");
    assert.equal(ended.endReason, "logged out");
    assert.match(notes[0] ?? "", /^debug SSH: alice logged in from 127\.0\.0\.1:\d+ \(key SHA256:/);
    assert.match(
      notes[1] ?? "",
      /^debug SSH: alice's session from 127\.0\.0\.1:\d+ ended after \d+ s \(\d+ B in, \d+ B out\)$/,
    );
    assert.equal((await login(port, window.username, alice)).outcome, "refused", "a closed window lets nobody in");
  });

  it("drops an address after five failed logins in a minute, before authentication, even with the actor's key", async (t) => {
    const e = await startEndpoint(t);
    const [alice, stray] = [keyPair(), keyPair()];
    const window = openWindow(e, [alice.key]);
    const port = e.server.port;
    const seen: string[] = [];
    for (let i = 0; i < 10; i += 1) seen.push((await login(port, window.username, stray)).outcome);
    assert.deepEqual(seen, [...Array(5).fill("refused"), ...Array(5).fill("dropped")], "ten fast failures");
    assert.equal((await login(port, window.username, alice)).outcome, "dropped", "the actor too, from that address");
    await countsReach(e, { refused: 5, throttled: 6 });
    assert.equal(window.closed, false, "the window itself stays open");
  });

  it("refuses every login to a job after its failures from all addresses reach the job's limit, and says so once in the job's log", async (t) => {
    const e = await startEndpoint(t, {
      addressLimit: { failures: 100, periodMs: 60_000 },
      jobLimit: { failures: 3, periodMs: 60_000 },
    });
    const [alice, stray] = [keyPair(), keyPair()];
    const notes: string[] = [];
    const window = openWindow(e, [alice.key], { notes });
    for (let i = 0; i < 3; i += 1)
      assert.equal((await login(e.server.port, window.username, stray)).outcome, "refused");
    assert.equal((await login(e.server.port, window.username, stray)).outcome, "refused");
    assert.equal((await login(e.server.port, window.username, alice)).outcome, "refused", "the actor is refused too");
    const other = openWindow(e, [alice.key]);
    const { outcome, client } = await login(e.server.port, other.username, alice);
    assert.equal(outcome, "in", "another job's window is not throttled");
    client.end();
    assert.deepEqual(
      notes.filter((n) => n.includes("too many failed logins")).map((n) => n.replace(/until .*$/, "until …")),
      ["debug SSH: too many failed logins for this job; new logins are refused until …"],
    );
    await countsReach(e, { accepted: 1, refused: 3, throttled: 2 });
  });

  it("closes a window when its time runs out, ending the logins it has", async (t) => {
    const e = await startEndpoint(t);
    const alice = keyPair();
    const window = openWindow(e, [alice.key], { deadlineMs: Date.now() + 1_500 });
    const { outcome, client } = await login(e.server.port, window.username, alice);
    assert.equal(outcome, "in");
    const closed = new Promise<void>((r) => client.once("close", () => r()));
    assert.equal(await window.ended, "its time ran out (0 minutes)");
    await closed;
    const [row] = await store.debugSessions.list({ jobId: window.spec.jobId });
    assert.equal(row?.endReason, "its time ran out (0 minutes)");
  });

  it("holds a job: fetches its actor's keys from the forge, says the command, host key and deadline, and lets go when the job is cancelled", async (t) => {
    const e = await startEndpoint(t);
    const alice = keyPair();
    const forge = await startKeyForge(t, { alice: [alice.publicLine, "ssh-unknown AAAA not-a-key"] });
    const cancel = new AbortController();
    const { h, notes, held } = holdRequest(forge.url, { cancel: cancel.signal });
    const holding = e.server.hold(h);
    await until(() => held() === 1, "the job held", 10_000);
    assert.equal(forge.calls[0]?.path, "/api/v1/users/alice/keys?limit=50");
    assert.equal(
      forge.calls[0]?.headers.authorization,
      "token job-token",
      "Forgejo's API is asked with the job's token",
    );
    const command = notes.find((n) => n.includes(" ssh "));
    const m =
      /^debug SSH: log in with one of alice's SSH keys on the forge: ssh -p (\d+) ([0-9a-f]{12})@ci\.example\.org$/.exec(
        command ?? "",
      );
    assert.ok(m, notes.join("\n"));
    assert.equal(Number(m[1]), e.server.port);
    assert.equal(m[2], h.request.id.replaceAll("-", "").slice(0, 12));
    assert.match(
      notes.join("\n"),
      /its VM is held for alice for 30 minutes, until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(asked by variable GNOMON_DEBUG_SSH=on-failure\)/,
    );
    const fingerprint = loadOrCreateHostKey(hostKeyPath(mkdtempSync(join(tmpdir(), "x-")))).fingerprint; // another key: not this one
    assert.ok(notes.some((n) => n.includes(`host key is ssh-ed25519 SHA256:`)));
    assert.ok(!notes.some((n) => n.includes(fingerprint)));

    const { outcome, client } = await login(e.server.port, m[2]!, alice);
    assert.equal(outcome, "in");
    cancel.abort(new Error("cancelled on Forgejo"));
    await holding;
    assert.equal(
      notes.at(-1),
      "debug SSH: the window closed: the job was cancelled (cancelled on Forgejo). The VM is destroyed now; the job ends failed",
    );
    assert.equal(client.listenerCount("close") >= 0, true);
    assert.deepEqual(e.server.heldJobs, []);
  });

  it("asks the forge again without the job's token when it refuses the token, since the keys are public", async (t) => {
    const e = await startEndpoint(t);
    const alice = keyPair();
    const forge = await startKeyForge(t, { alice: [alice.publicLine] }, { refuseTokens: true });
    const stopping = new AbortController();
    const { h, held } = holdRequest(forge.url, { stopping: stopping.signal });
    const holding = e.server.hold(h);
    await until(() => held() === 1, "the job held", 10_000);
    assert.deepEqual(
      forge.calls.map((c) => c.headers.authorization ?? "(none)"),
      ["token job-token", "(none)"],
    );
    stopping.abort();
    await holding;
  });

  it("holds nothing when the actor has no key the forge lists, or the forge knows no such user, and says why", async (t) => {
    const e = await startEndpoint(t);
    const forge = await startKeyForge(t, { alice: [] });
    const none = holdRequest(forge.url);
    await e.server.hold(none.h);
    assert.equal(none.held(), 0);
    assert.deepEqual(none.notes, [
      `debug SSH: alice has no public SSH key on the forge that gnomon can check; add one to your account (${forge.url}/user/settings/keys) and run the job again; the VM is not held`,
    ]);
    const ghost = holdRequest(forge.url, { actor: "ghost" });
    await e.server.hold(ghost.h);
    assert.equal(ghost.held(), 0);
    assert.deepEqual(ghost.notes, [
      `debug SSH: the forge did not list the actor's public SSH keys at ${forge.url}/api/v1/users/ghost/keys?limit=50 (the forge knows no such user); the VM is not held`,
    ]);
  });

  it("closes every window when it stops, saying gnomon is stopping", async (t) => {
    const e = await startEndpoint(t);
    const alice = keyPair();
    const window = openWindow(e, [alice.key]);
    const { outcome } = await login(e.server.port, window.username, alice);
    assert.equal(outcome, "in");
    await e.server.stop();
    assert.equal(await window.ended, "gnomon on this host is stopping");
    assert.equal(e.server.status().state, "stopped");
  });
});
