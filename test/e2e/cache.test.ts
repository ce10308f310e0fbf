// The Actions cache end to end for Forgejo jobs: the fake Forgejo, the runner role, RabbitMQ, the
// orchestrator on PostgreSQL with its cache service, and real VMs of the offline test image, whose
// steps speak the cache protocol the way @actions/cache does (with python3: the image has no Node.js).
// Runs of one repository share their entries by GitHub's scoping rules; another repository's job
// gets nothing of them, whatever credential it tries.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { CacheService } from "../../src/cache/service.js";
import { createForgejoRunner } from "../../src/cli/forgejo.js";
import { Config } from "../../src/config/schema.js";
import { type FakeForgejo, type FakeForgejoOptions, startFakeForgejo, type TaskView } from "../fakes/forgejo-server.js";
import { registerForgejoWithCli } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startFakeInternet } from "../support/fake-internet.js";
import { nextVm, type Stage, startForgejoRunner, startStage, testLogger, vmGone } from "../support/forge-e2e.js";
import { RELEASED_ACTIONS } from "../support/released-actions.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { testImage } from "../support/test-image.js";

const VM_JOB_MS = 300_000;

/**
 * A git repository of released action files, one commit per release with its tags, as the
 * action's repository holds them (`uses: actions/cache@v4` resolves the tag v4), published bare
 * under `served` for git's dumb HTTP protocol.
 */
