// The ssh executor in a real VM of the offline test image: the shared executor contract (one VM for
// the file, a fresh connection per case), plus what only the ssh executor does.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createSshExecutor, remoteCommand, type SshExecutor } from "../../src/executor/ssh.js";
import type { Machine } from "../../src/vm/machine.js";
import { bootTestVm } from "../support/test-image.js";
import { executorContract } from "./executor-contract.js";

let vm: Machine;
const teardown: (() => Promise<void>)[] = [];
before(async () => {
  vm = await bootTestVm({ after: (fn) => teardown.push(fn) });
});
after(async () => {
  for (const fn of teardown) await fn();
});

const open = () => createSshExecutor(vm.ssh, { label: "test", killGraceMs: 1_000, outputGraceMs: 1_000 });

executorContract("ssh", open, { abortDeadlineMs: 8_000 });

describe("ssh executor", () => {
  it("takes over the connection the VM logged in with and reports the guest's platform", async () => {
    const client = vm.takeSshClient();
    assert.ok(client, "the VM hands over its boot connection once");
    assert.equal(vm.takeSshClient(), undefined, "and only once");
    const ex = await createSshExecutor(client, { label: "test" });
    try {
      assert.equal(ex.platform.os, "Linux");
      assert.equal(ex.platform.arch, "X64");
      assert.equal(ex.platform.homeDir, "/home/runner");
      assert.equal(ex.platform.workDir, "/home/runner/work");
    } finally {
      await ex.close();
    }
  });

  it("refuses a connection whose host key differs from the one pinned at boot", async () => {
    await assert.rejects(
      createSshExecutor({ ...vm.ssh, hostKey: Buffer.from("not the guest's key") }, { readyTimeoutMs: 10_000 }),
      /verification failed|handshake/i,
    );
  });

  it("uploads over SFTP as it does for guests without GNU tar: tree, modes, symlinks, merging, skips", async (t) => {
    const ex = await createSshExecutor(vm.ssh, { label: "test", upload: "sftp" });
    t.after(() => ex.close());
    const local = await mkdtemp(join(tmpdir(), "gnomon-sftp-up-"));
    t.after(() => rm(local, { recursive: true, force: true }));
    await mkdir(join(local, "a", "b"), { recursive: true });
    await mkdir(join(local, "skipme"));
    await writeFile(join(local, "a", "b", "leaf.txt"), "leaf\n");
    await writeFile(join(local, "run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
    await writeFile(join(local, "skipme", "x"), "x");
    await symlink("run.sh", join(local, "link"));
    const remote = `${ex.platform.workDir}/sftp-${Date.now()}`;
    await ex.writeFile(`${remote}/kept.txt`, "kept\n");
    await ex.uploadDir(local, remote, { skip: (rel) => rel === "skipme" });
    const out: string[] = [];
    const r = await ex.run({
      argv: ["sh", "-c", "cat a/b/leaf.txt kept.txt; ./run.sh; readlink link; test -e skipme || echo no-skipme"],
      env: {},
      cwd: remote,
      signal: new AbortController().signal,
      onLine: (_s, l) => out.push(l),
    });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(out, ["leaf", "kept", "ran", "run.sh", "no-skipme"]);
  });

  it("passes environment values through the shell untouched", async () => {
    const ex: SshExecutor = await open();
    try {
      const tricky = 'it\'s $HOME `id` "quoted" \\ back\nslash';
      const lines: string[] = [];
      const r = await ex.run({
        argv: ["sh", "-c", 'printf "%s" "$TRICKY"'],
        env: { TRICKY: tricky },
        cwd: ex.platform.tempDir,
        signal: AbortSignal.timeout(10_000),
        onLine: (_s, l) => lines.push(l),
      });
      assert.equal(r.exitCode, 0);
      assert.equal(lines.join("\n"), tricky);
    } finally {
      await ex.close();
    }
  });
});

describe("remoteCommand", () => {
  it("quotes every word and passes the environment through env", () => {
    assert.equal(
      remoteCommand(["echo", "a b", "it's"], { X: "1 2" }, "/tmp/w d"),
      `printf '\u001egnomon-pid %s\\n' "$$" >&2; cd -- '/tmp/w d' 2>/dev/null || { printf '\u001egnomon-no-cwd\\n' >&2; exit 1; }; exec env 'X=1 2' 'echo' 'a b' 'it'\\''s'`,
    );
  });

  it("rejects a variable name env would misread", () => {
    assert.throws(() => remoteCommand(["true"], { "A=B": "x" }, "/"), /not valid/);
  });
});
