// A forge on the gnomon host, as a small self-hoster runs it: the fake Forgejo (and the fake GitHub)
// on 127.0.0.1 serving real git repositories — the job's own, private, and public action
// repositories, ../shared/actions among them, from the instance itself (DEFAULT_ACTIONS_URL = self).
// Through the real runner, RabbitMQ, PostgreSQL, the orchestrator and a VM of the test image: the job
// checks out its repository with history, pushes with the token checkout left, calls the forge's API
// with its token from a step and from a remote composite action (whose own remote action is nested),
// and reaches no other port of the host; its actions were fetched on the host and copied in, and the
// next job's log says they came from the host's cache. github-script runs where Node.js is: on a host
// label here, in the VM once gnomon delivers Node.js into VMs.
import assert from "node:assert/strict";
import { once } from "node:events";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { VERSION } from "../../src/cli/version.js";
import { readRegistration } from "../../src/forge/github/credentials.js";
import { createGitHubRunner } from "../../src/forge/github/runner.js";
import { Slots } from "../../src/lifecycle/slots.js";
import { type FakeForgejo, startFakeForgejo, type TaskView } from "../fakes/forgejo-server.js";
import { startFakeGitHub } from "../fakes/github-server.js";
import { registerForgejoWithCli, runGnomon } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startForgejoRunner, startStage, testLogger } from "../support/forge-e2e.js";
import { SAMPLE_CLUSTER_KEY } from "../support/samples.js";
import { testImage } from "../support/test-image.js";

const VM_JOB_MS = 300_000;
const BUNDLE = fileURLToPath(new URL("../../dist/gnomon.mjs", import.meta.url));
/** ../shared/actions of the checkout: exact copies of released actions (its README). */
const SHARED_ACTIONS = fileURLToPath(new URL("../../../shared/actions", import.meta.url));

/** Prints "<label> <status> <full_name>" for GET $GITHUB_API_URL/repos/$GITHUB_REPOSITORY with $TOKEN. */
const API_CALL = `import json, os, sys, urllib.request, urllib.error
url = os.environ["GITHUB_API_URL"].rstrip("/") + "/repos/" + os.environ["GITHUB_REPOSITORY"]
req = urllib.request.Request(url, headers={"Authorization": "token " + os.environ["TOKEN"]})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(sys.argv[1], r.status, json.load(r)["full_name"])
except urllib.error.HTTPError as e:
    print(sys.argv[1], e.code)
`;

/** A composite action that says a word. */
const SAY = `inputs:
  word: { required: true }
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "say \${{ inputs.word }}"
`;

/** A composite action that uses another remote action and calls the forge's API with the job's token. */
const FORGE_API = `inputs:
  token: { default: "\${{ github.token }}" }
runs:
  using: composite
  steps:
    - uses: gnomon-test/say@v1
      with: { word: from-inside-a-composite }
    - shell: bash
      env:
        TOKEN: \${{ inputs.token }}
        API_CALL: |
${API_CALL.split("\n")
  .map((l) => `          ${l}`)
  .join("\n")}
      run: python3 -c "$API_CALL" composite-api
`;

/** The job's own repository: two commits, so that a full checkout has history. */
const REPO_COMMITS = [
  { files: { "hello.txt": "hello, first\n" }, message: "the first commit" },
  { files: { "hello.txt": "hello, second\n" }, message: "the second commit" },
];

/** Public action repositories of the instance besides ../shared/actions; returns their commits. */
function addTestActions(forge: {
  createRepository(n: string, c: { files: Record<string, string> }[], o: { public: boolean }): string[];
  git: { tag(repo: string, name: string, commit: string): void };
}): { say: string; forgeApi: string } {
  const [say] = forge.createRepository("gnomon-test/say", [{ files: { "action.yml": SAY } }], { public: true });
  const [forgeApi] = forge.createRepository("gnomon-test/forge-api", [{ files: { "action.yml": FORGE_API } }], {
    public: true,
  });
  forge.git.tag("gnomon-test/say", "v1", say!);
  forge.git.tag("gnomon-test/forge-api", "v1", forgeApi!);
  return { say: say!, forgeApi: forgeApi! };
}

/** A bash loop that tries each host:port and prints "<target> reached" or "<target> blocked". */
const PROBE = `for t in $TARGETS; do
  h=\${t%:*}; p=\${t##*:}
  if timeout 10 bash -c "exec 3<>/dev/tcp/$h/$p" 2>/dev/null; then echo "probe $t reached"; else echo "probe $t blocked"; fi
done`;