function releasedActionsRepo(
  work: string,
  served: string,
  releases: readonly { from: string; tags: readonly string[] }[],
): void {
  mkdirSync(work, { recursive: true });
  const git = (cwd: string, ...args: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.org", ...args], { cwd, stdio: "ignore" });
  git(work, "init", "-q", "-b", "main");
  for (const r of releases) {
    for (const name of readdirSync(work)) if (name !== ".git") rmSync(join(work, name), { recursive: true });
    cpSync(r.from, work, { recursive: true });
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", r.tags[0]!);
    for (const tag of r.tags) git(work, "tag", "-f", tag);
  }
  mkdirSync(join(served, ".."), { recursive: true });
  git(work, "clone", "-q", "--bare", work, served);
  git(served, "update-server-info");
}

/** A client of the protocol as @actions/cache speaks it, for python3 in the guest. */
const CLIENT = String.raw`
import base64, hashlib, json, os, sys, urllib.error, urllib.parse, urllib.request
BASE = os.environ["ACTIONS_CACHE_URL"]
VERSION = hashlib.sha256(b"cache-e2e|zstd-without-long|1.0").hexdigest()
ACCEPT = {"Accept": "application/json;api-version=6.0-preview.1"}

def call(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers={**ACCEPT, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def api(base, resource):
    return base + "_apis/artifactcache/" + resource

def lookup(base, keys):
    q = "cache?keys=" + urllib.parse.quote(",".join(keys), safe="") + "&version=" + VERSION
    status, body = call("GET", api(base, q))
    return status, (json.loads(body) if status == 200 else None)

def save(base, key, data):
    """reserve, two chunks (the second half first), commit: (status of the step that ended it, cache id or answer)"""
    status, body = call("POST", api(base, "caches"), json.dumps({"key": key, "version": VERSION, "cacheSize": len(data)}).encode(), {"Content-Type": "application/json"})
    if status != 201:
        return status, json.loads(body).get("message", "")
    cid = json.loads(body)["cacheId"]
    half = len(data) // 2
    for start, end in ((half, len(data) - 1), (0, half - 1)):
        status, body = call("PATCH", api(base, "caches/%d" % cid), data[start:end + 1], {"Content-Type": "application/octet-stream", "Content-Range": "bytes %d-%d/*" % (start, end)})
        if status != 204:
            return status, body
    status, body = call("POST", api(base, "caches/%d" % cid), json.dumps({"size": len(data)}).encode(), {"Content-Type": "application/json"})
    return status, cid

def restore(base, keys):
    status, hit = lookup(base, keys)
    if status != 200:
        return status, None
    s, data = call("GET", hit["archiveLocation"])  # as the client does: no Authorization header
    assert s == 200, "download answered %d" % s
    return hit, data

def output(name, value):
    with open(os.environ["GITHUB_OUTPUT"], "a") as f:
        f.write("%s=%s\n" % (name, value))
`;

/** One python3 step: the client, then `body`. */
function pyStep(name: string, id: string, body: string): string {
  const script = `${CLIENT}\n${body}`
    .trim()
    .split("\n")
    .map((l) => `          ${l}`)
    .join("\n");
  return `      - name: ${name}\n        id: ${id}\n        shell: python3 {0}\n        run: |\n${script}`;
}

/** The workflow every run of alice/app runs: restore the key, then try to save it. */
const APP_WORKFLOW = `name: ci
on: push
jobs:
  build:
    runs-on: linux
    outputs:
      id: \${{ steps.save.outputs.id }}
    steps:
${pyStep(
  "Restore",
  "restore",
  `hit, data = restore(BASE, ["e2e-deps-" + os.environ["RUNNER_OS"], "e2e-deps-"])
if data is None:
    print("restore: miss (%d)" % hit)
else:
    print("restore: hit %s from %s: %s" % (hit["cacheKey"], hit["scope"], data.decode()))`,
)}
${pyStep(
  "Save",
  "save",
  `content = ("saved by run %s on %s " % (os.environ["GITHUB_RUN_ID"], os.environ["GITHUB_REF"])).encode() + os.urandom(3000).hex().encode()
status, result = save(BASE, "e2e-deps-" + os.environ["RUNNER_OS"], content)
if status == 204:
    print("save: saved as cache %d" % result)
    output("id", result)
else:
    print("save: %d %s" % (status, result))`,
)}
`;

/** What a job of mallory/app tries against alice/app's entry `victim` (its cache id). */
function attackWorkflow(victim: string): string {
  return `name: ci
on: push
jobs:
  poke:
    runs-on: linux
    steps:
${pyStep(
  "With its own credential",
  "own",
  `status, hit = lookup(BASE, ["e2e-deps-Linux", "e2e-deps-"])
print("own lookup: %d" % status)
print("own download of cache ${victim}: %d" % call("GET", api(BASE, "artifacts/${victim}"))[0])
print("own chunk into cache ${victim}: %d" % call("PATCH", api(BASE, "caches/${victim}"), b"poison", {"Content-Range": "bytes 0-5/*"})[0])
print("own commit of cache ${victim}: %d" % call("POST", api(BASE, "caches/${victim}"), b'{"size": 6}', {"Content-Type": "application/json"})[0])
status, result = save(BASE, "e2e-deps-Linux", b"poisoned by mallory")
print("own save of the same key: %d" % status)`,
)}
${pyStep(
  "With forged credentials",
  "forged",
  `head, _, token = BASE.rstrip("/").rpartition("/")
prefix, body, sig = token.split(".")
claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
claims["repository"] = claims["repository"].replace("mallory/app", "alice/app")
forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
for name, cred in (("tampered", "%s.%s.%s" % (prefix, forged, sig)), ("made-up", "%s.%s.%s" % (prefix, forged, "A" * len(sig)))):
    base = "%s/%s/" % (head, cred)
    print("%s lookup: %d" % (name, lookup(base, ["e2e-deps-Linux"])[0]))
    print("%s download of cache ${victim}: %d" % (name, call("GET", api(base, "artifacts/${victim}"))[0]))
    print("%s reserve: %d" % (name, save(base, "e2e-deps-Linux", b"poison")[0]))`,
)}
`;
}

function finished(forgejo: FakeForgejo, jobId: number): Promise<TaskView> {
  return forgejo.waitFor(
    () => {
      const t = forgejo.taskOfJob(jobId);
      return t && t.status !== "running" && t.logArchived ? t : undefined;
    },
    `job ${jobId} to end with its log archived`,
    VM_JOB_MS,
  );
}

/** The lines a step printed after its header group. */
function printed(task: TaskView, index: number): string[] {
  const s = task.steps[index];
  assert.ok(s, `step ${index} exists`);
  const rows = task.rows.slice(s.logIndex, s.logIndex + s.logLength);
  return rows.slice(rows.indexOf("##[endgroup]") + 1);
}

/**
 * The stage with a cache: a CacheService of its own (as `gnomon up` gives its orchestrator), the
 * orchestrator serving it, a Forgejo runner; `run` queues a job and waits for it and its VM to end.
 */
async function cacheStage(t: TestContext, name: string, forgejoOptions: FakeForgejoOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), "gnomon-e2e-cache-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = new CacheService({
    dir,
    limits: { maxBytes: 1 << 30, repositoryMaxBytes: 1 << 28, unusedExpiryMs: 3_600_000 },
    log: testLogger(),
  });
  t.after(() => cache.close());
  const forgejo = await startFakeForgejo(undefined, forgejoOptions);
  const stage: Stage = await startStage(t, { databaseUrl: td.location, name, cache });
  stage.beforeTeardown(() => forgejo.close());
  const file = await registerForgejoWithCli(forgejo, "linux:vm:test");
  const runner = await startForgejoRunner(stage, file);
  const run = async (input: Parameters<FakeForgejo["queueJob"]>[0]): Promise<TaskView> => {
    const jobId = forgejo.queueJob(input);
    const vm = await nextVm(stage);
    const task = await finished(forgejo, jobId);
    await vmGone(stage, vm);
    return task;
  };
  return { cache, run };
}

