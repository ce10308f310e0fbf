// `gnomon exec` as shipped (dist/gnomon.mjs; `npm run build` first): exit codes,
// located errors, needs order, matrices, labels, secrets, and what a person sees.
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { PINNED_NODE } from "../../src/vm/node-runtime.js";
import { releasedAction } from "../support/actions-server.js";
import { runGnomon } from "../support/cli.js";
import { TEST_RUNTIMES_DIR, testNodeRuntimes } from "../support/node-runtimes.js";
import { aliasBombWorkflow } from "../support/yaml-bombs.js";

async function workspace(
  t: TestContext,
  workflows: Record<string, string>,
  extra: Record<string, string> = {},
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-exec-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, ".github", "workflows"), { recursive: true });
  for (const [name, text] of Object.entries(workflows)) await writeFile(join(dir, ".github", "workflows", name), text);
  for (const [name, text] of Object.entries(extra)) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

const exec = (dir: string, ...args: string[]) =>
  runGnomon(["exec", "--workspace", dir, "--label", "ubuntu-latest=host", ...args], { cwd: dir });

describe("gnomon exec", () => {
  it("runs the jobs in needs order, passes outputs along, and exits 0 when all succeed", async (t) => {
    const dir = await workspace(
      t,
      {
        "ci.yml": `name: CI
on: push
jobs:
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "got \${{ needs.build.outputs.v }}"
  build:
    runs-on: ubuntu-latest
    outputs: { v: "\${{ steps.s.outputs.v }}" }
    steps:
      - uses: actions/checkout@v4
      - id: s
        run: echo "v=$(cat version.txt)" >> "$GITHUB_OUTPUT"
`,
      },
      { "version.txt": "1.2.3\n" },
    );
    const r = await exec(dir);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(r.stdout.indexOf("● CI / build") < r.stdout.indexOf("● CI / test"), "build runs first");
    assert.match(r.stdout, /│ got 1\.2\.3/);
    assert.match(r.stdout, /Summary\n {2}✓ CI \/ build +success/);
    assert.match(r.stdout, /2 jobs: 2 succeeded, 0 failed, 0 cancelled, 0 skipped/);
  });

  it("exits 1 when a job fails and skips the jobs that need it", async (t) => {
    const dir = await workspace(t, {
      "ci.yml": `on: push
jobs:
  a: { runs-on: ubuntu-latest, steps: [{ run: exit 3 }] }
  b: { needs: a, runs-on: ubuntu-latest, steps: [{ run: echo never }] }
  c: { needs: a, if: always(), runs-on: ubuntu-latest, steps: [{ run: echo cleanup }] }
`,
    });
    const r = await exec(dir);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /✗ Process completed with exit code 3\./);
    assert.match(r.stdout, /- .*\/ b +skipped +needs a/);
    assert.match(r.stdout, /│ cleanup/);
    assert.ok(!r.stdout.includes("│ never"));
  });

  it("expands matrices, filters them with --matrix, and names each leg", async (t) => {
    const dir = await workspace(t, {
      "m.yml": `on: push
jobs:
  t:
    runs-on: ubuntu-latest
    strategy: { matrix: { node: [18, 20], os: [linux] } }
    steps: [{ run: 'echo "node \${{ matrix.node }} on \${{ matrix.os }}"' }]
`,
    });
    const all = await exec(dir);
    assert.equal(all.code, 0, all.stdout);
    assert.match(all.stdout, /│ node 18 on linux/);
    assert.match(all.stdout, /│ node 20 on linux/);
    assert.match(all.stdout, /✓ .*t \(18, linux\)/);
    const one = await exec(dir, "--matrix", "node:20");
    assert.ok(!one.stdout.includes("node 18 on linux") && one.stdout.includes("node 20 on linux"));
  });

  it("runs one job and what it needs with --job, and only the workflows the --event triggers", async (t) => {
    const dir = await workspace(t, {
      "a.yml": `on: push
jobs:
  base: { runs-on: ubuntu-latest, steps: [{ run: echo base ran }] }
  wanted: { needs: base, runs-on: ubuntu-latest, steps: [{ run: echo wanted ran }] }
  other: { runs-on: ubuntu-latest, steps: [{ run: echo other ran }] }
`,
      "b.yml": "on: pull_request\njobs:\n  pr: { runs-on: ubuntu-latest, steps: [{ run: echo pr ran }] }\n",
    });
    const r = await exec(dir, "--job", "wanted");
    assert.equal(r.code, 0, r.stdout);
    assert.ok(r.stdout.includes("base ran") && r.stdout.includes("wanted ran"));
    assert.ok(!r.stdout.includes("other ran") && !r.stdout.includes("pr ran"));
    const pr = await exec(dir, "--event", "pull_request");
    assert.ok(pr.stdout.includes("pr ran") && !pr.stdout.includes("base ran"));
    const none = await exec(dir, "--job", "nope");
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--job nope: no workflow that runs on 'push' has that job/);
  });

  it("masks --secret values and reads --secret NAME from the environment", async (t) => {
    const dir = await workspace(t, {
      "s.yml": `on: push
jobs:
  s: { runs-on: ubuntu-latest, steps: [{ run: 'echo "\${{ secrets.A }} \${{ secrets.B }} \${{ vars.V }}"' }] }
`,
    });
    const r = await runGnomon(
      [
        "exec",
        "--workspace",
        dir,
        "--label",
        "ubuntu-latest=host",
        "--secret",
        "A=alpha-secret",
        "--secret",
        "B",
        "--var",
        "V=plain",
      ],
      {
        cwd: dir,
        env: { B: "beta-from-env" },
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /│ \*\*\* \*\*\* plain/);
    assert.ok(!r.stdout.includes("alpha-secret") && !r.stdout.includes("beta-from-env"));
  });

  it("shows a malformed workflow with file:line:col and exits 2 without running anything", async (t) => {
    const dir = await workspace(t, {
      "bad.yml": "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - runn: echo\n",
    });
    const r = await exec(dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^\.github\/workflows\/bad\.yml:6:9: Unexpected value 'runn'$/m);
    assert.match(r.stderr, /the workflow is invalid; nothing was run/);
  });

  it("refuses an alias-bomb workflow at once with the limit it passes, and exits 2 without running anything", async (t) => {
    const dir = await workspace(t, { "bomb.yml": aliasBombWorkflow(8, "ubuntu-latest") });
    const r = await exec(dir);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /^\.github\/workflows\/bomb\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded .*\(maxNodes\); .*write the repeated parts out/m,
    );
    assert.match(r.stderr, /the workflow is invalid; nothing was run/);
  });

  it("shows an unknown function in an expression, located, and exits 2", async (t) => {
    const dir = await workspace(t, {
      "f.yml":
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $" +
        "{{ nosuchfunction() }}\n",
    });
    const r = await exec(dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /f\.yml:6:\d+: Unrecognized function: 'nosuchfunction'/);
  });

  it("fails the step of an unsupported uses: with a reason, exit 1", async (t) => {
    const dir = await workspace(t, {
      "d.yml": "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: docker://alpine:3\n",
    });
    const r = await exec(dir);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /Docker container action/);
  });

  it("skips jobs whose runs-on has no --label, saying which flag to add, and exits 2 when nothing could run", async (t) => {
    const dir = await workspace(t, {
      "l.yml": `on: push
jobs:
  here: { runs-on: ubuntu-latest, steps: [{ run: echo here }] }
  there: { runs-on: macos-latest, steps: [{ run: echo there }] }
`,
    });
    const r = await exec(dir);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /skipped: no --label for runs-on macos-latest; add --label macos-latest=host/);
    const nothing = await runGnomon(["exec", "--workspace", dir, "--job", "there"], { cwd: dir });
    assert.equal(nothing.code, 2);
    assert.match(nothing.stdout, /no job ran: give each runs-on label a --label/);
  });

  it("exits 2, not 0, when jobs were there but none ran: all skipped by if:, or no matrix leg left", async (t) => {
    const dir = await workspace(t, {
      "s.yml": `on: push
jobs:
  only-on-prs:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps: [{ run: echo should not run }]
  after:
    needs: only-on-prs
    runs-on: ubuntu-latest
    steps: [{ run: echo should not run either }]
`,
      "m.yml": `on: workflow_dispatch
jobs:
  m:
    strategy: { matrix: { os: [a, b] } }
    runs-on: ubuntu-latest
    steps: [{ run: echo leg }]
`,
    });
    const skipped = await exec(dir);
    assert.equal(skipped.code, 2, skipped.stdout);
    assert.ok(!skipped.stdout.includes("should not run"));
    assert.match(skipped.stdout, /no job ran: every job was skipped by its if: or because a job it needs was/);
    const noLeg = await exec(dir, "--event", "workflow_dispatch", "--matrix", "os:c");
    assert.equal(noLeg.code, 2, noLeg.stdout);
    assert.match(noLeg.stdout, /no job ran: no matrix leg is left to run; check the --matrix filters/);
  });

  it("refuses bad usage with exit 2 (a missing workspace, a bad flag value, an event nothing runs on), and fails a job whose VM cannot be had", async (t) => {
    const dir = await workspace(t, { "a.yml": "on: push\njobs:\n  a: { runs-on: x, steps: [{ run: echo }] }\n" });
    const vm = await runGnomon(["exec", "--workspace", dir, "--label", "x=no-such-image"], { cwd: dir });
    assert.equal(vm.code, 1);
    assert.match(vm.stdout, /no VM image serves runs-on "no-such-image" here; this fleet serves: .*test/);
    const missing = await runGnomon(["exec", "--workspace", join(dir, "nope")], { cwd: dir });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /not a directory/);
    const badFlag = await runGnomon(["exec", "--workspace", dir, "--label", "novalue"], { cwd: dir });
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /--label novalue: expected NAME=VALUE/);
    const event = await runGnomon(["exec", "--workspace", dir, "--event", "release", "--label", "x=host"], {
      cwd: dir,
    });
    assert.equal(event.code, 2);
    assert.match(event.stderr, /runs on 'release'/);
  });

  it("runs released github-script@v8 on gnomon's Node.js 24 on a host whose node is another major, with a placeholder github.token", async (t) => {
    const hostMajor = Number(process.versions.node.split(".")[0]);
    assert.notEqual(hostMajor, 24, "this test needs a host node other than 24 (gnomon runs on 20)");
    await testNodeRuntimes().prepare("linux-x64", 24); // downloaded once into the test cache
    const dir = await workspace(t, {
      "js.yml": `on: push
jobs:
  js:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: gs
        uses: ./github-script
        with:
          script: |
            return process.version + " for " + context.repo.owner
          result-encoding: string
      - run: echo "ran on \${{ steps.gs.outputs.result }}"
`,
    });
    await cp(releasedAction("actions/github-script", "v8.0.0"), join(dir, "github-script"), { recursive: true });
    const data = await mkdtemp(join(tmpdir(), "gnomon-exec-data-"));
    t.after(() => rm(data, { recursive: true, force: true }));
    await symlink(TEST_RUNTIMES_DIR, join(data, "runtimes"));
    const r = await runGnomon(["exec", "--workspace", dir, "--label", "ubuntu-latest=host"], {
      cwd: dir,
      env: { GNOMON_DATA_DIR: data },
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`│ ran on v${PINNED_NODE[24].version.replace(/\./g, "\\.")} for \\w+`));
    assert.doesNotMatch(r.stdout, /Input required/);
  });

  it("colours its output only on a terminal and keeps plain text in a pipe", async (t) => {
    const dir = await workspace(t, {
      "a.yml": "on: push\njobs:\n  a: { runs-on: ubuntu-latest, steps: [{ run: echo plain }] }\n",
    });
    const r = await exec(dir);
    assert.ok(!r.stdout.includes("\x1b["), "no escape codes in a pipe");
    assert.match(r.stdout, /✓ success \d+(\.\d)?m?s/);
  });
});
