// What snapshot restore would buy, and why it needs a fresh identity: boots one VM of the test image
// with gnomon's own QEMU arguments (sandbox included), saves the running guest (QMP stop + migrate
// to a TCP socket this script writes to a file: `exec:` migration is refused by `-sandbox
// spawn=deny`, and QEMU 7.2 has no `file:` URI), copies its overlay and seed, then restores it
// --runs times: a new overlay over the saved one, QEMU with `-incoming tcp:…` fed the state file,
// `cont`, and the first command over a new SSH login with the saved guest's key. It prints each
// restore's time (running again, first command's output) and what the guest says about itself:
// restores of one snapshot often have the same boot id and read the same "random" bytes (until the
// kernel reseeds from RDRAND), and keep the clock of the save, which is why restored job VMs need a
// fresh identity (host key, machine id, random seed, clock, key) before any job code runs. Not yet
// in the product; this measures the mechanism.
// Usage: node --import tsx bench/snapshot-restore.ts [--runs 5]
import { type ChildProcess, spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, rm, stat } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Client } from "ssh2";
import { bootMachine } from "../src/vm/machine.js";
import { createOverlay } from "../src/vm/overlay.js";
import { acquirePort, releasePort } from "../src/vm/ports.js";
import { qemuArgs, qemuBinary } from "../src/vm/qemu-args.js";
import { QmpClient } from "../src/vm/qmp.js";
import { TEST_RUN_DIR, testImage } from "../test/support/test-image.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const RUNS = Number(values.runs);
const image = await testImage();
const snap = join(TEST_RUN_DIR, `snapshot-${process.pid}`);
const seedName = image.seedFormat === "vfat" ? "seed.img" : "seed.iso";
await mkdir(snap, { recursive: true });
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

async function qmp(path: string): Promise<QmpClient> {
  for (let i = 0; ; i++) {
    try {
      return await QmpClient.connect(path, 2_000);
    } catch (err) {
      if (i > 500) throw err;
      await sleep(10);
    }
  }
}

/** First command's output over a new login; retried until the guest answers. */
async function firstCommand(port: number, privateKey: Buffer): Promise<string> {
  const cmd = "cat /proc/sys/kernel/random/boot_id; head -c8 /dev/urandom | xxd -p; date +%s";
  for (let i = 0; i < 2_000; i++) {
    const out = await new Promise<string | undefined>((resolve) => {
      const c = new Client();
      c.once("ready", () =>
        c.exec(cmd, (err, st) => {
          if (err) return resolve(undefined);
          let o = "";
          st.on("data", (d: Buffer) => {
            o += d.toString();
          });
          st.on("close", () => {
            c.end();
            resolve(o);
          });
        }),
      );
      c.once("error", () => resolve(undefined));
      c.connect({ host: "127.0.0.1", port, username: image.login.user, privateKey, readyTimeout: 5_000 });
    });
    if (out) return out;
    await sleep(20);
  }
  throw new Error("the restored guest never answered");
}

// Save.
const vm = await bootMachine(image, { runDir: TEST_RUN_DIR, accel: "tcg" });
const key = Buffer.from(vm.ssh.privateKey);
const vmDir = join(TEST_RUN_DIR, vm.id);
const state = join(snap, "state");
const source = await qmp(join(vmDir, "qmp.sock"));
const t0 = performance.now();
await source.execute("stop");
const savePort = await acquirePort();
let written!: Promise<void>;
await new Promise<void>((listening) => {
  written = new Promise<void>((resolve) => {
    const server = createServer((s) => {
      const w = createWriteStream(state);
      s.pipe(w);
      w.on("finish", () => {
        server.close();
        resolve();
      });
    });
    server.listen(savePort, "127.0.0.1", () => listening());
  });
});
await source.execute("migrate", { uri: `tcp:127.0.0.1:${savePort}` });
for (;;) {
  const r = (await source.execute("query-migrate")) as { status: string };
  if (r.status === "completed") break;
  if (r.status === "failed") throw new Error(`saving failed: ${JSON.stringify(r)}`);
  await sleep(20);
}
await written;
releasePort(savePort);
const saveMs = performance.now() - t0;
await copyFile(join(vmDir, "disk.qcow2"), join(snap, "disk.qcow2"));
await copyFile(join(vmDir, seedName), join(snap, seedName));
source.close();
await vm.destroy();
console.log(`saved in ${Math.round(saveMs)} ms: ${((await stat(state)).size / 2 ** 20).toFixed(0)} MiB of state`);

// Restore.
const totals: number[] = [];
try {
  for (let i = 0; i < RUNS; i++) {
    const id = `restore${i}${process.pid}`;
    const dir = join(TEST_RUN_DIR, id);
    await mkdir(dir, { recursive: true });
    const sshPort = await acquirePort();
    const incoming = await acquirePort();
    const t1 = performance.now();
    await createOverlay(join(snap, "disk.qcow2"), "qcow2", join(dir, "disk.qcow2"), image.diskGiB);
    const paths = { overlay: join(dir, "disk.qcow2"), seed: join(snap, seedName), qmpSocket: join(dir, "qmp.sock") };
    const args = [...qemuArgs(image, paths, { id, sshPort, accel: "tcg" }), "-incoming", `tcp:127.0.0.1:${incoming}`];
    const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", qemuBinary(image.arch), ...args], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    children.add(child);
    for (let tries = 0; ; tries++) {
      const fed = await new Promise<boolean>((resolve) => {
        const s = connect(incoming, "127.0.0.1");
        s.once("connect", () => {
          createReadStream(state).pipe(s);
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      if (fed) break;
      if (tries > 1_000) throw new Error("QEMU never listened for the incoming state");
      await sleep(5);
    }
    const dest = await qmp(paths.qmpSocket);
    for (;;) {
      const st = (await dest.execute("query-status")) as { status: string };
      if (st.status === "running") break;
      if (st.status === "paused" || st.status === "postmigrate") {
        await dest.execute("cont");
        break;
      }
      await sleep(5);
    }
    const resumedMs = performance.now() - t1;
    const said = (await firstCommand(sshPort, key)).trim().split("\n");
    const total = performance.now() - t1;
    totals.push(total);
    const [bootId, random, clock] = said;
    const skew = Math.floor(Date.now() / 1000) - Number(clock);
    console.log(
      `restore ${i + 1}: running after ${Math.round(resumedMs)} ms, first command's output after ${Math.round(total)} ms; ` +
        `guest boot id ${bootId}, random ${random}, clock ${skew} s behind`,
    );
    dest.close();
    child.kill("SIGKILL");
    children.delete(child);
    releasePort(sshPort);
    releasePort(incoming);
    await rm(dir, { recursive: true, force: true });
  }
} finally {
  await rm(snap, { recursive: true, force: true });
}
const sorted = [...totals].sort((a, b) => a - b);
console.log(
  `restored (no fresh identity yet), median of ${RUNS}: ${(sorted[Math.floor(sorted.length / 2)]! / 1000).toFixed(2)} s to the first command's output`,
);
