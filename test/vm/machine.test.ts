// Real VMs of the offline test image: boot, log in with a fresh in-memory key, run commands, tear
// down and check that nothing is left; guests broken on purpose fail within their boot timeout
// with the phase they were stuck at and the last serial console lines.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { createSshExecutor } from "../../src/executor/ssh.js";
import type { ImageSpec } from "../../src/vm/catalog.js";
import { BootTimeoutError, QemuExitedError } from "../../src/vm/errors.js";
import { bootMachine, type ProvisioningStep, type SpawnedVm } from "../../src/vm/machine.js";
import { TEST_RUN_DIR, testImage, withKernelArgs } from "../support/test-image.js";

const run = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits for a state (not a sleep): a killed QEMU disappears once its parent reaps it. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function qemuProcessesOf(vmId: string): Promise<string> {
  const { stdout } = await run("ps", ["-eo", "pid,args"]);
  return stdout
    .split("\n")
    .filter((l) => l.includes(`gnomon-vm-${vmId}`) || l.includes(`gnomon-${vmId},`))
    .join("\n");
}

async function assertNothingLeft(vm: SpawnedVm): Promise<void> {
  await until(() => !alive(vm.pid), 10_000, `QEMU ${vm.pid} is gone`);
  assert.equal(await qemuProcessesOf(vm.id), "", "no QEMU process of this VM is left");
  assert.equal(existsSync(vm.overlay), false, "the overlay is deleted");
  assert.equal(existsSync(vm.seed), false, "the seed is deleted");
  assert.equal(existsSync(vm.dir), false, "the run folder is deleted");
  assert.equal(existsSync(vm.qmpSocket), false, "the QMP socket is deleted");
}

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

