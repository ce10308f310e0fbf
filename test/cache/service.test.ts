// The cache service as actions/cache meets it: the v1 protocol over a real loopback connection
// into accept() (as a port served into a VM), the store on a real disk, per-job credentials. What
// counts is what a client gets back and what the directory holds afterwards.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import type { CacheScope } from "../../src/cache/scope.js";
import { CacheService, type CacheServiceOptions } from "../../src/cache/service.js";
import { signCacheToken } from "../../src/cache/token.js";
import { rootLogger } from "../../src/telemetry/log.js";
import { createMetrics } from "../../src/telemetry/metrics.js";
import { CacheClient, send, serveCache } from "../support/cache-client.js";

const V = "a".repeat(64); // a version as the client computes it: sha256 hex
const MAIN: CacheScope = {
  repository: "https://forge.test/alice/app",
  write: "refs/heads/main",
  read: ["refs/heads/main"],
};
const FEATURE: CacheScope = {
  repository: "https://forge.test/alice/app",
  write: "refs/heads/feature",
  read: ["refs/heads/feature", "refs/heads/main"],
};
const OTHER_REPO: CacheScope = {
  repository: "https://forge.test/mallory/app",
  write: "refs/heads/main",
  read: ["refs/heads/main"],
};

interface Rig {
  readonly service: CacheService;
  readonly dir: string;
  readonly port: number;
  readonly metrics: ReturnType<typeof createMetrics>;
  /** A job with its own credential; `revoke()` ends it. */
  job(scope: CacheScope, ttlMs?: number): CacheClient & { revoke(): Promise<void>; token: string };
}

async function rig(t: TestContext, opts: Partial<CacheServiceOptions> & { dir?: string } = {}): Promise<Rig> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "gnomon-cache-"));
  if (!opts.dir) t.after(() => rmSync(dir, { recursive: true, force: true }));
  const metrics = createMetrics({ defaultMetrics: false });
  const service = new CacheService({
    dir,
    limits: { maxBytes: 1 << 30, repositoryMaxBytes: 1 << 29, unusedExpiryMs: 7 * 24 * 3_600_000, ...opts.limits },
    log: rootLogger(),
    metrics,
    now: opts.now,
  });
  t.after(() => service.close());
  const port = await serveCache(t, service);
  let n = 0;
  return {
    service,
    dir,
    port,
    metrics,
    job(scope, ttlMs = 60_000) {
      const grant = service.grant(`job-${++n}-${randomBytes(3).toString("hex")}`, scope, ttlMs);
      return Object.assign(new CacheClient(grant.urlFor(port)), { revoke: grant.revoke, token: grant.token });
    },
  };
}

const idOf = (a: { json: unknown }): number => (a.json as { cacheId: number }).cacheId;
const messageOf = (a: { json: unknown }): string => String((a.json as { message?: unknown })?.message ?? "");

/** The files of the store: committed entries and uploads in progress. */
function files(dir: string): { entries: string[]; uploads: string[] } {
  const list = (d: string) => (existsSync(d) ? readdirSync(d).sort() : []);
  return { entries: list(join(dir, "entries")), uploads: list(join(dir, "uploads")) };
}

