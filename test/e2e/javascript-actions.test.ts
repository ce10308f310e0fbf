// JavaScript actions in a VM of the test image, which has no Node.js: the released
// actions/github-script v8 (node24) and a node20 action with pre, main and post, fetched from an
// actions server the way gnomon fetches `uses:` (git over HTTP, through the job's egress proxy),
// then the same released files as local actions in the checked-out workspace, also inside a
// composite action. The node each one gets is gnomon's, delivered as a read-only runtime disk.
// (The cache service's test reuses startActionsServer for actions/cache v4 and v5.)
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it, type TestContext } from "node:test";
import type { JobRequest } from "../../src/contract/job-request.js";
import { PINNED_NODE } from "../../src/vm/node-runtime.js";
import { type ActionsServer, releasedAction, startActionsServer } from "../support/actions-server.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { testNodeRuntimes } from "../support/node-runtimes.js";
import { EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { startTestBus } from "../support/rabbit.js";
import { testImage } from "../support/test-image.js";

/** A node20 action with every stage, saying which Node.js runs it. */
const PROBE = {
  "action.yml": `name: probe
outputs:
  version: { description: the Node.js version main ran on }
runs:
  using: node20
  pre: pre.js
  main: main.js
  post: post.js
`,
  "pre.js": 'console.log("probe pre on " + process.version);',
  "main.js": `console.log("probe main on " + process.version);
require("fs").appendFileSync(process.env.GITHUB_OUTPUT, "version=" + process.version + "\\n");`,
  "post.js": 'console.log("probe post on " + process.version);',
};

/** A composite action that runs the local copy of github-script inside it. */
const COMPOSITE = `name: answer
outputs:
  version: { value: "\${{ steps.gs.outputs.result }}" }
runs:
  using: composite
  steps:
    - id: gs
      uses: ./.github/actions/github-script
      with:
        script: return process.version
        result-encoding: string
`;

const prefixed = (prefix: string, files: Record<string, string>) =>
  Object.fromEntries(Object.entries(files).map(([k, v]) => [`${prefix}/${k}`, v]));

const V20 = `v${PINNED_NODE[20].version}`;
const V24 = `v${PINNED_NODE[24].version}`;

describe("JavaScript actions in a VM of an image without Node.js (RabbitMQ, PostgreSQL, a real VM)", () => {
  let td: TestDatabase;
  let server: ActionsServer;
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
    server = await startActionsServer(
      { after: (fn) => cleanups.push(fn) },
      {
        "gnomon/probe": { files: PROBE, tags: ["v1"] },
        // The workspace of the local-actions job: released files where users keep local actions.
        "gnomon/test": {
          files: { ...prefixed(".github/actions/probe", PROBE), ".github/actions/answer/action.yml": COMPOSITE },
          copies: { ".github/actions/github-script": releasedAction("actions/github-script", "v8.0.0") },
        },
      },
    );
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
    await td?.drop();
  });

  /** Runs one job in a VM of the test image against the actions server; returns its log and result. */
  async function runInVm(t: TestContext, workflow: string) {
    const { bus } = await startTestBus(t, "e2e-js");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const { metrics } = await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: ["test"],
      maxVms: 1,
      nodeRuntimes: testNodeRuntimes(),
    });
    const base = await jobRequestFromYaml(workflow, {
      runsOn: "test",
      replyTo,
      secrets: { GITHUB_TOKEN: "t0ken-e2e-js" },
    });
    const req: JobRequest = {
      ...base,
      actionsUrl: server.url,
      contexts: {
        ...base.contexts,
        github: {
          ...base.contexts.github,
          server_url: server.url,
          repository: "gnomon/test",
          sha: server.commits.get("gnomon/test")!,
        },
      },
    };
    await bus.publishJob(req);
    const got = await events.finished(req.id, 600_000);
    const delivery = await metrics.registry.getSingleMetricAsString("gnomon_node_delivery_seconds");
    return { lines: logText(got), result: resultOf(got), delivery };
  }

  it("runs released actions/github-script@v8 on node 24 and a node20 action's pre, main and post on node 20", async (t) => {
    const { lines, result, delivery } = await runInVm(
      t,
      `on: push
jobs:
  js:
    runs-on: test
    steps:
      - name: The image has no Node.js
        run: if command -v node; then exit 1; else echo "no node on PATH"; fi
      - id: script
        uses: actions/github-script@v8
        with:
          script: return 6*7
      - id: where
        uses: actions/github-script@v8
        with:
          script: return process.version
          result-encoding: string
      - id: probe
        uses: gnomon/probe@v1
      # The cache service's test adds actions/cache@v4 (save, then a restore job) and @v5 here.
      - run: echo "result=\${{ steps.script.outputs.result }} script-node=\${{ steps.where.outputs.result }} probe-node=\${{ steps.probe.outputs.version }}"
`,
    );
    const log = lines.join("\n");
    assert.equal(result?.result, "success", log);
    assert.ok(lines.includes("no node on PATH"), log);
    assert.ok(lines.includes(`result=42 script-node=${V24} probe-node=${V20}`), log);
    for (const stage of ["pre", "main", "post"]) assert.ok(lines.includes(`probe ${stage} on ${V20}`), log);
    assert.ok(!lines.some((l) => l.includes("Node.js") && l.startsWith("##[error]")), log);
    assert.match(delivery, /gnomon_node_delivery_seconds_count\{stage="obtain",label="test"\} 1/);
    assert.match(delivery, /gnomon_node_delivery_seconds_count\{stage="locate",label="test"\} 2/, delivery);
  });

  it("runs the same released files as local actions of the workspace, also inside a composite action", async (t) => {
    const { lines, result } = await runInVm(
      t,
      `on: push
jobs:
  local:
    runs-on: test
    steps:
      - uses: actions/checkout@v4
      - id: script
        uses: ./.github/actions/github-script
        with:
          script: return 6*7
      - id: answer
        uses: ./.github/actions/answer
      - id: probe
        uses: ./.github/actions/probe
      - run: echo "result=\${{ steps.script.outputs.result }} composite-node=\${{ steps.answer.outputs.version }} probe-node=\${{ steps.probe.outputs.version }}"
`,
    );
    const log = lines.join("\n");
    assert.equal(result?.result, "success", log);
    assert.ok(lines.includes(`result=42 composite-node=${V24} probe-node=${V20}`), log);
    // Local actions have no pre stage on GitHub either; main and post run.
    assert.ok(!lines.includes(`probe pre on ${V20}`), log);
    for (const stage of ["main", "post"]) assert.ok(lines.includes(`probe ${stage} on ${V20}`), log);
    assert.ok(!lines.some((l) => l.includes("Node.js") && l.startsWith("##[error]")), log);
  });
});
