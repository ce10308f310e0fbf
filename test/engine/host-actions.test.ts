// The engine with the gnomon host's action cache and with a forge the machine reaches under other
// URLs (forwarded into a VM on another port), on the host executor against real git over HTTP:
// remote actions (nested in composite actions too) come from the host's cache into a machine that
// has no git, the log says where each came from; steps, their env and git on the machine get the
// machine's URLs, and git on the machine can push with the token checkout persisted.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { ActionCache } from "../../src/orchestrator/action-cache.js";
import { rootLogger } from "../../src/telemetry/log.js";
import { GitRepos, type GitServer, startGitServer } from "../fakes/git-http.js";
import { printed, runJob } from "./run-job.js";

const job = (steps: string) => `on: push
jobs:
  j:
    runs-on: x
    steps:
${steps}`;

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A PATH with everything of this one except git: a machine without git. */
async function pathWithoutGit(t: TestContext): Promise<string> {
  const bin = await tempDir(t, "gnomon-nogit-bin-");
  const seen = new Set<string>();
  for (const dir of (process.env["PATH"] ?? "/usr/bin:/bin").split(":")) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith("git") || seen.has(name)) continue;
      seen.add(name);
      await symlink(join(dir, name), join(bin, name)).catch(() => undefined);
    }
  }
  return bin;
}

const TOKEN = "ghs_job_token_for_the_push_0042";

describe("engine: actions from the host's action cache, forge URLs as the machine reaches them", () => {
  let repos: GitRepos;
  let git: GitServer;
  let inner: string;
  let outer: string;
  before(async () => {
    repos = new GitRepos();
    inner = repos.commit("octo/inner", {
      files: {
        "action.yml": `runs:
  using: composite
  steps:
    - shell: sh
      run: echo "inner says hi from $GITHUB_ACTION_PATH"
`,
      },
    });
    repos.tag("octo/inner", "v1", inner, { annotated: true });
    outer = repos.commit("octo/outer", {
      files: {
        "action.yml": `runs:
  using: composite
  steps:
    - shell: sh
      run: echo "outer says hi"
    - uses: octo/inner@v1
`,
      },
    });
    repos.tag("octo/outer", "v1", outer);
    repos.commit("octo/repo", { files: { "hello.txt": "from the forge\n" }, message: "first" });
    repos.commit("octo/repo", { files: { "hello.txt": "from the forge, again\n" }, message: "second" });
    git = await startGitServer(repos, { pushToken: TOKEN });
  });
  after(async () => {
    await git?.close();
    await rm(repos.root, { recursive: true, force: true });
  });

  it("copies remote actions, nested ones too, from the host's cache into a machine without git; the next job's log says it reused them", async (t) => {
    const dir = await tempDir(t, "gnomon-action-cache-");
    const cache = new ActionCache({ dir, maxAgeMs: 3_600_000, maxBytes: 1 << 30, log: rootLogger() });
    t.after(() => cache.prune());
    const noGit = await pathWithoutGit(t);
    const run = () =>
      runJob(t, job("      - uses: octo/outer@v1"), {
        actionsUrl: git.url,
        actionCache: cache,
        executorOptions: { baseEnv: { ...process.env, PATH: noGit } },
      });
    const first = await run();
    assert.equal(first.outcome.result, "success", first.lines.join("\n"));
    // Composite steps print inside their groups.
    const said = first.stepLines(0);
    assert.ok(said.includes("outer says hi"), first.lines.join("\n"));
    assert.ok(
      said.some((l) => /^inner says hi from .*\/_actions\/octo\/inner\/v1$/.test(l)),
      said.join("\n"),
    );
    const fetched = (name: string, sha: string) =>
      new RegExp(
        `^'${name}' is ${sha}: fetched on the gnomon host in \\d+\\.\\d s and kept in its action cache, copied into the machine in \\d+\\.\\d s$`,
      );
    assert.ok(
      first.lines.some((l) => fetched("octo/outer@v1", outer).test(l)),
      first.lines.join("\n"),
    );
    assert.ok(
      first.lines.some((l) => fetched("octo/inner@v1", inner).test(l)),
      first.lines.join("\n"),
    );

    const second = await run();
    assert.equal(second.outcome.result, "success", second.lines.join("\n"));
    for (const [name, sha] of [
      ["octo/outer@v1", outer],
      ["octo/inner@v1", inner],
    ] as const)
      assert.ok(
        second.lines.some((l) =>
          new RegExp(
            `^'${name}' is ${sha}: from the gnomon host's action cache \\(resolved in \\d+\\.\\d s\\), copied into the machine in \\d+\\.\\d s$`,
          ).test(l),
        ),
        second.lines.join("\n"),
      );
  });

  it("gives steps the machine's forge URLs, checks out through them with history, and pushes with the token it persisted", async (t) => {
    // The forge's own URL leads nowhere from here; the machine reaches the forge at git.url.
    const forgeOwn = "http://127.0.0.1:9";
    const machineUrl = (url: string) => url.replace(forgeOwn, git.url);
    const head = repos.ref("octo/repo", "refs/heads/main");
    const r = await runJob(
      t,
      job(`      - uses: actions/checkout@v4
        with: { fetch-depth: 0 }
      - run: |
          echo "server $GITHUB_SERVER_URL"
          echo "api \${{ github.api_url }}"
          git log --format=%s
          git -c user.name=t -c user.email=t@e commit -q --allow-empty -m "from the job"
          git push -q origin HEAD:refs/heads/from-the-job && echo pushed`),
      {
        github: { server_url: forgeOwn, api_url: `${forgeOwn}/api/v3`, sha: head, ref: "refs/heads/main" },
        secrets: { GITHUB_TOKEN: TOKEN },
        machineUrl,
      },
    );
    assert.equal(r.outcome.result, "success", r.lines.join("\n"));
    assert.deepEqual(printed(r.stepLines(1)), [
      `server ${git.url}`,
      `api ${git.url}/api/v3`,
      "second",
      "first",
      "pushed",
    ]);
    assert.deepEqual(repos.log("octo/repo", "refs/heads/from-the-job"), ["from the job", "second", "first"]);
  });
});
