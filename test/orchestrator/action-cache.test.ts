// The host's action cache against real git over smart HTTP (git's own http-backend behind a small
// server that, like a forge, wants the job's token for a private repository): refs resolved at each
// request, one fetch per commit however many jobs ask at once, files without .git, the token never
// on disk, nothing from the cache for a job that cannot read the repository, and pruning.
import assert from "node:assert/strict";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { rm, utimes } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import type { ActionRequest } from "../../src/engine/host-actions.js";
import {
  ActionCache,
  ActionFetchError,
  cacheUrl,
  commitOfRef,
  entryName,
} from "../../src/orchestrator/action-cache.js";
import { rootLogger } from "../../src/telemetry/log.js";
import { createMetrics } from "../../src/telemetry/metrics.js";
import { GitRepos, gitRequestOf } from "../fakes/git-http.js";

const TOKEN = "job-token-0123456789";

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}
const header = (token: string) => `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;

describe("action cache: pure parts", () => {
  it("files a repository under one URL whatever its case, trailing slash or .git", () => {
    assert.equal(cacheUrl("HTTP://127.0.0.1:3000/Actions/Checkout.git/"), "http://127.0.0.1:3000/actions/checkout");
    const sha = "a".repeat(40);
    assert.equal(
      entryName("http://127.0.0.1:3000/actions/checkout", sha),
      entryName("http://127.0.0.1:3000/Actions/checkout.git", sha),
    );
    assert.match(
      entryName("http://h/actions/github-script", sha),
      new RegExp(`^actions-github-script-[0-9a-f]{12}-${sha}$`),
    );
    assert.notEqual(entryName("http://a/x/y", sha), entryName("http://b/x/y", sha), "another forge, another entry");
  });

  it("resolves a ref to a tag (peeled when annotated) before a branch of the same name", () => {
    const [a, b, c, d] = ["1", "2", "3", "4"].map((x) => x.repeat(40));
    const out = `${a}\trefs/heads/v1\n${b}\trefs/tags/v1\n${c}\trefs/tags/v1^{}\n${d}\trefs/heads/main\n`;
    assert.equal(commitOfRef(out, "v1"), c);
    assert.equal(commitOfRef(`${a}\trefs/heads/v1\n${b}\trefs/tags/v1\n`, "v1"), b);
    assert.equal(commitOfRef(out, "main"), d);
    assert.equal(commitOfRef(out, "refs/heads/v1"), a);
    assert.equal(commitOfRef(out, "v2"), undefined);
  });
});

describe("action cache (real git over HTTP)", () => {
  let repos: GitRepos;
  let server: Server;
  let base: string;
  /** upload-pack POSTs per repository: each is one fetch (ls-remote only reads info/refs or asks ls-refs). */
  const fetches = new Map<string, number>();
  const authorizations: string[] = [];

  before(async () => {
    repos = new GitRepos();
    repos.commit("actions/hello", { files: { "action.yml": "name: hello v1\n", "run.sh": "echo v1\n" } });
    repos.tag("actions/hello", "v1", repos.ref("actions/hello", "refs/heads/main")!, { annotated: true });
    repos.commit("org/private-action", { files: { "action.yml": "name: private\n" } });
    repos.tag("org/private-action", "v1", repos.ref("org/private-action", "refs/heads/main")!);
    server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const git = gitRequestOf(req.method ?? "GET", url.pathname, url.search.slice(1));
      if (!git || !repos.has(git.repo)) {
        res.writeHead(404).end("not found");
        return;
      }
      authorizations.push(req.headers.authorization ?? "");
      if (git.repo.startsWith("org/")) {
        const given = Buffer.from((req.headers.authorization ?? "").replace(/^basic /i, ""), "base64").toString();
        if (given !== `x-access-token:${TOKEN}`) {
          res.writeHead(401, { "www-authenticate": 'Basic realm="fake"' }).end("unauthorized");
          return;
        }
      }
      // Protocol v2 sends ls-refs and fetch both as upload-pack POSTs; count only the ones that carry "command=fetch".
      if (req.method === "POST" && url.pathname.endsWith("git-upload-pack")) {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          if (Buffer.concat(chunks).includes("command=fetch")) fetches.set(git.repo, (fetches.get(git.repo) ?? 0) + 1);
        });
      }
      repos.serve(req, res, url.pathname, url.search.slice(1));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    server?.closeAllConnections();
    await rm(repos.root, { recursive: true, force: true });
  });

  /** A cache in a folder of its own, removed when the test ends (after any prune a miss started). */
  const newCache = (t: TestContext, o: Partial<ConstructorParameters<typeof ActionCache>[0]> = {}) => {
    const dir = mkdtempSync(join(tmpdir(), "gnomon-action-cache-"));
    const metrics = createMetrics({ defaultMetrics: false });
    const cache = new ActionCache({ dir, maxAgeMs: 3_600_000, maxBytes: 1 << 30, log: rootLogger(), metrics, ...o });
    t.after(async () => {
      await cache.prune().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    });
    return { cache, dir, metrics };
  };
  const ask = (url: string, ref: string, extra: Partial<ActionRequest> = {}): ActionRequest => ({
    url,
    ref,
    signal: AbortSignal.timeout(60_000),
    ...extra,
  });

  it("fetches a tag's commit once into plain files, then serves it from the cache; metrics count both", async (t) => {
    const { cache, dir, metrics } = newCache(t);
    const commit = repos.ref("actions/hello", "refs/tags/v1^{commit}");
    const before = fetches.get("actions/hello") ?? 0;
    const first = await cache.get(ask(`${base}/actions/hello`, "v1"));
    first.release();
    assert.equal(first.commit, commit, "the annotated tag's commit");
    assert.equal(first.hit, false);
    assert.equal(readFileSync(join(first.dir, "action.yml"), "utf8"), "name: hello v1\n");
    assert.ok(!existsSync(join(first.dir, ".git")), "no .git in the cache");
    const second = await cache.get(ask(`${base}/actions/hello`, "v1"));
    second.release();
    assert.equal(second.hit, true);
    assert.equal(second.dir, first.dir);
    assert.equal(second.fetchMs, 0);
    assert.equal(fetches.get("actions/hello"), before + 1, "fetched once");
    const counted = await metrics.registry.getSingleMetricAsString("gnomon_action_cache_requests_total");
    assert.match(counted, /result="hit"\} 1/);
    assert.match(counted, /result="miss"\} 1/);
    const manifest = JSON.parse(
      readFileSync(join(dir, entryName(`${base}/actions/hello`, commit!), "manifest.json"), "utf8"),
    );
    assert.equal(manifest.commit, commit);
    assert.equal(manifest.url, `${base}/actions/hello`);
  });

  it("resolves a moved tag again at the next request and fetches its new commit", async (t) => {
    const { cache } = newCache(t);
    repos.commit("actions/moving", { files: { "action.yml": "name: one\n" } });
    repos.tag("actions/moving", "v2", repos.ref("actions/moving", "refs/heads/main")!);
    const one = await cache.get(ask(`${base}/actions/moving`, "v2"));
    one.release();
    const next = repos.commit("actions/moving", { files: { "action.yml": "name: two\n" } });
    repos.tag("actions/moving", "v2", next);
    const two = await cache.get(ask(`${base}/actions/moving`, "v2"));
    two.release();
    assert.equal(two.commit, next);
    assert.equal(two.hit, false, "a new commit is a miss");
    assert.equal(readFileSync(join(two.dir, "action.yml"), "utf8"), "name: two\n");
    assert.equal(readFileSync(join(one.dir, "action.yml"), "utf8"), "name: one\n", "the old commit's entry is intact");
    const branch = await cache.get(ask(`${base}/actions/moving`, "main"));
    branch.release();
    assert.equal(branch.commit, next, "a branch resolves to its head");
    assert.equal(branch.hit, true);
  });

  it("shares one fetch among jobs that ask for one commit at once", async (t) => {
    const { cache, dir } = newCache(t);
    repos.commit("actions/popular", { files: { "action.yml": "name: popular\n", "big.txt": "x".repeat(200_000) } });
    repos.tag("actions/popular", "v1", repos.ref("actions/popular", "refs/heads/main")!);
    const got = await Promise.all([1, 2, 3, 4].map(() => cache.get(ask(`${base}/actions/popular`, "v1"))));
    for (const g of got) g.release();
    assert.equal(fetches.get("actions/popular"), 1, "one fetch for four jobs");
    assert.equal(new Set(got.map((g) => g.dir)).size, 1);
    assert.equal(got.filter((g) => !g.hit).length, 4, "none of them found it in the cache");
    assert.equal(readdirSync(dir).filter((n) => n !== ".staging").length, 1);
    assert.deepEqual(readdirSync(join(dir, ".staging")), [], "no staging folder is left");
  });

  it("lets two processes on one cache folder fetch one commit at once: both get it, one entry stays", async (t) => {
    const { cache, dir } = newCache(t);
    const other = new ActionCache({ dir, maxAgeMs: 3_600_000, maxBytes: 1 << 30, log: rootLogger() });
    repos.commit("actions/raced", { files: { "action.yml": "name: raced\n" } });
    const got = await Promise.all([cache, other, cache, other].map((c) => c.get(ask(`${base}/actions/raced`, "main"))));
    for (const g of got) g.release();
    await other.prune();
    for (const g of got) assert.equal(readFileSync(join(g.dir, "action.yml"), "utf8"), "name: raced\n");
    assert.equal(new Set(got.map((g) => g.dir)).size, 1);
    assert.equal(readdirSync(dir).filter((n) => n !== ".staging").length, 1, readdirSync(dir).join(" "));
  });

  it("uses the job's token for a private repository and never writes it to disk", async (t) => {
    const { cache, dir } = newCache(t);
    const got = await cache.get(ask(`${base}/org/private-action`, "v1", { authorization: header(TOKEN) }));
    got.release();
    assert.equal(readFileSync(join(got.dir, "action.yml"), "utf8"), "name: private\n");
    const b64 = Buffer.from(`x-access-token:${TOKEN}`).toString("base64");
    const holding = filesUnder(dir).filter((f) => {
      const text = readFileSync(f, "latin1");
      return text.includes(TOKEN) || text.includes(b64);
    });
    assert.deepEqual(holding, [], "the token is nowhere in the cache");
  });

  it("gives a job that cannot read the repository nothing, even when the commit is cached", async (t) => {
    const { cache } = newCache(t);
    const got = await cache.get(ask(`${base}/org/private-action`, "v1", { authorization: header(TOKEN) }));
    got.release();
    await assert.rejects(
      cache.get(ask(`${base}/org/private-action`, "v1", { authorization: header("another-jobs-token") })),
      ActionFetchError,
    );
    await assert.rejects(cache.get(ask(`${base}/org/private-action`, got.commit)), ActionFetchError, "nor by SHA");
  });

  it("names the ref it cannot find, and the repository", async (t) => {
    const { cache } = newCache(t);
    await assert.rejects(cache.get(ask(`${base}/actions/hello`, "v9")), (err: unknown) => {
      assert.ok(err instanceof ActionFetchError);
      assert.match(err.message, /actions\/hello has no tag or branch "v9"/);
      return true;
    });
  });

  it("prunes entries unused for maxAge and, above maxBytes, the least recently used; never one a job holds", async (t) => {
    let now = Date.now();
    const { cache } = newCache(t, { now: () => now, maxAgeMs: 60_000, maxBytes: 1 << 30 });
    repos.commit("actions/prune-a", { files: { "a.txt": "a".repeat(10_000) } });
    repos.commit("actions/prune-b", { files: { "b.txt": "b".repeat(10_000) } });
    const a = await cache.get(ask(`${base}/actions/prune-a`, "main"));
    const b = await cache.get(ask(`${base}/actions/prune-b`, "main"));
    b.release();
    const aged = new Date(now - 120_000);
    for (const e of [a, b]) await utimes(join(e.dir, "..", "manifest.json"), aged, aged);
    await cache.prune();
    assert.ok(existsSync(a.dir), "a job still holds a: kept though old");
    assert.ok(!existsSync(b.dir), "b was unused for longer than maxAge");
    a.release();
    await cache.prune();
    assert.ok(!existsSync(a.dir), "once released, a goes too");

    // By size: three entries of about 10 kB under a limit of 25 kB: the least recently used goes.
    const small = newCache(t, { now: () => now, maxAgeMs: 3_600_000, maxBytes: 25_000 });
    repos.commit("actions/prune-c", { files: { "c.txt": "c".repeat(10_000) } });
    const entries = [];
    for (const r of ["prune-a", "prune-b", "prune-c"]) {
      now += 1_000;
      const e = await small.cache.get(ask(`${base}/actions/${r}`, "main"));
      e.release();
      await utimes(join(e.dir, "..", "manifest.json"), new Date(now), new Date(now));
      entries.push(e);
    }
    await small.cache.prune();
    assert.deepEqual(
      entries.map((e) => existsSync(e.dir)),
      [false, true, true],
    );
    assert.ok(statSync(small.dir).isDirectory());
  });
});
