// QEMU never outlives the process that started it: a gnomon process killed with SIGKILL (no exit
// hook runs) takes its VMs with it, so no VM runs on that nobody owns.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { withParentDeathSignal } from "../../src/vm/parent-death.js";
import { isAlive, qemuPids, until } from "../support/qemu-processes.js";
import { TEST_RUN_DIR, testImage } from "../support/test-image.js";

const run = promisify(execFile);
const FIXTURE = new URL("./fixtures/boot-and-hold.ts", import.meta.url).pathname;

describe("QEMU and the process that started it", () => {
  it("a booted VM's QEMU is gone within seconds of its gnomon process being SIGKILLed", async (t) => {
    await testImage();
    const runDir = mkdtempSync(join(TEST_RUN_DIR, "pdeath-"));
    const child = spawn(process.execPath, ["--import", "tsx", FIXTURE, runDir], {
      cwd: new URL("../../", import.meta.url).pathname,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    let pid: number | undefined;
    t.after(async () => {
      child.kill("SIGKILL");
      await exited;
      // Never leave a VM behind, also when the assertion below fails.
      if (pid !== undefined && isAlive(pid)) process.kill(pid, "SIGKILL");
      rmSync(runDir, { recursive: true, force: true });
    });

    await until(() => out.includes("ready\n"), "the VM to boot in the child process", 180_000);
    const spawned = JSON.parse(out.split("\n")[0] ?? "") as { id: string; pid: number };
    pid = spawned.pid;
    assert.ok(isAlive(pid), "QEMU runs");
    assert.deepEqual(qemuPids(spawned.id), [pid], "the recorded pid is QEMU itself (setpriv execs it in place)");

    child.kill("SIGKILL");
    await exited;
    const killedAt = Date.now();
    await until(() => !isAlive(spawned.pid) && qemuPids(spawned.id).length === 0, "QEMU to die with its parent", 5_000);
    assert.ok(Date.now() - killedAt < 5_000);
  });

  it("still names the package to install when QEMU is missing but setpriv is there", async () => {
    await testImage();
    // A PATH with every program of the usual folders but QEMU, so that setpriv runs and cannot find it.
    const bin = mkdtempSync(join(tmpdir(), "gnomon-noqemu-"));
    for (const dir of ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"])
      for (const name of existsSync(dir) ? readdirSync(dir) : [])
        if (!name.startsWith("qemu-system") && !existsSync(join(bin, name)))
          symlinkSync(join(dir, name), join(bin, name));
    const script = `
      import { bootMachine } from ${JSON.stringify(new URL("../../src/vm/machine.ts", import.meta.url).pathname)};
      import { testImage, TEST_RUN_DIR } from ${JSON.stringify(new URL("../support/test-image.ts", import.meta.url).pathname)};
      const image = await testImage();
      process.env.PATH = ${JSON.stringify(bin)};
      await bootMachine(image, { runDir: TEST_RUN_DIR, accel: "tcg" }).catch((e) => console.log(e.name + ": " + e.message));
    `;
    try {
      const { stdout } = await run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        cwd: new URL("../../", import.meta.url).pathname,
      });
      assert.match(
        stdout,
        /ToolMissingError: The program qemu-system-x86_64 is not installed on this host; install it with `apt-get install qemu-system-x86`/,
      );
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it("runs QEMU through setpriv --pdeathsig KILL when a helper is there, and directly otherwise", () => {
    assert.deepEqual(withParentDeathSignal("qemu-system-x86_64", ["-m", "256"], "/usr/bin/setpriv"), {
      command: "/usr/bin/setpriv",
      args: ["--pdeathsig", "KILL", "--", "qemu-system-x86_64", "-m", "256"],
    });
    assert.deepEqual(withParentDeathSignal("qemu-system-x86_64", ["-m", "256"], undefined), {
      command: "qemu-system-x86_64",
      args: ["-m", "256"],
    });
  });
});
