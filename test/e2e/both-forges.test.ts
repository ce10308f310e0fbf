// One `gnomon up` registered with both forges (the FAQ's "Can one gnomon serve both?"): the shipped
// program, registered with the shipped CLI against the fake Forgejo and the fake GitHub for the
// same label, on RabbitMQ and PostgreSQL, with room for one VM of the offline test image. A job
// queued on each forge at once: both succeed, each log on its own forge, one VM after the other as
// the orchestrator's own log tells, and nothing is left running after SIGTERM.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startFakeForgejo } from "../fakes/forgejo-server.js";
import { startFakeGitHub } from "../fakes/github-server.js";
import { GNOMON_BIN, registerForgejoWithCli, registerGitHubWithCli, spawnGnomon } from "../support/cli.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { fleetUpEnv, killUp, qemuPids, until } from "../support/forge-e2e.js";
import { deleteTopology, testPrefix } from "../support/rabbit.js";
import { testImage } from "../support/test-image.js";

/** Two VM jobs one after the other under TCG. */
const BOTH_JOBS_MS = 480_000;

/** The orchestrator's log lines about VMs, in the order it wrote them. */
function vmLines(stderr: string): { msg: "vm started" | "vm gone"; jobId: string; vm: string }[] {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o["msg"] === "vm started" || o["msg"] === "vm gone")
    .map((o) => ({ msg: o["msg"] as "vm started" | "vm gone", jobId: String(o["jobId"]), vm: String(o["vm"]) }));
}

let db: TestDatabase;

describe("one gnomon up serving Forgejo and GitHub (fake forges, RabbitMQ, PostgreSQL, real VMs)", () => {
  before(async () => {
    await testImage();
    db = await createTestDatabase("postgres");
    assert.ok(existsSync(GNOMON_BIN), "the shipped bundle is missing: run `npm run build` first");
  });
  after(() => db?.drop());

  it("runs a job from each forge, queued at once for one label, one VM at a time; each log reaches its own forge, and SIGTERM leaves nothing running", async (t) => {
    const forgejo = await startFakeForgejo(undefined);
    const github = await startFakeGitHub(undefined, { flow: "v2" });
    const prefix = testPrefix("e2e-both");
    const dir = mkdtempSync(join(tmpdir(), "gnomon-e2e-both-"));
    const dataDir = join(dir, "data");
    const forgejoFile = await registerForgejoWithCli(forgejo, "linux:vm:test", dir);
    const { dir: githubDir } = await registerGitHubWithCli(github, {
      name: "both",
      labels: "test",
      dir: join(dir, "gh"),
    });

    // Both queued before gnomon starts: its two runners take them at once, one VM serves them in turn.
    const forgejoJob = forgejo.queueJob({
      workflow:
        "name: ci\non: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n" +
        '      - name: Hello\n        run: echo "forgejo job in $(uname -s)"\n',
    });
    const githubJob = github.queueJob({
      labels: ["self-hosted", "test"],
      steps: [{ name: "Hello", run: 'echo "github job in $(uname -s)"' }],
    });

    const up = spawnGnomon(["up"], {
      cwd: dir,
      env: {
        ...fleetUpEnv({ databaseUrl: db.location, prefix, dataDir }),
        GNOMON_FORGEJO_CREDENTIALS: forgejoFile,
        GNOMON_GITHUB_CREDENTIALS: githubDir,
      },
    });
    t.after(async () => {
      await killUp(up.child, up.exited, dataDir);
      await forgejo.close();
      await github.close();
      await deleteTopology(prefix);
    });

    const [task] = await Promise.all([
      forgejo.waitFor(
        () => {
          const x = forgejo.taskOfJob(forgejoJob);
          return x && x.status !== "running" && x.logArchived ? x : undefined;
        },
        "the Forgejo job to end with its log archived",
        BOTH_JOBS_MS,
      ),
      github.waitFor(
        () => github.job(githubJob.jobId).state === "completed",
        "the GitHub job to complete",
        BOTH_JOBS_MS,
      ),
    ]);
    const rows = task.rows.join("\n");
    assert.equal(task.status, "success", `${rows}\n${up.stderr().slice(-3_000)}`);
    assert.ok(task.rows.includes("forgejo job in Linux"), rows);
    assert.ok(!rows.includes("github job"), "Forgejo holds no line of the GitHub job");
    const done = github.job(githubJob.jobId);
    const ghLog = done.jobLog?.content ?? "";
    assert.equal(done.conclusion, "succeeded", `${ghLog}\n${up.stderr().slice(-3_000)}`);
    assert.match(ghLog, /github job in Linux/);
    assert.ok(!ghLog.includes("forgejo job"), "GitHub holds no line of the Forgejo job");

    // The orchestrator logs each VM's start and end as it counts it running: one job's VM went
    // before the other's started.
    const vms = await until(
      () => {
        const seen = vmLines(up.stderr());
        return seen.filter((v) => v.msg === "vm gone").length >= 2 && seen;
      },
      "both VMs logged gone",
      30_000,
    );
    assert.deepEqual(
      vms.map((v) => v.msg),
      ["vm started", "vm gone", "vm started", "vm gone"],
      JSON.stringify(vms),
    );
    assert.equal(vms[0]?.vm, vms[1]?.vm);
    assert.equal(vms[2]?.vm, vms[3]?.vm);
    assert.notEqual(vms[0]?.jobId, vms[2]?.jobId, "the two VMs ran the two jobs");

    up.child.kill("SIGTERM");
    assert.equal(await up.exited, 0, up.stderr().slice(-3_000));
    assert.deepEqual(qemuPids(dataDir), [], "no QEMU process is left");
  });
});