async function counter(metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>) {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe("cache service", () => {
  it("saves an entry from chunks sent out of order and restores it whole, with the answers actions/cache reads", async (t) => {
    const r = await rig(t);
    const job = r.job(MAIN);
    const data = randomBytes(300_000);
    const reserved = await job.reserve("npm-linux-abc", V, data.length);
    assert.equal(reserved.status, 201);
    const id = idOf(reserved);
    assert.ok(Number.isInteger(id) && id > 0, "cacheId is a positive number (the client tests it for truth)");
    // Three chunks, last first, as concurrent uploads may land.
    for (const [s, e] of [
      [200_000, 299_999],
      [0, 99_999],
      [100_000, 199_999],
    ] as const)
      assert.equal((await job.patch(id, s, e, data.subarray(s, e + 1))).status, 204);
    assert.equal((await job.commit(id, data.length)).status, 204);

    const miss = await job.lookup(["yarn-"], V);
    assert.equal(miss.status, 204, "a miss is 204 with no body, which the client reads as no cache");
    const hit = await job.lookup(["npm-linux-abc"], V);
    assert.equal(hit.status, 200);
    const body = hit.json as Record<string, string>;
    assert.equal(body["cacheKey"], "npm-linux-abc");
    assert.equal(body["scope"], "refs/heads/main");
    assert.equal(
      body["archiveLocation"],
      `http://127.0.0.1:${r.port}/${job.token}/_apis/artifactcache/artifacts/${id}`,
      "the download URL carries the credential: the client fetches it without Authorization",
    );
    const got = await job.download(body["archiveLocation"]!);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(data), "the archive comes back byte for byte");

    assert.equal(await counter(r.metrics, "gnomon_cache_lookups_total", { result: "hit" }), 1);
    assert.equal(await counter(r.metrics, "gnomon_cache_lookups_total", { result: "miss" }), 1);
    assert.equal(await counter(r.metrics, "gnomon_cache_bytes_total", { direction: "saved" }), data.length);
    assert.equal(await counter(r.metrics, "gnomon_cache_bytes_total", { direction: "restored" }), data.length);
    assert.equal(await counter(r.metrics, "gnomon_cache_stored_bytes", {}), data.length);
    assert.deepEqual(files(r.dir), { entries: [`${id}.data`, `${id}.json`], uploads: [] });
  });

  it("matches as GitHub does: the exact key first, then the newest entry a key prefixes, without regard to case, same version only", async (t) => {
    let now = 1_000_000;
    const r = await rig(t, { now: () => now });
    const job = r.job(MAIN);
    const save = async (key: string, version = V) => {
      now += 1_000;
      await job.save(key, version, Buffer.from(key));
    };
    await save("deps-linux-1");
    await save("deps-linux-2");
    await save("deps-linux"); // newest, and an exact match for "deps-linux"
    await save("deps-windows-1", "b".repeat(64));
    const restore = async (keys: string[], version = V) => (await job.restore(keys, version))?.key;
    assert.equal(await restore(["deps-linux"]), "deps-linux", "exact beats prefix");
    assert.equal(await restore(["DEPS-LINUX-1"]), "deps-linux-1", "keys compare without case");
    assert.equal(
      await restore(["deps-linux-9", "deps-linux-"]),
      "deps-linux-2",
      "a restore key takes the newest it prefixes",
    );
    assert.equal(await restore(["nothing", "deps-l"]), "deps-linux", "the newest of all prefixed");
    assert.equal(await restore(["deps-windows"]), undefined, "another version never matches");
    assert.equal(await restore(["deps-windows"], "b".repeat(64)), "deps-windows-1");
  });

  it("a job restores from its own ref, then the default branch, and saves into its own ref only", async (t) => {
    const r = await rig(t);
    const main = r.job(MAIN);
    await main.save("build", V, Buffer.from("from main"));
    await main.save("main-only", V, Buffer.from("main's"));
    const feature = r.job(FEATURE);
    const fromMain = await feature.restore(["build"], V);
    assert.equal(fromMain?.data.toString(), "from main");
    assert.equal(fromMain?.scope, "refs/heads/main");
    // Saving the same key on the feature branch is no conflict: it goes into the feature's scope.
    await feature.save("build", V, Buffer.from("from feature"));
    assert.equal((await feature.restore(["build"], V))?.data.toString(), "from feature", "its own ref comes first");
    const mainAgain = r.job(MAIN);
    const back = await mainAgain.restore(["build"], V);
    assert.equal(back?.data.toString(), "from main", "the default branch's entry is untouched");
    assert.equal(back?.scope, "refs/heads/main");
    const pr = r.job({
      repository: MAIN.repository,
      write: "refs/pull/7/merge",
      read: ["refs/pull/7/merge", "refs/heads/feature", "refs/heads/main"],
    });
    assert.equal(
      (await pr.restore(["build"], V))?.data.toString(),
      "from feature",
      "a pull request reads its base before the default branch",
    );
    assert.equal((await pr.restore(["main-only"], V))?.data.toString(), "main's");
    // A job that may read only main's scope never sees the feature's entries, not even listed.
    const listed = (await mainAgain.list("build")).json as { totalCount: number; artifactCaches: { scope: string }[] };
    assert.deepEqual(
      listed.artifactCaches.map((c) => c.scope),
      ["refs/heads/main"],
    );
  });

  it("another repository's job can neither find, download nor overwrite an entry, and forged or ended credentials are refused", async (t) => {
    const r = await rig(t);
    const owner = r.job(MAIN);
    const id = await owner.save("secret-build", V, Buffer.from("owner's bytes"));
    const archive = ((await owner.lookup(["secret-build"], V)).json as { archiveLocation: string }).archiveLocation;

    const mallory = r.job(OTHER_REPO);
    assert.equal((await mallory.lookup(["secret-build"], V)).status, 204, "no match across repositories");
    const stolenPath = archive.replace(owner.token, mallory.token);
    assert.equal((await mallory.download(stolenPath)).status, 404, "the id is not readable with its own credential");
    assert.equal((await mallory.patch(id, 0, 2, Buffer.from("bad"))).status, 404, "nor writable");
    assert.equal((await mallory.commit(id, 3)).status, 404);
    // Its save of the same key is its own entry, in its own repository.
    await mallory.save("secret-build", V, Buffer.from("poison"));
    assert.equal((await owner.restore(["secret-build"], V))?.data.toString(), "owner's bytes");

    // Forged: claims of the owner's repository, signed with another key.
    const forged = signCacheToken({ job: "forged", exp: Date.now() + 60_000, ...MAIN }, randomBytes(32));
    const forgedClient = new CacheClient(`http://127.0.0.1:${r.port}/${forged}/`);
    const refused = await forgedClient.lookup(["secret-build"], V);
    assert.equal(refused.status, 401);
    assert.match(messageOf(refused), /not one gnomon issued \(bad signature\)/);
    // Tampered: mallory's valid token with the repository changed keeps mallory's signature.
    const [p, body, sig] = mallory.token.split(".");
    const claims = JSON.parse(Buffer.from(body!, "base64url").toString()) as Record<string, unknown>;
    const tampered = `${p}.${Buffer.from(JSON.stringify({ ...claims, repository: MAIN.repository })).toString("base64url")}.${sig}`;
    assert.equal(
      (await new CacheClient(`http://127.0.0.1:${r.port}/${tampered}/`).lookup(["secret-build"], V)).status,
      401,
    );
    assert.equal(
      (await send(`http://127.0.0.1:${r.port}/_apis/artifactcache/cache?keys=a&version=b`, "GET")).status,
      401,
      "no credential",
    );
    // Ended: the owner's job is over, so its credential is dead, also for the archive URL it was given.
    await owner.revoke();
    const ended = await owner.download(archive);
    assert.equal(ended.status, 401);
    assert.match(messageOf(ended), /job has ended/);
    // Expired: a credential past its lifetime is refused though its job was never revoked.
    const brief = r.job(MAIN, 1);
    await new Promise((res) => setTimeout(res, 5));
    assert.equal((await brief.lookup(["secret-build"], V)).status, 401);
  });

  it("refuses a chunk shorter or longer than its Content-Range, and a commit over missing bytes, leaving nothing behind", async (t) => {
    const r = await rig(t);
    const job = r.job(MAIN);
    const data = randomBytes(10_000);
    const id = idOf(await job.reserve("k", V, data.length));
    assert.equal((await job.patch(id, 0, 4_999, data.subarray(0, 5_000))).status, 204);
    // Corrupt: a retry of the same range that carries too few bytes, then one with too many.
    const short = await job.patch(id, 0, 4_999, data.subarray(0, 3_000));
    assert.equal(short.status, 400);
    assert.match(messageOf(short), /ended after 3000 of its 5000 bytes/);
    const long = await job.patch(id, 5_000, 9_999, Buffer.concat([data.subarray(5_000), Buffer.from("extra")]));
    assert.equal(long.status, 400);
    assert.match(messageOf(long), /carries more than its 5000 bytes/);
    assert.equal((await job.patch(id, 5_000, 9_999, data.subarray(5_000))).status, 204);
    // The first half was spoilt by the short retry: committing now is a truncated upload.
    const truncated = await job.commit(id, data.length);
    assert.equal(truncated.status, 400);
    assert.match(messageOf(truncated), /bytes 0-4999 of the 10000 committed never arrived whole/);
    assert.equal((await job.lookup(["k"], V)).status, 204, "nothing half-written is served");
    assert.deepEqual(files(r.dir), { entries: [], uploads: [] }, "the upload is gone");
    assert.equal(r.service.store.usage().claimedBytes, 0, "and so is its share of the quota");
    assert.equal((await job.commit(id, data.length)).status, 404, "its id is spent");
    // A bad Content-Range and a size that disagrees with the reservation.
    const id2 = idOf(await job.reserve("k", V, 4));
    assert.equal(
      (await send(`${job.baseUrl}_apis/artifactcache/caches/${id2}`, "PATCH", { body: Buffer.from("abcd") })).status,
      400,
    );
    assert.equal((await job.patch(id2, 0, 3, Buffer.from("abcd"))).status, 204);
    const mismatch = await job.commit(id2, 5);
    assert.equal(mismatch.status, 400);
    assert.match(messageOf(mismatch), /says 5 bytes but 4 were reserved/);
    // The key is free again and a whole upload goes through.
    await job.save("k", V, data);
    assert.ok((await job.restore(["k"], V))?.data.equals(data));
    assert.equal(files(r.dir).uploads.length, 0);
  });

  it("answers 409 to a reserve of a key that exists or is being saved: the first save wins, and an abandoned upload frees the key", async (t) => {
    const r = await rig(t);
    const first = r.job(MAIN);
    const second = r.job(MAIN);
    const id = idOf(await first.reserve("shared", V, 3));
    const busy = await second.reserve("SHARED", V, 3);
    assert.equal(busy.status, 409);
    assert.match(messageOf(busy), /another job is saving/);
    // The first job ends without committing: its upload is dropped and the key is free.
    await first.revoke();
    assert.equal(files(r.dir).uploads.length, 0);
    const id2 = idOf(await second.reserve("shared", V, 3));
    assert.notEqual(id2, id);
    assert.equal((await second.patch(id2, 0, 2, Buffer.from("one"))).status, 204);
    assert.equal((await second.commit(id2, 3)).status, 204);
    const exists = await r.job(MAIN).reserve("shared", V, 3);
    assert.equal(exists.status, 409);
    assert.match(messageOf(exists), /Cache already exists\. Scope: refs\/heads\/main, Key: shared/);
    assert.equal(
      (await r.job(MAIN).reserve("shared", "c".repeat(64), 3)).status,
      201,
      "another version is another entry",
    );
  });

  it("refuses an entry over the limits with 400 (at reserve, or when chunks outgrow it) and stores nothing", async (t) => {
    const r = await rig(t, { limits: { maxBytes: 10_000, repositoryMaxBytes: 4_000, unusedExpiryMs: 3_600_000 } });
    const job = r.job(MAIN);
    const big = await job.reserve("big", V, 4_001);
    assert.equal(big.status, 400);
    assert.match(messageOf(big), /over the data cap limit of one repository \(4000 B\)/);
    const id = idOf(await job.reserve("small", V, 100));
    const beyond = await job.patch(id, 0, 100, randomBytes(101));
    assert.equal(beyond.status, 400, "a chunk past the reserved size");
    assert.match(messageOf(beyond), /beyond the 100 bytes reserved/);
    // Without a declared size, chunks are bounded by the repository's limit.
    const open = idOf(await job.reserve("unsized", V));
    assert.equal((await job.patch(open, 3_000, 4_000, randomBytes(1_001))).status, 400);
    assert.equal((await job.commit(open, 4_001)).status, 400);
    assert.equal((await job.commit(id, 100)).status, 400, "a commit over nothing received");
    assert.deepEqual(files(r.dir), { entries: [], uploads: [] });
    assert.equal(r.service.store.usage().claimedBytes, 0);
  });

  it("answers 404 for an unknown cache id: chunk, commit and download", async (t) => {
    const r = await rig(t);
    const job = r.job(MAIN);
    const chunk = await job.patch(424242, 0, 0, Buffer.from("x"));
    assert.equal(chunk.status, 404);
    assert.match(messageOf(chunk), /cache 424242 is not an upload of this job/);
    assert.equal((await job.commit(424242, 1)).status, 404);
    assert.equal((await job.download(`${job.baseUrl}_apis/artifactcache/artifacts/424242`)).status, 404);
    assert.equal((await send(`${job.baseUrl}_apis/artifactcache/nothing`, "GET")).status, 400);
    assert.deepEqual(files(r.dir), { entries: [], uploads: [] });
  });

  it("makes room by evicting the repository's least recently used entries, and other repositories' only for the host limit", async (t) => {
    let now = 5_000_000;
    const r = await rig(t, {
      now: () => now,
      limits: { maxBytes: 5_000, repositoryMaxBytes: 3_000, unusedExpiryMs: 3_600_000 },
    });
    const a = r.job(MAIN);
    const b = r.job(OTHER_REPO);
    const kb = randomBytes(1_000);
    for (const k of ["a1", "a2", "a3"]) {
      now += 1_000;
      await a.save(k, V, kb);
    }
    now += 1_000;
    await b.save("b1", V, kb);
    now += 1_000;
    assert.ok(await a.restore(["a1"], V), "a1 is used again: a2 is now the least recently used");
    now += 1_000;
    await a.save("a4", V, kb); // the repository is full (3 000): a2 goes
    const keys = () =>
      r.service.store
        .entries()
        .map((e) => e.key)
        .sort();
    assert.deepEqual(keys(), ["a1", "a3", "a4", "b1"]);
    now += 1_000;
    // B has room (1 000 + 2 000), the host has not (4 000 + 2 000 > 5 000): the least recently used
    // entry goes, whoever's it is (a3), and no more than needed.
    await b.save("b2", V, randomBytes(2_000));
    assert.deepEqual(keys(), ["a1", "a4", "b1", "b2"]);
    assert.equal(r.service.store.usage().bytes, 5_000);
    assert.equal(await counter(r.metrics, "gnomon_cache_entries_removed_total", { reason: "evicted" }), 2);
    assert.equal(await counter(r.metrics, "gnomon_cache_stored_bytes", {}), 5_000);
    assert.equal(files(r.dir).entries.length, 8, "the evicted entries' files are gone");
  });

  it("a restart serves the committed entries and deletes what was half-done: uploads, archives without metadata, temp files", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "gnomon-cache-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const before = await rig(t, { dir });
    const job = before.job(MAIN);
    const data = randomBytes(2_000);
    const id = await job.save("kept", V, data);
    const half = idOf(await job.reserve("half", V, 1_000));
    assert.equal((await job.patch(half, 0, 499, randomBytes(500))).status, 204);
    await before.service.close(); // the process ends with an upload open
    // What a crash between the steps of a commit leaves: an archive renamed but no metadata yet, a temp file.
    writeFileSync(join(dir, "entries", "9000.data"), "renamed, never described");
    writeFileSync(join(dir, "entries", "9001.json.tmp"), "{");
    assert.deepEqual(files(dir).uploads, [`${half}.part`]);

    const after = await rig(t, { dir });
    const again = after.job(MAIN);
    const got = await again.restore(["kept"], V);
    assert.ok(got?.data.equals(data), "the committed entry survives the restart");
    assert.equal((await again.lookup(["half"], V)).status, 204);
    assert.deepEqual(files(dir), { entries: [`${id}.data`, `${id}.json`], uploads: [] });
    assert.equal((await again.reserve("half", V, 1_000)).status, 201, "the key of the lost upload is free");
    const next = idOf(await again.reserve("next", V, 1));
    assert.ok(next > id, "ids go on above the committed ones");
  });

  it("answers 503 while another live gnomon process owns the cache directory, and takes it over once that process is gone", async (t) => {
    const r = await rig(t);
    const other: ChildProcess = spawn("sleep", ["60"], { stdio: "ignore" });
    t.after(() => other.kill());
    writeFileSync(join(r.dir, "owner.lock"), `${JSON.stringify({ pid: other.pid, host: hostname() })}\n`);
    const job = r.job(MAIN);
    const busy = await job.lookup(["k"], V);
    assert.equal(busy.status, 503);
    assert.match(messageOf(busy), new RegExp(`in use by gnomon process ${other.pid}`));
    other.kill();
    await new Promise((res) => other.once("exit", res));
    assert.equal((await job.lookup(["k"], V)).status, 204, "a dead owner's lock is taken over");
  });

  it("deletes entries not restored within unusedExpiry, and keeps those restored since", async (t) => {
    let now = 10_000_000;
    const hour = 3_600_000;
    const r = await rig(t, {
      now: () => now,
      limits: { maxBytes: 1 << 20, repositoryMaxBytes: 1 << 20, unusedExpiryMs: 24 * hour },
    });
    const job = r.job(MAIN, 100 * hour);
    await job.save("old", V, Buffer.from("old"));
    await job.save("used", V, Buffer.from("used"));
    now += 20 * hour;
    assert.ok(await job.restore(["used"], V));
    now += 5 * hour; // "old" unused for 25 h, "used" for 5 h
    await job.save("new", V, Buffer.from("new")); // each reserve sweeps
    assert.deepEqual(
      r.service.store
        .entries()
        .map((e) => e.key)
        .sort(),
      ["new", "used"],
    );
    assert.equal(await counter(r.metrics, "gnomon_cache_entries_removed_total", { reason: "expired" }), 1);
  });

  it("is no proxy: a CONNECT or an absolute URL through the cache's port reaches nothing else", async (t) => {
    const r = await rig(t);
    const target = createServer((s) => s.end("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nreached"));
    target.listen(0, "127.0.0.1");
    await once(target, "listening");
    t.after(() => target.close());
    const port = (target.address() as { port: number }).port;
    const reached: string[] = [];
    target.on("connection", () => reached.push("connection"));
    const absolute = await new Promise<string>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: r.port }, () =>
        s.write(`GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
      );
      let got = "";
      s.on("data", (d: Buffer) => {
        got += d.toString();
      });
      s.on("close", () => resolve(got));
    });
    assert.match(absolute, /^HTTP\/1\.1 401 /, "an absolute URL is answered here, as a request without a credential");
    const tunnel = await new Promise<string>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: r.port }, () =>
        s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
      );
      let got = "";
      s.on("data", (d: Buffer) => {
        got += d.toString();
      });
      s.on("close", () => resolve(got));
      s.on("error", () => resolve(got));
    });
    assert.doesNotMatch(tunnel, /200/, "no tunnel");
    assert.deepEqual(reached, [], "the other service was never connected to");
  });
});
