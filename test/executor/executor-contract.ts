// The behaviour every Executor must have, as node:test cases: call executorContract() from a test
// file with a factory for the executor under test (host here, ssh in a VM elsewhere). The cases use
// only POSIX sh and utilities, and the executor's own temp directory.
import assert from "node:assert/strict";
import { mkdir as mkdirLocal, mkdtemp, rm, symlink, writeFile as writeLocal } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { describe, it, type TestContext } from "node:test";
import { type Executor, FileNotFoundError, type RunResult, ServePortTakenError } from "../../src/executor/executor.js";
import { MAX_LINE_CHARS } from "../../src/executor/lines.js";
import { within } from "../support/within.js";

/** Makes a fresh executor for one test; the suite closes it when the test ends. */
export type ExecutorFactory = (t: TestContext) => Promise<Executor>;

export interface ContractOptions {
  /**
   * The longest an aborted run may take to end when its process tree ignores TERM (the
   * executor's TERM-to-KILL grace plus slack). Default 15 s.
   */
  readonly abortDeadlineMs?: number;
}

interface Captured {
  readonly result: RunResult;
  readonly stdout: string[];
  readonly stderr: string[];
}

async function sh(
  ex: Executor,
  script: string,
  opts: { env?: Record<string, string>; cwd?: string; signal?: AbortSignal; onLine?: (line: string) => void } = {},
): Promise<Captured> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const result = await ex.run({
    argv: ["sh", "-c", script],
    env: opts.env ?? {},
    cwd: opts.cwd ?? ex.platform.tempDir,
    signal: opts.signal ?? AbortSignal.timeout(30_000),
    onLine: (stream, line) => {
      (stream === "stdout" ? stdout : stderr).push(line);
      opts.onLine?.(line);
    },
  });
  return { result, stdout, stderr };
}

