// The host executor: the shared executor contract, plus what only the host does (its per-job
// directory, keeping gnomon's settings out of steps, cleaning up what a job left running).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createHostExecutor } from "../../src/executor/host.js";
import { executorContract } from "./executor-contract.js";

executorContract("host", () => createHostExecutor({ killGraceMs: 300 }), { abortDeadlineMs: 5_000 });

const lines = () => {
  const out: string[] = [];
  return { out, onLine: (_s: "stdout" | "stderr", l: string) => out.push(l) };
};

describe("host executor", () => {
  it("keeps gnomon's own settings out of the environment of steps", async (t) => {
    const ex = await createHostExecutor({
      baseEnv: { PATH: process.env["PATH"], GNOMON_CLUSTER_KEY: "k", AMQP_URL: "amqp://x", KEEP: "yes" },
    });
    t.after(() => ex.close());
    const { out, onLine } = lines();
    await ex.run({
      argv: ["sh", "-c", 'echo "${GNOMON_CLUSTER_KEY-unset} ${AMQP_URL-unset} $KEEP"'],
      env: {},
      cwd: ex.platform.tempDir,
      signal: AbortSignal.timeout(5_000),
      onLine,
    });
    assert.deepEqual(out, ["unset unset yes"]);
  });

  it("creates its parent folder when it does not exist yet (a fresh data directory)", async (t) => {
    const base = await mkdtemp(join(tmpdir(), "gnomon-host-parent-"));
    t.after(() => rm(base, { recursive: true, force: true }));
    const ex = await createHostExecutor({ parentDir: join(base, "data", "host-jobs") });
    assert.ok(ex.jobDir.startsWith(join(base, "data", "host-jobs")));
    await ex.close();
  });

  it("puts work, temp and tool cache in one per-job directory and removes it on close", async () => {
    const ex = await createHostExecutor();
    for (const dir of [ex.platform.workDir, ex.platform.tempDir, ex.platform.toolCacheDir])
      assert.ok(dir.startsWith(`${ex.jobDir}/`), `${dir} is inside ${ex.jobDir}`);
    await ex.close();
    await assert.rejects(access(ex.jobDir), "the job directory is gone");
  });

  it("kills processes a step left running in the background when it closes", async () => {
    const ex = await createHostExecutor();
    const { out, onLine } = lines();
    const result = await ex.run({
      argv: ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
      env: {},
      cwd: ex.platform.tempDir,
      signal: AbortSignal.timeout(5_000),
      onLine,
    });
    assert.equal(result.exitCode, 0, "the step ends while its background process runs on");
    const pid = Number(out[0]);
    assert.doesNotThrow(() => process.kill(pid, 0), "the background process is alive after the step");
    await ex.close();
    const until = Date.now() + 5_000;
    while (isAlive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(isAlive(pid), false, "close() killed it");
  });

  it("ends a run whose background process holds the output open after the output grace", async (t) => {
    const ex = await createHostExecutor({ outputGraceMs: 300 });
    t.after(() => ex.close());
    const { out, onLine } = lines();
    const result = await ex.run({
      argv: ["sh", "-c", "sleep 300 & echo started"],
      env: {},
      cwd: ex.platform.tempDir,
      // Had it waited for the background sleep, this would abort the run: no exit code 0 then.
      signal: AbortSignal.timeout(60_000),
      onLine,
    });
    assert.deepEqual(result, { exitCode: 0, signal: null }, "it ended by itself, not by the abort");
    assert.deepEqual(out, ["started"]);
  });

  it("uploads a working tree that holds a FIFO, leaving the FIFO out", async (t) => {
    const ex = await createHostExecutor();
    t.after(() => ex.close());
    const local = await mkdtemp(join(tmpdir(), "gnomon-fifo-"));
    t.after(() => rm(local, { recursive: true, force: true }));
    await writeFile(join(local, "kept.txt"), "kept\n");
    execFileSync("mkfifo", [join(local, "pipe")]);
    await ex.uploadDir(local, `${ex.platform.workDir}/copy`);
    assert.equal((await ex.readFile(`${ex.platform.workDir}/copy/kept.txt`)).toString(), "kept\n");
    await assert.rejects(access(`${ex.platform.workDir}/copy/pipe`));
  });

  it("rejects a working directory that does not exist", async (t) => {
    const ex = await createHostExecutor();
    t.after(() => ex.close());
    await assert.rejects(
      ex.run({
        argv: ["true"],
        env: {},
        cwd: `${ex.platform.tempDir}/nope`,
        signal: AbortSignal.timeout(1_000),
        onLine: () => {},
      }),
      /no such file on the executor: .*nope/,
    );
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