/** What a job must not reach, and the forge it must: the decoy and the forge at other addresses. */
function probeTargets(forgePort: number, decoyPort: number): { reach: string; blocked: string[] } {
  const hostIp = Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .find((i) => i.family === "IPv4" && !i.internal)?.address;
  assert.ok(hostIp, "this host has a non-loopback IPv4 address");
  return {
    reach: `127.0.0.1:${forgePort}`,
    blocked: [
      `127.0.0.1:${decoyPort}`,
      `10.0.2.2:${decoyPort}`,
      `10.0.2.2:${forgePort}`,
      `${hostIp}:${forgePort}`,
      `${hostIp}:${decoyPort}`,
      "127.0.0.1:5432",
      "127.0.0.1:5672",
    ],
  };
}

function indent(text: string, spaces: number): string {
  return text
    .split("\n")
    .map((l) => `${" ".repeat(spaces)}${l}`)
    .join("\n");
}

let td: TestDatabase;
let decoy: Server;
let decoyPort: number;

describe("a forge on the gnomon host (fake forges on 127.0.0.1, RabbitMQ, PostgreSQL, real VMs)", () => {
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
    assert.ok(existsSync(BUNDLE), "the shipped bundle is missing: run `npm run build` first");
    assert.ok(
      existsSync(join(SHARED_ACTIONS, "actions", "github-script", "v8.0.0")),
      `${SHARED_ACTIONS} holds the shared actions`,
    );
    // A service of the host next to the forge, which no job may reach.
    decoy = createServer((_req, res) => res.end("a host service jobs must not reach\n"));
    decoy.listen(0, "0.0.0.0");
    await once(decoy, "listening");
    decoyPort = (decoy.address() as AddressInfo).port;
  });
  after(async () => {
    decoy?.close();
    await td?.drop();
  });

  it("Forgejo with DEFAULT_ACTIONS_URL = self: checkout with history, push, API calls and actions from the forge in a VM, nothing else of the host; the next job reuses the host's action cache", async (t) => {
    const forgejo = await startFakeForgejo(undefined, { defaultActionsUrl: "self" });
    const stage = await startStage(t, {
      databaseUrl: td.location,
      name: "e2e-fwd-fj",
      hostLabels: ["local:host"],
    });
    stage.beforeTeardown(() => forgejo.close());
    const forgePort = Number(new URL(forgejo.url).port);
    const seeded = forgejo.seedActions(SHARED_ACTIONS);
    const githubScript = seeded.find((s) => s.repo === "actions/github-script" && s.version === "v8.0.0");
    assert.ok(githubScript, "actions/github-script v8.0.0 is served by the instance");
    const actions = addTestActions(forgejo);
    const commits = forgejo.createRepository("alice/demo", REPO_COMMITS);
    const head = commits.at(-1)!;
    const file = await registerForgejoWithCli(forgejo, "linux:vm:test,local:host");
    await startForgejoRunner(stage, file);
    const { reach, blocked } = probeTargets(forgePort, decoyPort);

    const first = forgejo.queueJob({
      context: { sha: head },
      workflow: `name: ci
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with: { fetch-depth: 0 }
      - name: History
        run: |
          git log --format="log %s"
          cat hello.txt
      - name: Call the API
        env:
          TOKEN: \${{ github.token }}
          API_CALL: |
${indent(API_CALL, 12)}
        run: python3 -c "$API_CALL" step-api
      - uses: gnomon-test/forge-api@v1
      - name: Push
        run: |
          git -c user.name=job -c user.email=job@forge.test commit -q --allow-empty -m "pushed from the VM"
          git push -q origin HEAD:refs/heads/from-the-vm && echo "pushed"
      - name: Probe the host
        env:
          TARGETS: ${[reach, ...blocked].join(" ")}
        run: |
${indent(PROBE, 10)}
      - id: gs
        uses: actions/github-script@v8
        continue-on-error: true
        with:
          script: |
            const { data } = await github.rest.repos.get(context.repo)
            core.info(\`github-script sees \${data.full_name}\`)
            return 6 * 7
      - run: echo "github-script said \${{ steps.gs.outputs.result }}"
`,
    });
    const task = await finished(forgejo, first);
    const all = task.rows.join("\n");
    assert.equal(task.status, "success", all);
    // The forge's port was free in the guest: the job's URLs are the forge's own.
    assert.ok(
      task.rows.some((r) => r.includes(`its forge on this host is forwarded into it: 127.0.0.1:${forgePort})`)),
      all,
    );
    assert.ok(task.rows.includes("log the second commit") && task.rows.includes("log the first commit"), all);
    assert.ok(task.rows.includes("hello, second"), all);
    assert.ok(task.rows.includes("step-api 200 alice/demo"), all);
    assert.ok(task.rows.includes("composite-api 200 alice/demo"), all);
    assert.ok(task.rows.includes("say from-inside-a-composite"), all);
    assert.ok(task.rows.includes("pushed"), all);
    assert.deepEqual(forgejo.git.log("alice/demo", "refs/heads/from-the-vm").slice(0, 3), [
      "pushed from the VM",
      "the second commit",
      "the first commit",
    ]);
    assert.ok(task.rows.includes(`probe ${reach} reached`), all);
    for (const target of blocked) assert.ok(task.rows.includes(`probe ${target} blocked`), `${target}:\n${all}`);
    assert.ok(!all.includes("a host service jobs must not reach"), all);
    assert.equal(
      forgejo.apiCalls.filter((c) => c.status === 200 && c.taskId === task.id).length >= 2,
      true,
      "the API saw the job's token",
    );
    for (const [name, sha] of [
      ["gnomon-test/forge-api@v1", actions.forgeApi],
      ["gnomon-test/say@v1", actions.say],
      ["actions/github-script@v8", githubScript.commit],
    ] as const)
      assert.match(all, fetchedLine(name, sha), `${name} was fetched on the host`);
    githubScriptOutcome(t, task, "in the VM");

    const second = forgejo.queueJob({
      context: { sha: head },
      workflow: `name: ci
on: push
jobs:
  again:
    runs-on: linux
    steps:
      - uses: gnomon-test/forge-api@v1
`,
    });
    const again = await finished(forgejo, second);
    const againLog = again.rows.join("\n");
    assert.equal(again.status, "success", againLog);
    assert.ok(again.rows.includes("composite-api 200 alice/demo"), againLog);
    for (const [name, sha] of [
      ["gnomon-test/forge-api@v1", actions.forgeApi],
      ["gnomon-test/say@v1", actions.say],
    ] as const)
      assert.match(againLog, cachedLine(name, sha), `${name} came from the host's cache`);

    // github-script where Node.js is: a job on the host, with the same action from the same cache.
    const third = forgejo.queueJob({
      context: { sha: head },
      workflow: `name: ci
on: push
jobs:
  script:
    runs-on: local
    steps:
      - id: gs
        uses: actions/github-script@v8
        with:
          script: |
            const { data } = await github.rest.repos.get(context.repo)
            core.info(\`github-script sees \${data.full_name}\`)
            return 6 * 7
      - run: echo "github-script said \${{ steps.gs.outputs.result }}"
`,
    });
    const script = await finished(forgejo, third);
    const scriptLog = script.rows.join("\n");
    assert.equal(script.status, "success", scriptLog);
    assert.ok(script.rows.includes("github-script sees alice/demo"), scriptLog);
    assert.ok(script.rows.includes("github-script said 42"), scriptLog);
    assert.match(scriptLog, cachedLine("actions/github-script@v8", githubScript.commit));
    const counted = await stage.metrics.registry.getSingleMetricAsString("gnomon_action_cache_requests_total");
    assert.match(counted, /result="miss"\} 3\b/, counted);
    assert.match(counted, /result="hit"\} 3\b/, counted);
  });

  it("GitHub (its fake standing in for github.com): checkout with history, push, API calls and actions in a VM through the forwarded fake", async (t) => {
    const fake = await startFakeGitHub(undefined);
    const stage = await startStage(t, { databaseUrl: td.location, name: "e2e-fwd-gh" });
    stage.beforeTeardown(() => fake.close());
    const forgePort = Number(new URL(fake.url).port);
    const actions = addTestActions(fake);
    const commits = fake.createRepository("gnomon-org/gnomon-repo", REPO_COMMITS);
    const head = commits.at(-1)!;
    const dir = join(mkdtempSync(join(tmpdir(), "gnomon-e2e-fwd-gh-")), "github");
    const reg = await runGnomon([
      "github",
      "register",
      "--url",
      fake.repoUrl,
      "--token",
      fake.registrationToken(),
      "--name",
      "e2e-fwd-gh",
      "--labels",
      "test",
      "--credentials-dir",
      dir,
    ]);
    assert.equal(reg.code, 0, reg.stderr);
    const runner = createGitHubRunner({
      registration: readRegistration(dir),
      bus: stage.forgeBus,
      clusterKey: SAMPLE_CLUSTER_KEY,
      capacity: new Slots(1),
      runnerVersion: "2.330.0",
      gnomonVersion: VERSION,
      log: testLogger(),
    });
    await runner.start();
    stage.beforeTeardown(() => runner.stop(AbortSignal.timeout(20_000)));
    const { reach, blocked } = probeTargets(forgePort, decoyPort);

    const job = fake.queueJob({
      labels: ["self-hosted", "test"],
      github: { sha: head },
      steps: [
        { uses: "actions/checkout@v4", with: { "fetch-depth": "0" } },
        { name: "History", run: 'git log --format="log %s"\ncat hello.txt' },
        {
          name: "Call the API",
          env: { TOKEN: "${{ github.token }}", API_CALL },
          run: 'python3 -c "$API_CALL" step-api',
        },
        { uses: "gnomon-test/forge-api@v1" },
        {
          name: "Push",
          run: 'git -c user.name=job -c user.email=job@forge.test commit -q --allow-empty -m "pushed from the VM"\ngit push -q origin HEAD:refs/heads/from-the-vm && echo "pushed"',
        },
        { name: "Probe the host", env: { TARGETS: [reach, ...blocked].join(" ") }, run: PROBE },
      ],
    });
    await fake.waitFor(() => fake.job(job.jobId).state === "completed", "the job completed", VM_JOB_MS);
    const done = fake.job(job.jobId);
    const log = done.jobLog?.content ?? "";
    assert.equal(done.conclusion, "succeeded", log);
    const has = (line: string) => assert.match(log, new RegExp(`(^|\\n)\\S* ?${escapeRegExp(line)}\\r?(\\n|$)`), line);
    has("log the second commit");
    has("log the first commit");
    has("hello, second");
    has("step-api 200 gnomon-org/gnomon-repo");
    has("composite-api 200 gnomon-org/gnomon-repo");
    has("say from-inside-a-composite");
    has("pushed");
    has(`probe ${reach} reached`);
    for (const target of blocked) has(`probe ${target} blocked`);
    assert.deepEqual(fake.git.log("gnomon-org/gnomon-repo", "refs/heads/from-the-vm").slice(0, 3), [
      "pushed from the VM",
      "the second commit",
      "the first commit",
    ]);
    assert.ok(
      fake.repoApiCalls.filter((c) => c.status === 200 && c.jobId === job.jobId).length >= 2,
      "the API saw the job's token",
    );
    assert.match(log, fetchedLine("gnomon-test/forge-api@v1", actions.forgeApi));
    assert.match(log, fetchedLine("gnomon-test/say@v1", actions.say));
  });
});

