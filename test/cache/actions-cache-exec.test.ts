// The released actions/cache (exact copies in ../shared/actions, v4.3.0: node20, which this host's
// node runs) against gnomon's cache, through `gnomon exec` as shipped (dist/gnomon.mjs; `npm run
// build` first) on a host label: one run saves in its post step, a second run (another process)
// restores it with a hit and the content intact; the restore/ and save/ sub-actions too.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { runGnomon } from "../support/cli.js";
import { RELEASED_ACTIONS } from "../support/released-actions.js";

async function workspace(t: TestContext, workflows: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-cache-exec-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, ".github", "workflows"), { recursive: true });
  for (const [name, text] of Object.entries(workflows)) await writeFile(join(dir, ".github", "workflows", name), text);
  // The released files, placed in the workspace as a local action: what `uses: actions/cache@v4` fetches.
  await cp(join(RELEASED_ACTIONS, "cache", "v4.3.0"), join(dir, ".github", "actions", "cache"), { recursive: true });
  // actions/cache works only for a run on a ref (GITHUB_REF), which exec takes from the checkout's HEAD.
  await writeFile(join(dir, ".gitignore"), "gnomon-data/\n");
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.org", ...args], {
      cwd: dir,
      stdio: "ignore",
    });
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-q", "-m", "workspace");
  return dir;
}

const exec = (dir: string, workflow: string) =>
  runGnomon(
    [
      "exec",
      "--workspace",
      dir,
      "--workflows",
      join(dir, ".github", "workflows", workflow),
      "--label",
      "ubuntu-latest=host",
    ],
    { cwd: dir, timeoutMs: 120_000 },
  );

/** What no run may print: the action's signs that it found no cache service, or that it failed. */
function assertNoCacheTrouble(out: string): void {
  assert.doesNotMatch(
    out,
    /cache backend|Cache service responded|Failed to (save|restore)|Unable to reserve|Node\.js/i,
    out,
  );
}

describe("actions/cache v4.3.0 (the released files) in gnomon exec on this host", () => {
  it("a run saves its cache in the post step, and the next run restores it with cache-hit true and the files intact", async (t) => {
    const dir = await workspace(t, {
      "save.yml": `name: save
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: |
          mkdir -p deps/sub
          echo "built at $RANDOM$RANDOM" > deps/sub/artefact.txt
          head -c 200000 /dev/urandom > deps/blob.bin
          sha256sum deps/sub/artefact.txt deps/blob.bin > deps.sha256
          echo "url=$ACTIONS_CACHE_URL"
      - id: cache
        uses: ./.github/actions/cache
        with:
          path: deps
          key: deps-\${{ runner.os }}-\${{ hashFiles('deps.sha256') }}
      - run: echo "first run hit=[\${{ steps.cache.outputs.cache-hit }}]"
      - run: echo "key=deps-\${{ runner.os }}-\${{ hashFiles('deps.sha256') }}"; cat deps.sha256
`,
    });
    const first = await exec(dir, "save.yml");
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assertNoCacheTrouble(first.stdout);
    assert.match(
      first.stdout,
      /url=http:\/\/127\.0\.0\.1:\d+\/\*\*\*\//,
      "the credential in ACTIONS_CACHE_URL is masked",
    );
    assert.match(first.stdout, /Cache not found for input keys: deps-Linux-/);
    assert.match(first.stdout, /first run hit=\[\]/, "on a miss actions/cache v4 leaves cache-hit unset");
    assert.match(first.stdout, /Cache saved with key: deps-Linux-[0-9a-f]{64}/);
    const key = /key=(deps-Linux-[0-9a-f]{64})/.exec(first.stdout)?.[1];
    const sums = /│ ([0-9a-f]{64} {2}deps\/sub\/artefact\.txt)[\s\S]*?│ ([0-9a-f]{64} {2}deps\/blob\.bin)/.exec(
      first.stdout,
    );
    assert.ok(key && sums, first.stdout);
    const entries = await readdir(join(dir, "gnomon-data", "cache", "entries"));
    assert.equal(entries.filter((e) => e.endsWith(".json")).length, 1, "one entry on disk, under the data directory");

    await writeFile(
      join(dir, ".github", "workflows", "restore.yml"),
      `name: restore
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: test ! -e deps && echo "no deps before the restore"
      - id: cache
        uses: ./.github/actions/cache
        with:
          path: deps
          key: ${key}
      - run: |
          echo "second run hit=[\${{ steps.cache.outputs.cache-hit }}]"
          sha256sum deps/sub/artefact.txt deps/blob.bin
      - id: partial
        uses: ./.github/actions/cache/restore
        with:
          path: deps
          key: deps-Linux-nothing-like-it
          restore-keys: |
            deps-Linux-
      - run: echo "restore-key hit=[\${{ steps.partial.outputs.cache-hit }}] matched=[\${{ steps.partial.outputs.cache-matched-key }}]"
      - run: echo "more" > deps/more.txt
      - uses: ./.github/actions/cache/save
        with:
          path: deps
          key: deps-more-\${{ github.run_id }}
`,
    );
    const second = await exec(dir, "restore.yml");
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assertNoCacheTrouble(second.stdout);
    assert.match(second.stdout, /no deps before the restore/);
    assert.match(second.stdout, new RegExp(`Cache restored from key: ${key}`));
    assert.match(second.stdout, /second run hit=\[true\]/);
    assert.ok(second.stdout.includes(sums[1]!) && second.stdout.includes(sums[2]!), "the files come back as saved");
    assert.match(
      second.stdout,
      new RegExp(`restore-key hit=\\[false\\] matched=\\[${key}\\]`),
      "a restore key matches by prefix",
    );
    assert.match(second.stdout, /Cache saved with key: deps-more-\d+/, "the save sub-action saves");
    const after = await readdir(join(dir, "gnomon-data", "cache", "entries"));
    assert.equal(after.filter((e) => e.endsWith(".json")).length, 2);
    assert.deepEqual(await readdir(join(dir, "gnomon-data", "cache", "uploads")), [], "no upload left behind");
  });
});