let td: TestDatabase;

describe("the Actions cache for Forgejo jobs (fake Forgejo, RabbitMQ, PostgreSQL, real VMs)", () => {
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  it("a second run restores what the first saved, another ref reads but never writes the default branch's entry, another repository gets nothing", async (t) => {
    const { cache, run } = await cacheStage(t, "e2e-cache");
    const ok = async (input: Parameters<FakeForgejo["queueJob"]>[0]) => {
      const task = await run(input);
      assert.equal(task.status, "success", task.rows.join("\n"));
      return task;
    };
    const event = { repository: { full_name: "alice/app", default_branch: "main" } };

    // 1. The first run on main: nothing to restore, saves.
    const first = await ok({ workflow: APP_WORKFLOW, repository: "alice/app", event });
    assert.deepEqual(printed(first, 0), ["restore: miss (204)"], first.rows.join("\n"));
    const saved = /^save: saved as cache (\d+)$/.exec(printed(first, 1)[0] ?? "");
    assert.ok(saved, first.rows.join("\n"));
    const firstContent = `saved by run ${1000 + 1} on refs/heads/main`;
    assert.equal(first.outputs.get("id"), saved[1]);

    // 2. Another repository's job, with its own credential and with forged ones.
    const attack = await ok({ workflow: attackWorkflow(saved[1]!), repository: "mallory/app", event: {} });
    assert.deepEqual(
      printed(attack, 0),
      [
        "own lookup: 204",
        `own download of cache ${saved[1]}: 404`,
        `own chunk into cache ${saved[1]}: 404`,
        `own commit of cache ${saved[1]}: 404`,
        "own save of the same key: 204", // into mallory/app's own entries
      ],
      attack.rows.join("\n"),
    );
    assert.deepEqual(
      printed(attack, 1),
      ["tampered", "made-up"].flatMap((n) => [
        `${n} lookup: 401`,
        `${n} download of cache ${saved[1]}: 401`,
        `${n} reserve: 401`,
      ]),
      attack.rows.join("\n"),
    );

    // 3. A run on another ref restores main's entry, and its save goes into its own ref.
    const feature = await ok({
      workflow: APP_WORKFLOW,
      repository: "alice/app",
      event,
      context: { ref: "refs/heads/feature", ref_name: "feature" },
    });
    const restoredOnFeature = printed(feature, 0)[0] ?? "";
    assert.ok(
      restoredOnFeature.startsWith(`restore: hit e2e-deps-Linux from refs/heads/main: ${firstContent} `),
      feature.rows.join("\n"),
    );
    assert.match(printed(feature, 1)[0] ?? "", /^save: saved as cache \d+$/, "no conflict: it writes its own ref");

    // 4. The second run on main restores the first run's entry: not mallory's, not the feature's;
    //    saving the key again is refused, since entries are never overwritten.
    const second = await ok({ workflow: APP_WORKFLOW, repository: "alice/app", event });
    assert.equal(printed(second, 0)[0], restoredOnFeature, second.rows.join("\n"));
    assert.match(
      printed(second, 1)[0] ?? "",
      /^save: 409 Cache already exists\. Scope: refs\/heads\/main, Key: e2e-deps-Linux/,
    );

    const entries = cache.store
      .entries()
      .map((e) => `${e.repository.replace(/^.*\/\/[^/]+\//, "")} ${e.scope} ${e.key}`);
    assert.deepEqual(entries.sort(), [
      "alice/app refs/heads/feature e2e-deps-Linux",
      "alice/app refs/heads/main e2e-deps-Linux",
      "mallory/app refs/heads/main e2e-deps-Linux",
    ]);
    assert.equal(cache.store.usage().uploads, 0, "no upload is left open");
  });

  // Needs Node.js in the guest, which the test image lacks: gnomon delivers it (obtained once per
  // host, so the first job on a fresh host says it is obtaining it).
  it("the released actions/cache v4 and v5, fetched as gnomon fetches actions, save in one job and restore in the next, in VMs", async (t) => {
    // The actions' host "on the internet" (a network namespace): jobs in VMs reach it through their egress proxy.
    const actions = mkdtempSync(join(tmpdir(), "gnomon-e2e-actions-"));
    t.after(() => rmSync(actions, { recursive: true, force: true }));
    releasedActionsRepo(join(actions, "work"), join(actions, "served", "actions", "cache"), [
      { from: join(RELEASED_ACTIONS, "cache", "v4.3.0"), tags: ["v4.3.0", "v4"] },
      { from: join(RELEASED_ACTIONS, "cache", "v5.0.4"), tags: ["v5.0.4", "v5"] },
    ]);
    const internet = await startFakeInternet(t, { serveFiles: join(actions, "served") });
    const { cache, run } = await cacheStage(t, "e2e-cache-js", {
      defaultActionsUrl: `http://${internet.address}:${internet.port}`,
    });
    const event = { repository: { full_name: "alice/app", default_branch: "main" } };
    const workflow = `name: ci
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - run: |
          test -e four || { mkdir -p four five; echo "v4 of run $GITHUB_RUN_ID" > four/f.txt; echo "v5 of run $GITHUB_RUN_ID" > five/f.txt; }
      - id: four
        uses: actions/cache@v4
        with: { path: four, key: "js-four-\${{ runner.os }}" }
      - id: five
        uses: actions/cache@v5
        with: { path: five, key: "js-five-\${{ runner.os }}" }
      - run: echo "hits [\${{ steps.four.outputs.cache-hit }}] [\${{ steps.five.outputs.cache-hit }}]"; cat four/f.txt five/f.txt
`;
    const first = await run({ workflow, repository: "alice/app", event });
    const firstLog = first.rows.join("\n");
    assert.equal(first.status, "success", firstLog);
    assert.doesNotMatch(firstLog, /cache backend|Failed to (save|restore)|no Node\.js/, firstLog);
    assert.match(firstLog, /Cache saved with key: js-four-Linux/);
    assert.match(firstLog, /Cache saved with key: js-five-Linux/);
    assert.equal(cache.store.entries().length, 2);

    const second = await run({ workflow, repository: "alice/app", event });
    const secondLog = second.rows.join("\n");
    assert.equal(second.status, "success", secondLog);
    assert.doesNotMatch(secondLog, /cache backend|Failed to (save|restore)|no Node\.js/, secondLog);
    assert.ok(second.rows.includes("hits [true] [true]"), secondLog);
    assert.ok(second.rows.includes("v4 of run 1001") && second.rows.includes("v5 of run 1001"), secondLog);
  });
});