function finished(forgejo: FakeForgejo, jobId: number): Promise<TaskView> {
  return forgejo.waitFor(
    () => {
      const task = forgejo.taskOfJob(jobId);
      return task && task.status !== "running" && task.logArchived ? task : undefined;
    },
    `job ${jobId} to end with its log archived`,
    VM_JOB_MS,
  );
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function fetchedLine(name: string, sha: string): RegExp {
  return new RegExp(
    `'${escapeRegExp(name)}' is ${sha}: fetched on the gnomon host in [\\d.]+ s and kept in its action cache`,
  );
}

function cachedLine(name: string, sha: string): RegExp {
  return new RegExp(`'${escapeRegExp(name)}' is ${sha}: from the gnomon host's action cache`);
}

/**
 * github-script in the VM: it runs once gnomon delivers Node.js into VMs (the test image has none);
 * until then the step says so and the job goes on (continue-on-error), and this is noted.
 */
function githubScriptOutcome(t: TestContext, task: TaskView, where: string): void {
  const all = task.rows.join("\n");
  if (all.includes("is a JavaScript action (node24) and this machine has no Node.js")) {
    t.diagnostic(`actions/github-script@v8 could not run ${where}: the VM has no Node.js yet`);
    return;
  }
  assert.ok(task.rows.includes("github-script sees alice/demo"), all);
  assert.ok(task.rows.includes("github-script said 42"), all);
}