/** Polls a condition on the executor (not a sleep: it ends as soon as the state is reached). */
async function eventually(check: () => Promise<boolean>, deadlineMs: number, what: string): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`${what} within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let counter = 0;
const unique = (ex: Executor, name: string) => `${ex.platform.tempDir}/contract-${process.pid}-${++counter}-${name}`;

export function executorContract(name: string, make: ExecutorFactory, options: ContractOptions = {}): void {
  const abortDeadlineMs = options.abortDeadlineMs ?? 15_000;
  const open = async (t: TestContext): Promise<Executor> => {
    const ex = await make(t);
    t.after(() => ex.close());
    return ex;
  };

  describe(`${name} executor contract`, () => {
    it("reports absolute platform directories and non-empty os and arch", async (t) => {
      const ex = await open(t);
      const p = ex.platform;
      assert.ok(p.os.length > 0 && p.arch.length > 0, "os and arch are set");
      for (const dir of [p.workDir, p.tempDir, p.toolCacheDir, p.homeDir])
        assert.match(dir, /^\//, `${dir} is absolute`);
      const probe = await sh(ex, `test -d '${p.tempDir}' && test -w '${p.tempDir}' && echo ok`);
      assert.deepEqual(probe.stdout, ["ok"], "the temp directory exists and is writable");
    });

    it("runs a program with the given environment added to the base environment", async (t) => {
      const ex = await open(t);
      const { result, stdout } = await sh(
        ex,
        'printf "%s|%s\\n" "$GNOMON_CONTRACT_A" "$GNOMON_CONTRACT_B"; test -n "$PATH" && echo has-path',
        {
          env: { GNOMON_CONTRACT_A: "one two", GNOMON_CONTRACT_B: "ü=λ" },
        },
      );
      assert.deepEqual(result, { exitCode: 0, signal: null });
      assert.deepEqual(stdout, ["one two|ü=λ", "has-path"]);
    });

    it("runs in the given working directory", async (t) => {
      const ex = await open(t);
      const dir = unique(ex, "cwd");
      await ex.writeFile(`${dir}/marker.txt`, "here\n");
      const { stdout } = await sh(ex, "cat marker.txt", { cwd: dir });
      assert.deepEqual(stdout, ["here"]);
    });

    it("streams stdout and stderr line by line, including a last unterminated line", async (t) => {
      const ex = await open(t);
      const { result, stdout, stderr } = await sh(
        ex,
        "printf 'one\\ntwo\\n'; printf 'err one\\n' >&2; printf 'dos\\r\\n'; printf 'no newline at the end'",
      );
      assert.equal(result.exitCode, 0);
      assert.deepEqual(stdout, ["one", "two", "dos", "no newline at the end"]);
      assert.deepEqual(stderr, ["err one"]);
    });

    it("joins a line written in several pieces and keeps empty lines", async (t) => {
      const ex = await open(t);
      const { stdout } = await sh(ex, "printf 'pie'; sleep 0.2; printf 'ce\\n\\n'; printf 'last\\n'");
      assert.deepEqual(stdout, ["piece", "", "last"]);
    });

    it("cuts output without newlines into lines of at most 1 Mi characters, losing nothing", async (t) => {
      const ex = await open(t);
      // 3 MiB of "a" then "b\n": a step that prints a binary or minified file.
      const { result, stdout } = await sh(ex, "head -c 3145728 /dev/zero | tr '\\0' a; printf 'b\\nnext\\n'");
      assert.equal(result.exitCode, 0);
      assert.ok(
        stdout.every((l) => l.length <= MAX_LINE_CHARS),
        `longest ${Math.max(...stdout.map((l) => l.length))}`,
      );
      assert.equal(stdout.join(""), `${"a".repeat(3145728)}bnext`);
      assert.ok(stdout.length >= 4, "it was cut");
      assert.equal(stdout.at(-1), "next");
    });

    it("delivers each line as it is written, before the program ends", async (t) => {
      const ex = await open(t);
      const dir = unique(ex, "live");
      await ex.mkdirp(dir);
      let sawFirst = false;
      const run = sh(ex, "echo first; while [ ! -f go ]; do sleep 0.1; done; echo second", {
        cwd: dir,
        onLine: (line) => {
          if (line === "first") sawFirst = true;
        },
      });
      await eventually(async () => sawFirst, 10_000, "the first line arrives while the program waits");
      await ex.writeFile(`${dir}/go`, "");
      const { stdout } = await run;
      assert.deepEqual(stdout, ["first", "second"]);
    });

    it("reports exit codes", async (t) => {
      const ex = await open(t);
      assert.deepEqual((await sh(ex, "exit 0")).result, { exitCode: 0, signal: null });
      assert.deepEqual((await sh(ex, "exit 3")).result, { exitCode: 3, signal: null });
      assert.deepEqual((await sh(ex, "exit 255")).result, { exitCode: 255, signal: null });
    });

    it("reports a process ended by a signal with a null exit code", async (t) => {
      const ex = await open(t);
      const { result } = await sh(ex, "kill -KILL $$");
      assert.equal(result.exitCode, null);
      assert.match(result.signal ?? "", /KILL/);
    });

    it("ends with exit code 127 when the program does not exist", async (t) => {
      const ex = await open(t);
      const stderr: string[] = [];
      const result = await ex.run({
        argv: ["gnomon-contract-no-such-program"],
        env: {},
        cwd: ex.platform.tempDir,
        signal: AbortSignal.timeout(10_000),
        onLine: (_s, line) => stderr.push(line),
      });
      assert.equal(result.exitCode, 127);
      assert.ok(stderr.join("\n").includes("gnomon-contract-no-such-program"), "stderr names the program");
    });

    it("looks the program up in the PATH given in env", async (t) => {
      const ex = await open(t);
      const dir = unique(ex, "bin");
      await ex.writeFile(`${dir}/gnomon-contract-tool`, "#!/bin/sh\necho tool ran with $1\n", { mode: 0o755 });
      const lines: string[] = [];
      const base = await sh(ex, 'printf "%s" "$PATH"');
      const result = await ex.run({
        argv: ["gnomon-contract-tool", "x"],
        env: { PATH: `${dir}:${base.stdout[0] ?? "/usr/bin:/bin"}` },
        cwd: ex.platform.tempDir,
        signal: AbortSignal.timeout(10_000),
        onLine: (_s, line) => lines.push(line),
      });
      assert.equal(result.exitCode, 0);
      assert.deepEqual(lines, ["tool ran with x"]);
    });

    it("stops the whole process tree when the signal aborts, also children that ignore TERM", async (t) => {
      const ex = await open(t);
      const controller = new AbortController();
      let childPid: string | undefined;
      const run = sh(
        ex,
        // A grandchild that ignores TERM, and the shell itself waiting on a long sleep.
        'sh -c \'trap "" TERM; while :; do sleep 1; done\' & echo "child $!"; sleep 300',
        {
          signal: controller.signal,
          onLine: (line) => {
            const m = /^child (\d+)$/.exec(line);
            if (m) childPid = m[1];
          },
        },
      );
      await eventually(async () => childPid !== undefined, 10_000, "the script reports its child");
      controller.abort(new Error("contract test abort"));
      // Bounded far below the script's own 300 s: the abort ended it.
      const { result } = await within(run, "the run to end after the abort", abortDeadlineMs + 60_000);
      assert.notEqual(result.exitCode, 0, "an aborted run does not succeed");
      await eventually(
        async () => (await sh(ex, `kill -0 ${childPid} 2>/dev/null || echo gone`)).stdout.includes("gone"),
        abortDeadlineMs,
        `the TERM-ignoring child ${childPid} is gone`,
      );
    });

    it("does not start a program when the signal is already aborted", async (t) => {
      const ex = await open(t);
      const dir = unique(ex, "not-started");
      await ex.mkdirp(dir);
      const controller = new AbortController();
      controller.abort();
      const { result } = await sh(ex, "touch started", { cwd: dir, signal: controller.signal });
      assert.notEqual(result.exitCode, 0);
      await assert.rejects(ex.readFile(`${dir}/started`), FileNotFoundError);
    });

    it("writes files, creating parent directories, and reads back the same bytes", async (t) => {
      const ex = await open(t);
      const path = `${unique(ex, "files")}/a/b/c.bin`;
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      await ex.writeFile(path, bytes);
      assert.deepEqual(new Uint8Array(await ex.readFile(path)), bytes);
      await ex.writeFile(path, "replaced ü\n");
      assert.equal((await ex.readFile(path)).toString("utf8"), "replaced ü\n");
      const seen = await sh(ex, `cat '${path}'`);
      assert.deepEqual(seen.stdout, ["replaced ü"], "a process sees what writeFile wrote");
    });

    it("sets the file mode when asked", async (t) => {
      const ex = await open(t);
      const path = `${unique(ex, "mode")}/run.sh`;
      await ex.writeFile(path, "#!/bin/sh\necho executable\n", { mode: 0o755 });
      assert.deepEqual((await sh(ex, `'${path}'`)).stdout, ["executable"]);
    });

    it("reads what a process wrote", async (t) => {
      const ex = await open(t);
      const dir = unique(ex, "proc-wrote");
      await ex.mkdirp(dir);
      await sh(ex, "printf 'from the process\\n' > out.txt", { cwd: dir });
      assert.equal((await ex.readFile(`${dir}/out.txt`)).toString(), "from the process\n");
    });

    it("rejects reading a missing file with FileNotFoundError naming the path", async (t) => {
      const ex = await open(t);
      const path = `${unique(ex, "missing")}/nope.txt`;
      await assert.rejects(ex.readFile(path), (err: unknown) => {
        assert.ok(err instanceof FileNotFoundError, "a FileNotFoundError");
        assert.equal(err.path, path);
        return true;
      });
    });

    it("creates nested directories and accepts existing ones", async (t) => {
      const ex = await open(t);
      const dir = `${unique(ex, "mkdirp")}/x/y/z`;
      await ex.mkdirp(dir);
      await ex.mkdirp(dir);
      assert.deepEqual((await sh(ex, `test -d '${dir}' && echo dir`)).stdout, ["dir"]);
    });

    it("uploads a directory tree into a directory, keeping executable bits and merging", async (t) => {
      const ex = await open(t);
      const local = await mkdtemp(join(tmpdir(), "gnomon-contract-upload-"));
      t.after(() => rm(local, { recursive: true, force: true }));
      await mkdirLocal(join(local, "sub", "deeper"), { recursive: true });
      await mkdirLocal(join(local, ".hidden"), { recursive: true });
      await writeLocal(join(local, "top.txt"), "top\n");
      await writeLocal(join(local, "sub", "deeper", "leaf.txt"), "leaf\n");
      await writeLocal(join(local, ".hidden", "dot.txt"), "dot\n");
      await writeLocal(join(local, "sub", "tool.sh"), "#!/bin/sh\necho tool\n", { mode: 0o755 });
      await symlink("top.txt", join(local, "link.txt"));
      const remote = unique(ex, "upload");
      await ex.writeFile(`${remote}/already-there.txt`, "kept\n");
      await ex.uploadDir(local, remote);
      assert.equal((await ex.readFile(`${remote}/top.txt`)).toString(), "top\n");
      assert.equal((await ex.readFile(`${remote}/sub/deeper/leaf.txt`)).toString(), "leaf\n");
      assert.equal((await ex.readFile(`${remote}/.hidden/dot.txt`)).toString(), "dot\n");
      assert.equal((await ex.readFile(`${remote}/already-there.txt`)).toString(), "kept\n");
      assert.deepEqual((await sh(ex, `'${remote}/sub/tool.sh'`)).stdout, ["tool"]);
      assert.deepEqual((await sh(ex, `test -L '${remote}/link.txt' && cat '${remote}/link.txt'`)).stdout, ["top"]);
    });

    it("leaves out what the skip function names when uploading, without entering skipped folders", async (t) => {
      const ex = await open(t);
      const local = await mkdtemp(join(tmpdir(), "gnomon-contract-skip-"));
      t.after(() => rm(local, { recursive: true, force: true }));
      await mkdirLocal(join(local, "node_modules", "pkg"), { recursive: true });
      await mkdirLocal(join(local, "src"), { recursive: true });
      await writeLocal(join(local, "node_modules", "pkg", "index.js"), "x\n");
      await writeLocal(join(local, "src", "keep.ts"), "keep\n");
      await writeLocal(join(local, "src", "build.log"), "log\n");
      const asked: string[] = [];
      const remote = unique(ex, "skip");
      await ex.uploadDir(local, remote, {
        skip: (rel) => {
          asked.push(rel);
          return rel === "node_modules" || rel.endsWith(".log");
        },
      });
      assert.equal((await ex.readFile(`${remote}/src/keep.ts`)).toString(), "keep\n");
      assert.deepEqual((await sh(ex, `ls -A '${remote}'; ls -A '${remote}/src'`)).stdout, ["src", "keep.ts"]);
      assert.ok(!asked.some((r) => r.startsWith("node_modules/")), "a skipped folder is not walked");
    });

    it("serves a host service on a loopback port inside the machine, one stream per connection", async (t) => {
      const ex = await open(t);
      let streams = 0;
      const served = await ex.serve((stream) => {
        streams += 1;
        stream.on("data", (b: Buffer) => stream.end(`${b.toString("utf8").trim().toUpperCase()}\n`));
      });
      assert.ok(served.port > 0 && served.port < 65_536);
      // bash's /dev/tcp: a client that every guest with bash has.
      const talk = (word: string) => `exec 3<>/dev/tcp/127.0.0.1/${served.port} && echo ${word} >&3 && head -n 1 <&3`;
      const both = await sh(ex, `bash -c '${talk("one")}' & bash -c '${talk("two")}'; wait`);
      assert.deepEqual([...both.stdout].sort(), ["ONE", "TWO"]);
      assert.equal(streams, 2);
      await served.close();
      const after = await sh(ex, `bash -c '${talk("three")}' 2>/dev/null || echo refused`);
      assert.deepEqual(after.stdout, ["refused"]);
    });

    it("serves on the port asked for when it is free in the machine, and refuses it while it is taken", async (t) => {
      const ex = await open(t);
      const answer = (who: string) => (stream: Duplex) =>
        stream.on("data", (b: Buffer) => stream.end(`${who} ${b.toString("utf8").trim()}\n`));
      const first = await ex.serve(answer("first"));
      const port = first.port;
      await assert.rejects(ex.serve(answer("second"), { port }), (err: unknown) => {
        assert.ok(err instanceof ServePortTakenError, String(err));
        assert.equal(err.port, port);
        return true;
      });
      await first.close();
      const again = await ex.serve(answer("again"), { port });
      t.after(() => again.close());
      assert.equal(again.port, port, "the port asked for");
      const got = await sh(ex, `bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && echo hi >&3 && head -n 1 <&3'`);
      assert.deepEqual(got.stdout, ["again hi"]);
    });

    it("can be closed twice", async (t) => {
      const ex = await make(t);
      await ex.close();
      await ex.close();
    });
  });
}
