// `uses:` steps through the engine on the host executor: composite and JavaScript actions (local
// and fetched with git from the actions URL), native checkout, and the actions gnomon refuses.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import type { NodeLocator } from "../../src/engine/action-node.js";
import { createHostExecutor, type HostExecutor } from "../../src/executor/host.js";
import { aliasBombAction } from "../support/yaml-bombs.js";
import { printed, runJob } from "./run-job.js";

const job = (steps: string) => `on: push
jobs:
  j:
    runs-on: x
    steps:
${steps}`;

const workspaceOf = (ex: HostExecutor) => `${ex.platform.workDir}/repo/repo`;

/** Puts files into the job's workspace before it starts. */
const files =
  (entries: Record<string, string>) =>
  async (ex: HostExecutor): Promise<void> => {
    for (const [path, text] of Object.entries(entries))
      await ex.writeFile(`${workspaceOf(ex)}/${path}`, text, path.endsWith(".sh") ? { mode: 0o755 } : undefined);
  };

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@e",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@e",
    },
  })
    .toString()
    .trim();
}

/** A git repository at root/owner/name with the files committed on `main`; returns the commit. */
async function gitRepo(root: string, slug: string, entries: Record<string, string>): Promise<string> {
  const dir = join(root, slug);
  await mkdir(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  for (const [path, text] of Object.entries(entries)) {
    await mkdir(join(dir, path, ".."), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", "c");
  git(dir, "tag", "v1");
  return git(dir, "rev-parse", "HEAD");
}

const COMPOSITE = `inputs:
  who: { required: true }
  greeting: { default: "hello \${{ github.actor }}" }
outputs:
  said: { value: "\${{ steps.say.outputs.text }}" }
  path: { value: "\${{ github.action_path }}" }
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      run: |
        echo "\${{ inputs.greeting }}, \${{ inputs.who }} ($OUTER)"
        echo "text=\${{ inputs.greeting }} \${{ inputs.who }}" >> "$GITHUB_OUTPUT"
        echo "FROM_ACTION=set-inside" >> "$GITHUB_ENV"
        test -n "$GITHUB_ACTION_PATH" && echo "has action path"
`;

describe("engine: composite actions", () => {
  it("runs a local composite action with inputs, defaults, outputs, and the uses step's env", async (t) => {
    const r = await runJob(
      t,
      job(`      - id: c
        uses: ./.github/actions/greet
        with: { who: world }
        env: { OUTER: outer-env }
      - run: echo "\${{ steps.c.outputs.said }} | $FROM_ACTION | [\${OUTER:-}]"`),
      { before: files({ ".github/actions/greet/action.yml": COMPOSITE }) },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(r.stepLines(0).includes("hello mona, world (outer-env)"));
    assert.ok(r.stepLines(0).includes("has action path"));
    assert.equal(r.finished(0).outputs["said"], "hello mona world");
    assert.match(r.finished(0).outputs["path"] ?? "", /\.github\/actions\/greet$/);
    assert.deepEqual(
      printed(r.stepLines(1)),
      ["hello mona world | set-inside | []"],
      "GITHUB_ENV reaches the job, the step env does not",
    );
  });

  it("fails the composite step when an inner step fails, skips the rest, and still evaluates its outputs", async (t) => {
    const r = await runJob(
      t,
      job(`      - id: c
        uses: ./act
        continue-on-error: true
      - run: echo "\${{ steps.c.outcome }} \${{ steps.c.outputs.color }}"`),
      {
        before: files({
          "act/action.yml": `outputs:
  color: { value: "my-\${{ steps.pick.outputs.c }}" }
runs:
  using: composite
  steps:
    - { id: pick, shell: bash, run: 'echo "c=green" >> "$GITHUB_OUTPUT"' }
    - { shell: bash, run: exit 3 }
    - { shell: bash, run: echo should not run }
    - { if: failure(), shell: bash, run: echo inner failure handler }
`,
        }),
      },
    );
    assert.deepEqual(printed(r.stepLines(1)), ["failure my-green"]);
    const lines = r.stepLines(0);
    assert.ok(!lines.includes("should not run"));
    assert.ok(lines.includes("inner failure handler"));
  });

  it("nests composite actions, each with its own steps context and inputs", async (t) => {
    const r = await runJob(t, job(`      - uses: ./outer`), {
      before: files({
        "outer/action.yml": `runs:
  using: composite
  steps:
    - id: inner
      uses: ./inner
      with: { v: from-outer }
    - shell: sh
      run: echo "outer sees \${{ steps.inner.outputs.v }}"
`,
        "inner/action.yml": `inputs: { v: {} }
outputs: { v: { value: "\${{ inputs.v }}!" } }
runs:
  using: composite
  steps:
    - shell: sh
      run: echo inner got \${{ inputs.v }}
`,
      }),
    });
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(r.stepLines(0).includes("inner got from-outer"));
    assert.ok(r.stepLines(0).includes("outer sees from-outer!"));
  });

  it("fetches a remote composite action with git from the actions URL", async (t) => {
    const actions = await tempDir(t, "gnomon-actions-");
    await gitRepo(actions, "octo/tools", {
      "hello/action.yml":
        "runs:\n  using: composite\n  steps: [{ shell: sh, run: 'echo remote says hi from $GITHUB_ACTION_REPOSITORY@$GITHUB_ACTION_REF' }]\n",
    });
    const r = await runJob(
      t,
      job(`      - uses: octo/tools/hello@v1
      - uses: octo/tools/hello@v1`),
      { actionsUrl: `file://${actions}` },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(r.stepLines(0).includes("remote says hi from octo/tools@v1"));
    assert.equal(r.lines.filter((l) => l.startsWith("Download action repository")).length, 1, "fetched once per job");
  });

  it("fails the step with the reason when a remote action cannot be fetched", async (t) => {
    const actions = await tempDir(t, "gnomon-actions-");
    const r = await runJob(t, job(`      - uses: octo/missing@v9`), { actionsUrl: `file://${actions}` });
    assert.equal(r.outcome.result, "failure");
    assert.ok(
      r
        .stepLines(0)
        .some((l) => l.includes("could not fetch the action octo/missing@v9") && l.includes("Check the name and ref")),
    );
  });
});

describe("engine: JavaScript actions", () => {
  const ACTION = `inputs:
  my-input: { default: dflt }
runs:
  using: node20
  pre: pre.js
  main: main.js
  post: post.js
  post-if: always()
`;
  const entries = {
    "action.yml": ACTION,
    "pre.js": `const fs = require("fs"); fs.appendFileSync(process.env.GITHUB_STATE, "from_pre=p1\\n"); console.log("pre input " + process.env["INPUT_MY-INPUT"]);`,
    "main.js": `const fs = require("fs");
console.log("main input " + process.env["INPUT_MY-INPUT"] + " state " + process.env.STATE_from_pre);
fs.appendFileSync(process.env.GITHUB_OUTPUT, "out=42\\n");
fs.appendFileSync(process.env.GITHUB_STATE, "from_main=m1\\n");`,
    "post.js": `console.log("post state " + process.env.STATE_from_pre + " " + process.env.STATE_from_main);`,
  };

  it("runs pre, main and post of a remote action with inputs, outputs and state", async (t) => {
    const actions = await tempDir(t, "gnomon-actions-");
    await gitRepo(actions, "octo/js", entries);
    const r = await runJob(
      t,
      job(`      - run: echo first
      - id: a
        uses: octo/js@main
        with: { my-input: given }
      - run: echo "out=\${{ steps.a.outputs.out }}"`),
      { actionsUrl: `file://${actions}` },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(r.stepLines(1, "pre").includes("pre input given"));
    assert.ok(r.stepLines(1).includes("main input given state p1"));
    assert.deepEqual(printed(r.stepLines(2)), ["out=42"]);
    assert.ok(r.stepLines(1, "post").includes("post state p1 m1"));
    const order = r.events
      .filter((e) => e.kind === "step-started")
      .map((e) => (e.kind === "step-started" ? `${e.stage}:${e.step}` : ""));
    assert.deepEqual(order, ["pre:1", "main:0", "main:1", "main:2", "post:1"]);
  });

  it("runs post steps in reverse order and fails the job when one fails", async (t) => {
    const r = await runJob(
      t,
      job(`      - uses: ./p
        with: { name: first, fail: "true" }
      - uses: ./p
        with: { name: second }`),
      {
        before: files({
          "p/action.yml":
            "inputs: { name: {}, fail: { default: 'false' } }\nruns:\n  using: node16\n  main: m.js\n  post: post.js\n",
          "p/m.js": "",
          "p/post.js":
            'console.log("post " + process.env.INPUT_NAME); if (process.env.INPUT_FAIL === "true") process.exit(1);',
        }),
      },
    );
    assert.equal(r.outcome.result, "failure");
    const posts = r.lines.filter((l) => l.startsWith("post "));
    assert.deepEqual(posts, ["post second", "post first"]);
  });

  it("gives JavaScript actions the forge's Actions service URLs and token, and run steps neither", async (t) => {
    const r = await runJob(
      t,
      job(`      - uses: ./p
      - run: echo "run step sees [\${ACTIONS_RUNTIME_URL:-}] [\${ACTIONS_RUNTIME_TOKEN:-}]"`),
      {
        secrets: { ACTIONS_RUNTIME_TOKEN: "rt-secret-123456" },
        runtime: {
          url: "https://forge.example/api/actions_pipeline/",
          resultsUrl: "https://forge.example",
          cacheUrl: "https://cache.example/",
          cacheServiceV2: true,
        },
        before: files({
          "p/action.yml": "runs:\n  using: node20\n  main: m.js\n",
          "p/m.js":
            'const e = process.env; console.log([e.ACTIONS_RUNTIME_URL, e.ACTIONS_RESULTS_URL, e.ACTIONS_CACHE_URL, e.ACTIONS_RUNTIME_TOKEN === "rt-secret-123456", e.ACTIONS_CACHE_SERVICE_V2].join(" "));',
        }),
      },
    );
    assert.equal(r.outcome.result, "success");
    assert.deepEqual(printed(r.stepLines(0)), [
      "https://forge.example/api/actions_pipeline/ https://forge.example https://cache.example/ true True",
    ]);
    assert.deepEqual(printed(r.stepLines(1)), ["run step sees [] []"]);
  });

  it("fails clearly when the machine has no Node.js", async (t) => {
    const bin = await tempDir(t, "gnomon-bin-");
    await symlink("/bin/sh", join(bin, "sh"));
    const r = await runJob(t, job(`      - uses: ./p`), {
      executorOptions: { baseEnv: { PATH: bin } },
      before: files({ "p/action.yml": "runs:\n  using: node20\n  main: m.js\n" }),
    });
    assert.equal(r.outcome.result, "failure");
    assert.ok(
      r
        .stepLines(0)
        .some((l) =>
          l.includes(
            "JavaScript action (node20) and needs Node.js 20, which this machine does not have: it has no node on its PATH; install Node.js 20 in the image",
          ),
        ),
      r.lines.join("\n"),
    );
  });
});

/** A stand-in for a delivered node: a script that says which major it is and runs nothing. */
async function fakeNode(t: TestContext, major: number): Promise<string> {
  const dir = await tempDir(t, "gnomon-node-");
  const path = join(dir, "node");
  await writeFile(path, `#!/bin/sh\necho "delivered node ${major} runs $(basename "$1")"\n`, { mode: 0o755 });
  return path;
}

/** A NodeLocator that knows the given majors and counts what it is asked. */
function locator(found: Partial<Record<20 | 24, string>>, asked: number[] = []): NodeLocator {
  return {
    async locate(major) {
      asked.push(major);
      const path = found[major];
      return path
        ? { found: true, path, describe: `test node ${major}` }
        : { found: false, reason: `the test delivers no Node.js ${major}: configure one` };
    },
  };
}

describe("engine: the Node.js a JavaScript action runs on", () => {
  const hostMajor = Number(process.versions.node.split(".")[0]);
  const other = hostMajor === 24 ? 20 : 24;
  const action = (using: string) => `runs:\n  using: ${using}\n  main: m.js\n  post: post.js\n`;

  it("runs a node24 action on the delivered node 24, main and post, asking once per job", async (t) => {
    const asked: number[] = [];
    const r = await runJob(
      t,
      job(`      - uses: ./p
      - uses: ./p`),
      {
        node: locator({ [other]: await fakeNode(t, other) }, asked),
        before: files({ "p/action.yml": action(`node${other}`), "p/m.js": "", "p/post.js": "" }),
      },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.deepEqual(printed(r.stepLines(0)), [`delivered node ${other} runs m.js`]);
    assert.deepEqual(printed(r.stepLines(1, "post")), [`delivered node ${other} runs post.js`]);
    assert.deepEqual(asked, [other], "the machine's node is another major; the locator is asked once");
  });

  it("never runs an action on the machine's node of another major: without a delivered one the step fails saying why", async (t) => {
    const r = await runJob(t, job("      - uses: ./p"), {
      node: locator({}),
      before: files({ "p/action.yml": action(`node${other}`), "p/m.js": "", "p/post.js": "" }),
    });
    assert.equal(r.outcome.result, "failure");
    const error = r.stepLines(0).find((l) => l.startsWith("##[error]")) ?? "";
    assert.match(error, new RegExp(`needs Node.js ${other}, which this machine does not have`));
    assert.match(error, new RegExp(`is v${hostMajor}\\.[0-9.]+, another major than ${other}`));
    assert.match(error, new RegExp(`the test delivers no Node.js ${other}: configure one`));
  });

  it("prefers the machine's own node when it is the right major, without asking the locator", async (t) => {
    const asked: number[] = [];
    const r = await runJob(t, job("      - uses: ./p"), {
      node: locator({}, asked),
      before: files({
        "p/action.yml": action(`node${hostMajor}`),
        "p/m.js": "console.log('major ' + process.versions.node.split('.')[0])",
        "p/post.js": "",
      }),
    });
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.deepEqual(printed(r.stepLines(0)), [`major ${hostMajor}`]);
    assert.deepEqual(asked, []);
  });

  it("runs node12 and node16 actions on Node.js 20 with a warning, as GitHub's runner does", async (t) => {
    const r = await runJob(t, job("      - uses: ./p"), {
      node: locator({ 20: await fakeNode(t, 20) }),
      executorOptions: hostMajor === 20 ? { baseEnv: { PATH: await pathWithoutNode(t) } } : undefined,
      before: files({ "p/action.yml": action("node16"), "p/m.js": "", "p/post.js": "" }),
    });
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(
      r.stepLines(0).some((l) => l.startsWith("##[warning]") && l.includes("node16 has reached its end of life")),
    );
    assert.deepEqual(printed(r.stepLines(0)), ["delivered node 20 runs m.js"]);
  });

  it("runs node20 actions on Node.js 24 when FORCE_JAVASCRIPT_ACTIONS_TO_NODE24 is true", async (t) => {
    const r = await runJob(
      t,
      `on: push
jobs:
  j:
    runs-on: x
    env: { FORCE_JAVASCRIPT_ACTIONS_TO_NODE24: "true" }
    steps:
      - uses: ./p
      - uses: ./p
        env: { ACTIONS_ALLOW_USE_UNSECURE_NODE_VERSION: "true" }
`,
      {
        node: locator({ 20: await fakeNode(t, 20), 24: await fakeNode(t, 24) }),
        executorOptions: { baseEnv: { PATH: await pathWithoutNode(t) } },
        before: files({ "p/action.yml": action("node20"), "p/m.js": "", "p/post.js": "" }),
      },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.deepEqual(printed(r.stepLines(0)), ["delivered node 24 runs m.js"]);
    assert.deepEqual(printed(r.stepLines(1)), ["delivered node 20 runs m.js"]);
  });
});

/** A PATH with the usual tools but no node. */
async function pathWithoutNode(t: TestContext): Promise<string> {
  const bin = await tempDir(t, "gnomon-nonode-");
  for (const dir of (process.env["PATH"] ?? "/usr/bin:/bin").split(":")) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const n of names) if (n !== "node") await symlink(join(dir, n), join(bin, n)).catch(() => undefined);
  }
  return bin;
}

describe("engine: actions gnomon cannot run", () => {
  it("fails a Docker action step, saying what to use instead", async (t) => {
    const r = await runJob(
      t,
      job(`      - uses: docker://alpine:3
      - uses: ./d`),
      {
        before: files({ "d/action.yml": "name: d\ndescription: d\nruns:\n  using: docker\n  image: Dockerfile\n" }),
      },
    );
    assert.deepEqual(r.conclusions, ["failure", "skipped"]);
    assert.ok(
      r
        .stepLines(0)
        .some((l) => /Docker container action.*Use a JavaScript or composite action, or a run step/.test(l)),
    );
  });

  it("fails a missing local action with GitHub's hint about actions/checkout", async (t) => {
    const r = await runJob(t, job(`      - uses: ./path/to/nothing`));
    assert.equal(r.outcome.result, "failure");
    assert.ok(
      r
        .stepLines(0)
        .some(
          (l) => l.includes("Can't find 'action.yml', 'action.yaml' or 'Dockerfile'") && l.includes("actions/checkout"),
        ),
    );
  });

  it("fails an invalid action.yml with its located problems", async (t) => {
    const r = await runJob(t, job(`      - uses: ./bad`), {
      before: files({ "bad/action.yml": "runs:\n  using: composite\n  steps:\n    - name: only a name\n" }),
    });
    assert.equal(r.outcome.result, "failure");
    assert.ok(
      r.stepLines(0).some((l) => /the action \.\/bad is invalid: \.\/bad\/action\.yml:4:7: /.test(l)),
      r.stepLines(0).join("\n"),
    );
  });

  it("lists each problem of an invalid action.yml on an error line of its own", async (t) => {
    const r = await runJob(t, job(`      - uses: ./bad`), {
      before: files({
        "bad/action.yml": "runs:\n  using: composite\n  steps:\n    - runn: x\n    - name: y\n      usses: z\n",
      }),
    });
    const errors = r.stepLines(0).filter((l) => l.startsWith("##[error]"));
    assert.ok(errors.length >= 3, errors.join("\n"));
    assert.match(errors[0] ?? "", /^##\[error\]the action \.\/bad is invalid: \d+ problems:$/);
    assert.ok(
      errors.some((l) => /^##\[error\] {2}\.\/bad\/action\.yml:4:7: Unexpected value 'runn'$/.test(l)),
      errors.join("\n"),
    );
    assert.ok(
      errors.some((l) => /^##\[error\] {2}\.\/bad\/action\.yml:6:7: Unexpected value 'usses'$/.test(l)),
      errors.join("\n"),
    );
    assert.ok(
      r.lines.every((l) => !l.includes("\n")),
      "no log line holds a line break",
    );
  });

  it("fails only the step whose local action, written by the step before, is an alias bomb", async (t) => {
    const b64 = Buffer.from(aliasBombAction(8)).toString("base64");
    const r = await runJob(
      t,
      job(`      - run: mkdir -p that && echo ${b64} | base64 -d > that/action.yml
      - uses: ./that
      - if: always()
        run: echo still running`),
    );
    assert.deepEqual(r.conclusions, ["success", "failure", "success"]);
    assert.ok(
      r
        .stepLines(1)
        .some((l) =>
          /^##\[error\]the action \.\/that is invalid: \.\/that\/action\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded .*\(maxNodes\)/.test(
            l,
          ),
        ),
      r.stepLines(1).join("\n"),
    );
    assert.ok(r.stepLines(2).includes("still running"));
  });

  it("fails only the step whose remote action is an alias bomb", async (t) => {
    const actions = await tempDir(t, "gnomon-actions-");
    await gitRepo(actions, "octo/bomb", { "action.yml": aliasBombAction(8) });
    const r = await runJob(
      t,
      job("      - uses: octo/bomb@v1\n      - if: always()\n        run: echo still running"),
      {
        actionsUrl: `file://${actions}`,
      },
    );
    assert.deepEqual(r.conclusions, ["failure", "success"]);
    assert.ok(
      r
        .stepLines(0)
        .some((l) =>
          /^##\[error\]the action octo\/bomb@v1 is invalid: octo\/bomb@v1\/action\.yml:\d+:\d+: .*\(maxNodes\)/.test(l),
        ),
      r.stepLines(0).join("\n"),
    );
  });

  it("fails a uses: value that is no action reference", async (t) => {
    const r = await runJob(t, job(`      - run: "true"`), {
      editSpec: (s) => ({ ...s, steps: [{ id: "x", if: "success()", kind: "uses", uses: "just-a-name" }] }),
    });
    assert.ok(r.stepLines(0).some((l) => l.includes("'just-a-name' is not an action reference")));
  });
});

describe("engine: actions/checkout", () => {
  it("copies the local working tree in exec mode", async (t) => {
    const local = await tempDir(t, "gnomon-local-");
    await writeFile(join(local, "README.md"), "local copy\n");
    const r = await runJob(
      t,
      job(`      - uses: actions/checkout@v4
      - run: cat README.md`),
      { checkout: { kind: "local", dir: local } },
    );
    assert.deepEqual(printed(r.stepLines(1)), ["local copy"]);
  });

  it("fetches the job's commit with git from server_url, masks the token and removes it in the post step", async (t) => {
    const server = await tempDir(t, "gnomon-forge-");
    const sha = await gitRepo(server, "octo/repo", { "hello.txt": "from the forge\n" });
    let configDuringJob = "";
    const r = await runJob(
      t,
      job(`      - uses: actions/checkout@v4
      - run: |
          cat hello.txt
          git rev-parse --abbrev-ref HEAD
          echo "token: \${{ github.token }}"
          git config --local --get-regexp 'http\\..*extraheader' | sed 's/basic .*/basic <hidden>/'`),
      {
        github: { server_url: `file://${server}`, sha, ref: "refs/heads/main" },
        secrets: { GITHUB_TOKEN: "ghs_forge_job_token_1234" },
        onEvent: (e) => {
          if (e.kind === "step-started" && e.stage === "post") configDuringJob = "post started";
        },
      },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.deepEqual(printed(r.stepLines(1)).slice(0, 3), ["from the forge", "main", "token: ***"]);
    assert.match(printed(r.stepLines(1))[3] ?? "", /extraheader AUTHORIZATION: basic <hidden>/);
    assert.equal(configDuringJob, "post started");
    const config = await readFile(`${workspaceOf(r.executor)}/.git/config`, "utf8");
    assert.ok(!config.includes("extraheader"), "the post step removed the credentials");
    assert.ok(!r.lines.some((l) => l.includes("ghs_forge_job_token_1234")));
  });

  it("checks out another ref into a path", async (t) => {
    const server = await tempDir(t, "gnomon-forge-");
    await gitRepo(server, "octo/other", { "x.txt": "other repo\n" });
    const r = await runJob(
      t,
      job(`      - uses: actions/checkout@v4
        with: { repository: octo/other, ref: v1, path: sub/other, persist-credentials: false }
      - run: cat sub/other/x.txt`),
      { github: { server_url: `file://${server}` } },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.deepEqual(printed(r.stepLines(1)), ["other repo"]);
  });

  it("fails with the reason when the commit cannot be fetched", async (t) => {
    const server = await tempDir(t, "gnomon-forge-");
    const r = await runJob(t, job(`      - uses: actions/checkout@v4`), { github: { server_url: `file://${server}` } });
    assert.equal(r.outcome.result, "failure");
    assert.ok(
      r
        .stepLines(0)
        .some((l) => l.includes("actions/checkout could not fetch") && l.includes("check the repository, the ref")),
    );
  });
});

/**
 * A PATH like this host's without git: every program of the PATH's folders but git*, as
 * symlinks in one folder. A host executor with it stands for a machine that has no git.
 */
async function pathWithoutGit(t: TestContext): Promise<string> {
  const bin = await tempDir(t, "gnomon-nogit-bin-");
  const seen = new Set<string>();
  for (const dir of (process.env["PATH"] ?? "/usr/bin:/bin").split(":")) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (name.startsWith("git") || seen.has(name)) continue;
      seen.add(name);
      await symlink(join(dir, name), join(bin, name)).catch(() => undefined);
    }
  }
  return bin;
}

describe("engine: a machine without git", () => {
  it("checks out on the gnomon host and copies the tree with its .git in; no credentials are left behind", async (t) => {
    const server = await tempDir(t, "gnomon-forge-");
    const sha = await gitRepo(server, "octo/repo", { "hello.txt": "from the forge\n", "sub/deep.txt": "deep\n" });
    const noGit = await pathWithoutGit(t);
    const r = await runJob(
      t,
      job(`      - uses: actions/checkout@v4
      - run: |
          cat hello.txt sub/deep.txt
          test -d .git && echo "has .git"
          command -v git || echo "no git here"
          echo "token: \${{ github.token }}"`),
      {
        github: { server_url: `file://${server}`, sha, ref: "refs/heads/main" },
        secrets: { GITHUB_TOKEN: "ghs_forge_job_token_5678" },
        executorOptions: { baseEnv: { ...process.env, PATH: noGit } },
        hostGit: () => createHostExecutor(),
      },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(r.stepLines(0).some((l) => /The machine has no git: fetching on the gnomon host/.test(l)));
    assert.deepEqual(printed(r.stepLines(1)), ["from the forge", "deep", "has .git", "no git here", "token: ***"]);
    assert.equal(r.finished(0).outputs["commit"], sha);
    const config = await readFile(`${workspaceOf(r.executor)}/.git/config`, "utf8");
    assert.ok(!config.includes("extraheader"), "no credentials were persisted");
    assert.ok(!r.events.some((e) => e.kind === "step-started" && e.stage === "post"), "nothing to clean up after");
    assert.ok(!r.lines.some((l) => l.includes("ghs_forge_job_token_5678")));
  });

  it("fetches a remote action on the gnomon host and runs it on the machine", async (t) => {
    const actions = await tempDir(t, "gnomon-actions-");
    await gitRepo(actions, "octo/tools", {
      "hello/action.yml":
        "runs:\n  using: composite\n  steps: [{ shell: sh, run: 'echo remote says hi; command -v git || echo no git here' }]\n",
    });
    const noGit = await pathWithoutGit(t);
    const r = await runJob(t, job("      - uses: octo/tools/hello@v1"), {
      actionsUrl: `file://${actions}`,
      executorOptions: { baseEnv: { ...process.env, PATH: noGit } },
      hostGit: () => createHostExecutor(),
    });
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.ok(r.stepLines(0).includes("remote says hi"), r.stepLines(0).join("\n"));
    assert.ok(r.stepLines(0).includes("no git here"));
  });

  it("without git on the host either, fails the checkout saying to install git in the image", async (t) => {
    const server = await tempDir(t, "gnomon-forge-");
    await gitRepo(server, "octo/repo", { "hello.txt": "x\n" });
    const noGit = await pathWithoutGit(t);
    const noGitEnv = { ...process.env, PATH: noGit };
    const r = await runJob(t, job("      - uses: actions/checkout@v4"), {
      github: { server_url: `file://${server}` },
      executorOptions: { baseEnv: noGitEnv },
      hostGit: () => createHostExecutor({ baseEnv: noGitEnv }),
    });
    assert.equal(r.outcome.result, "failure");
    assert.ok(
      r.stepLines(0).some((l) => /neither the machine nor the gnomon host has it; install git in the image/.test(l)),
    );
  });

  it("with no host to fall back on, fails the checkout saying the machine has no git", async (t) => {
    const noGit = await pathWithoutGit(t);
    const r = await runJob(t, job("      - uses: actions/checkout@v4"), {
      executorOptions: { baseEnv: { ...process.env, PATH: noGit } },
    });
    assert.equal(r.outcome.result, "failure");
    assert.ok(r.stepLines(0).some((l) => /needs git on the machine, and this one has none/.test(l)));
  });
});