/** Boots `image` expecting a BootTimeoutError; returns it with what was spawned. */
async function expectBootTimeout(image: ImageSpec): Promise<{ err: BootTimeoutError; vm: SpawnedVm }> {
  let vm: SpawnedVm | undefined;
  const err = await bootMachine(image, {
    runDir: TEST_RUN_DIR,
    onSpawn: (s) => {
      vm = s;
    },
  }).then(
    () => assert.fail("the broken guest booted"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BootTimeoutError, `a BootTimeoutError, got ${String(err)}`);
  assert.ok(vm, "QEMU was spawned");
  return { err, vm };
}

describe("QEMU machine", () => {
  it("boots the test image, logs in with a fresh in-memory key, runs commands and leaves nothing behind", async (t) => {
    const image = await testImage();
    const baseBefore = await sha256(image.disk.path);
    const phases: ProvisioningStep[] = [];
    const serial: string[] = [];
    let spawned: SpawnedVm | undefined;
    let filesDuringBoot: string[] = [];
    const vm = await bootMachine(image, {
      runDir: TEST_RUN_DIR,
      onPhase: (p) => phases.push(p),
      onSerialLine: (l) => serial.push(l),
      onSpawn: async (s) => {
        spawned = s;
        filesDuringBoot = await readdir(s.dir);
      },
    });
    t.after(() => vm.destroy());
    assert.ok(spawned, "onSpawn reported the VM");
    assert.equal(spawned.pid, vm.pid);
    assert.equal(spawned.sshPort, vm.ssh.port);
    assert.ok(filesDuringBoot.includes("disk.qcow2") && filesDuringBoot.includes("seed.img"), "overlay and seed exist");

    // The private key exists only in this process: not in the run folder, not in the seed.
    const pem = vm.ssh.privateKey.toString();
    const body = pem.split("\n").slice(1, -2).join("");
    for (const f of await readdir(spawned.dir)) {
      if (f.endsWith(".sock")) continue;
      const bytes = await readFile(join(spawned.dir, f));
      assert.ok(
        !bytes.includes("OPENSSH PRIVATE KEY") && !bytes.includes(body.slice(20, 80)),
        `${f} holds no private key`,
      );
    }

    const order = ["creating-disk", "booting", "kernel", "network", "ssh", "ready"];
    assert.deepEqual(phases.slice(0, 2), ["creating-disk", "booting"]);
    assert.equal(phases.at(-1), "ready");
    for (let i = 1; i < phases.length; i++)
      assert.ok(
        order.indexOf(phases[i]!) > order.indexOf(phases[i - 1]!),
        `phases move forward: ${phases.join(" → ")}`,
      );
    assert.ok(
      serial.some((l) => l.includes("gnomon-guest: ssh server started")),
      "the serial console was captured",
    );
    assert.ok(vm.bootMs > 0 && vm.bootMs < image.bootTimeoutMs);

    const client = vm.takeSshClient();
    assert.ok(client, "the boot connection is handed over");
    const ex = await createSshExecutor(client, { label: "test" });
    const lines: string[] = [];
    const r = await ex.run({
      argv: [
        "sh",
        "-c",
        "id -un; uname -s; echo written > /tmp/on-overlay && cat /tmp/on-overlay; git --version | cut -d' ' -f1-2",
      ],
      env: {},
      cwd: ex.platform.homeDir,
      signal: AbortSignal.timeout(30_000),
      onLine: (_s, l) => lines.push(l),
    });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(lines, ["runner", "Linux", "written", "git version"]);
    await ex.close();

    await vm.destroy();
    await vm.destroy();
    assert.equal(vm.state.t, "gone");
    await assertNothingLeft(spawned);
    assert.ok(
      vm.ssh.privateKey.every((b) => b === 0),
      "the private key is wiped when the VM is destroyed",
    );
    assert.equal(await sha256(image.disk.path), baseBefore, "the base image is never written");
  });

  it("powers the guest down through ACPI when destroyed with a grace period", async () => {
    const vm = await bootMachine(await testImage(), { runDir: TEST_RUN_DIR });
    // A grace far above what even a guest without KVM needs: when it runs out, QEMU is quit under the
    // guest, which then never prints its power-down line. That line, not a clock, tells the two apart.
    await vm.destroy({ graceMs: 120_000 });
    assert.ok(
      vm.serialTail().some((l) => l.includes("reboot: Power down")),
      `the guest powered itself off: ${vm.serialTail(5).join(" / ")}`,
    );
    assert.equal(vm.state.t === "gone" ? vm.state.exitCode : undefined, 0);
  });

  it("fails a guest that never starts its SSH server at 'SSH refused', within its boot timeout, with the serial tail", async () => {
    const image = { ...withKernelArgs(await testImage(), "gnomon.ssh=off"), bootTimeoutMs: 40_000 };
    const { err, vm } = await expectBootTimeout(image);
    assert.equal(err.phase, "network");
    assert.equal(err.afterMs, 40_000, "the image's own boot timeout applied");
    assert.match(err.message, /did not boot within 40 s: stuck at SSH refused/);
    assert.match(err.message, /gnomon-guest: ssh server not started \(gnomon\.ssh=off\)/);
    assert.ok(err.serialTail.some((l) => l.includes("network up")));
    await assertNothingLeft(vm);
  });

  it("fails a guest whose network never comes up at 'kernel booted but no network'", async () => {
    const image = { ...withKernelArgs(await testImage(), "gnomon.net=off"), bootTimeoutMs: 40_000 };
    const { err, vm } = await expectBootTimeout(image);
    assert.equal(err.phase, "kernel");
    assert.match(err.message, /stuck at kernel booted but no network/);
    assert.match(err.message, /network left down/);
    await assertNothingLeft(vm);
  });

  it("fails a guest that refuses the job key at 'auth failed'", async () => {
    const image = { ...withKernelArgs(await testImage(), "gnomon.keys=off"), bootTimeoutMs: 40_000 };
    const { err, vm } = await expectBootTimeout(image);
    assert.equal(err.phase, "ssh");
    assert.match(err.message, /stuck at auth failed/);
    await assertNothingLeft(vm);
  });

  it("fails a disk that does not boot at 'no serial output'", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "gnomon-bogus-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const disk = join(dir, "blank.raw");
    await writeFile(disk, Buffer.alloc(1024 * 1024));
    const base = await testImage();
    const image: ImageSpec = {
      ...base,
      name: "blank",
      disk: { path: disk, format: "raw" },
      boot: { method: "bios" },
      diskGiB: 1,
      bootTimeoutMs: 10_000,
    };
    const { err, vm } = await expectBootTimeout(image);
    assert.equal(err.phase, "booting");
    assert.equal(err.afterMs, 10_000);
    assert.match(err.message, /stuck at no serial output/);
    assert.match(err.message, /serial console stayed empty/);
    await assertNothingLeft(vm);
  });

  it("reports QEMU's own message when it cannot start the guest", async () => {
    const base = await testImage();
    assert.equal(base.boot.method, "direct");
    const image = { ...base, boot: { ...base.boot, kernel: "/nonexistent/vmlinuz" } } as ImageSpec;
    let vm: SpawnedVm | undefined;
    await assert.rejects(
      bootMachine(image, {
        runDir: TEST_RUN_DIR,
        onSpawn: (s) => {
          vm = s;
        },
      }),
      (err: unknown) => {
        assert.ok(err instanceof QemuExitedError, String(err));
        assert.match(err.message, /nonexistent\/vmlinuz/);
        return true;
      },
    );
    if (vm) await assertNothingLeft(vm);
  });

  it("names the Debian package to install when a host program is missing", async () => {
    await testImage();
    const script = `
      import { bootMachine } from ${JSON.stringify(new URL("../../src/vm/machine.ts", import.meta.url).pathname)};
      import { testImage, TEST_RUN_DIR } from ${JSON.stringify(new URL("../support/test-image.ts", import.meta.url).pathname)};
      const image = await testImage();
      process.env.PATH = "/nonexistent";
      await bootMachine(image, { runDir: TEST_RUN_DIR }).catch((e) => console.log(e.name + ": " + e.message));
    `;
    const { stdout } = await run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: new URL("../../", import.meta.url).pathname,
    });
    assert.match(
      stdout,
      /ToolMissingError: The program qemu-img is not installed on this host; install it with `apt-get install qemu-utils`/,
    );
  });

  it("stops booting and removes everything when cancelled", async () => {
    const image = await testImage();
    const ctl = new AbortController();
    let vm: SpawnedVm | undefined;
    const reason = new Error("job cancelled on the forge");
    await assert.rejects(
      bootMachine(image, {
        runDir: TEST_RUN_DIR,
        signal: ctl.signal,
        onSpawn: (s) => {
          vm = s;
        },
        onPhase: (p) => {
          if (p === "booting") ctl.abort(reason);
        },
      }),
      (err: unknown) => err === reason,
    );
    assert.ok(vm);
    await assertNothingLeft(vm);
  });

  it("tears down when the onSpawn hook fails, and passes its error on", async () => {
    const image = await testImage();
    let vm: SpawnedVm | undefined;
    await assert.rejects(
      bootMachine(image, {
        runDir: TEST_RUN_DIR,
        onSpawn: (s) => {
          vm = s;
          throw new Error("cannot record the VM");
        },
      }),
      /cannot record the VM/,
    );
    assert.ok(vm);
    await assertNothingLeft(vm);
  });

  it("kills QEMU and removes overlay and seed when the process exits without destroying the VM", async () => {
    await testImage();
    const script = `
      import { bootMachine } from ${JSON.stringify(new URL("../../src/vm/machine.ts", import.meta.url).pathname)};
      import { testImage, TEST_RUN_DIR } from ${JSON.stringify(new URL("../support/test-image.ts", import.meta.url).pathname)};
      const image = await testImage();
      await bootMachine(image, { runDir: TEST_RUN_DIR, onSpawn: (s) => { process.stdout.write(JSON.stringify(s) + "\\n"); process.exit(3); } });
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
      cwd: new URL("../../", import.meta.url).pathname,
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
    });
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    assert.equal(code, 3);
    const vm = JSON.parse(out.trim().split("\n").at(-1)!) as SpawnedVm;
    await assertNothingLeft(vm);
  });
});
