// A job VM's start, by path, against the floor, in one run, for the offline test image:
// - floor: QEMU booting the same kernel, initrd and root disk by hand (no gnomon: qemu-img, a
//   genisoimage NoCloud seed, the system ssh client), spawn → first `ssh … true` answered;
// - cold: gnomon's provisioner booting a VM for a job, → the first command's output;
// - pooled: a VM pre-booted by the provisioner (not timed) handed to a job (its own key installed,
//   a new connection, the egress forward) → the first command's output;
// - restored: not implemented yet (snapshot restore), printed as such.
// Each is the median of --runs runs (default 5), with its ratio to the floor's median. Runs are
// interleaved (floor, cold, pooled, floor, …) so that load from elsewhere hits every path alike.
// Usage: node --import tsx bench/start-paths.ts [--runs 5] [--accel tcg|kvm|auto] [--paths floor,cold,pooled]
import { execFile, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs, promisify } from "node:util";
import { EgressConfig } from "../src/config/schema.js";
import { egressPolicy } from "../src/egress/policy.js";
import { createVmProvisioner, type ProvisionHooks, type Workspace } from "../src/orchestrator/provisioner.js";
import { rootLogger } from "../src/telemetry/log.js";
import { detectAccel } from "../src/vm/accel.js";
import { loadCatalog } from "../src/vm/catalog.js";
import { acquirePort, releasePort } from "../src/vm/ports.js";
import { type Accel, qemuBinary } from "../src/vm/qemu-args.js";
import { TEST_IMAGES_DIR, TEST_RUN_DIR, testImage } from "../test/support/test-image.js";

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    accel: { type: "string", default: "auto" },
    paths: { type: "string", default: "floor,cold,pooled" },
  },
});
const RUNS = Number(values.runs);
const accel: Accel = values.accel === "auto" ? await detectAccel(qemuBinary("x86_64")) : (values.accel as Accel);
const image = await testImage();
if (image.boot.method !== "direct") throw new Error("the test image boots directly (kernel + initrd)");
const boot = image.boot;

/** The floor: QEMU by hand, as ../shared/floors/qemu-boot does it, with the test image's kernel, initrd and disk. */
async function floor(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-floor-"));
  const port = await acquirePort();
  try {
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "key"), "-C", "floor"]);
    const pub = (await readFile(join(dir, "key.pub"), "utf8")).trim();
    await writeFile(join(dir, "meta-data"), "instance-id: floor\nlocal-hostname: floor\n");
    await writeFile(join(dir, "user-data"), `#cloud-config\nssh_authorized_keys:\n  - ${pub}\n`);
    await run("genisoimage", [
      "-quiet",
      "-output",
      join(dir, "seed.iso"),
      "-volid",
      "cidata",
      "-joliet",
      "-rock",
      join(dir, "user-data"),
      join(dir, "meta-data"),
    ]);
    await run("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-F",
      image.disk.format,
      "-b",
      image.disk.path,
      join(dir, "disk.qcow2"),
    ]);
    const t0 = performance.now();
    const q = spawn(
      qemuBinary("x86_64"),
      [
        "-machine",
        `${image.machine},accel=${accel}`,
        "-cpu",
        accel === "kvm" ? "host" : "max",
        "-smp",
        String(image.cpus),
        "-m",
        String(image.memoryMiB),
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        `file:${join(dir, "serial.log")}`,
        "-kernel",
        boot.kernel,
        "-initrd",
        boot.initrd,
        "-append",
        boot.cmdline,
        "-drive",
        `file=${join(dir, "disk.qcow2")},if=virtio,format=qcow2,cache=unsafe`,
        "-drive",
        `file=${join(dir, "seed.iso")},if=virtio,format=raw,readonly=on`,
        "-netdev",
        `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:22`,
        "-device",
        "virtio-net-pci,netdev=n0",
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
      ],
      { stdio: "ignore", detached: false },
    );
    // The floor's QEMU has no parent-death signal: kill it if this script dies.
    const killFloor = () => q.kill("SIGKILL");
    process.once("exit", killFloor);
    try {
      for (let i = 0; i < 2_400; i++) {
        if (q.exitCode !== null) throw new Error("the floor's QEMU exited");
        // As ../shared/floors/qemu-boot: ssh only once the guest said its SSH server started (an
        // earlier client waits on a connection the guest never answers).
        const serial = await readFile(join(dir, "serial.log"), "utf8").catch(() => "");
        if (!serial.includes("ssh server started")) {
          await sleep(20);
          continue;
        }
        const ok = await run("ssh", [
          "-q",
          "-i",
          join(dir, "key"),
          "-p",
          String(port),
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "ConnectTimeout=2",
          "-o",
          "BatchMode=yes",
          "runner@127.0.0.1",
          "true",
        ]).then(
          () => true,
          () => false,
        );
        if (ok) return performance.now() - t0;
        await sleep(50);
      }
      throw new Error("the floor's guest never answered ssh");
    } finally {
      q.kill("SIGKILL");
      process.off("exit", killFloor);
    }
  } finally {
    releasePort(port);
    await rm(dir, { recursive: true, force: true });
  }
}

const provisioner = createVmProvisioner({
  catalog: await loadCatalog(),
  imagesDir: TEST_IMAGES_DIR,
  runDir: TEST_RUN_DIR,
  labels: ["test"],
  accel,
  egress: egressPolicy(EgressConfig.parse({})),
});
const target = await provisioner.resolve("test");
const log = rootLogger();
const hooks = (): ProvisionHooks => ({
  signal: AbortSignal.timeout(300_000),
  log,
  onPhase: () => undefined,
  onSpawn: async () => undefined,
});

/** Until the first command's output is back over the workspace's executor. */
async function firstOutput(ws: Workspace, t0: number): Promise<number> {
  let seen = 0;
  const r = await ws.executor.run({
    argv: ["echo", "first"],
    env: {},
    cwd: "/",
    signal: AbortSignal.timeout(30_000),
    onLine: (_stream, l) => {
      if (l.includes("first") && seen === 0) seen = performance.now() - t0;
    },
  });
  if (r.exitCode !== 0 || seen === 0) throw new Error(`the first command failed: ${JSON.stringify(r)}`);
  return seen;
}

async function cold(): Promise<number> {
  const t0 = performance.now();
  const ws = await provisioner.provision(target, hooks());
  try {
    return await firstOutput(ws, t0);
  } finally {
    await ws.destroy();
  }
}

async function pooled(): Promise<number> {
  if (target.kind !== "vm") throw new Error("test is a VM label");
  const machine = await provisioner.preboot!(target.image, {
    signal: AbortSignal.timeout(300_000),
    log,
    onSpawn: async () => undefined,
  });
  await sleep(500); // idle in the pool for a moment, as a pooled VM is
  const t0 = performance.now();
  const ws = await provisioner.provision(target, { ...hooks(), pooled: machine });
  try {
    return await firstOutput(ws, t0);
  } finally {
    await ws.destroy();
  }
}

const all = { floor, cold, pooled } as const;
const wanted = values.paths.split(",") as (keyof typeof all)[];
for (const w of wanted) if (!(w in all)) throw new Error(`--paths: ${w} is not one of ${Object.keys(all).join(", ")}`);
const paths = Object.fromEntries(wanted.map((w) => [w, all[w]]));
const results: Record<string, number[]> = Object.fromEntries(wanted.map((w) => [w, []]));
// Warm the page cache and the build outside the measurement.
generateKeyPairSync("ed25519");
if (wanted.includes("cold")) await cold();
for (let i = 0; i < RUNS; i++)
  for (const [name, fn] of Object.entries(paths)) {
    const ms = await fn();
    results[name]?.push(ms);
    console.log(`${accel} run ${i + 1} ${name}: ${Math.round(ms)} ms`);
  }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const base = results["floor"] ? median(results["floor"]) : Number.NaN;
console.log(
  `\n${accel.toUpperCase()}, test image, median of ${RUNS} (load ${(await readFile("/proc/loadavg", "utf8")).split(" ")[0]}):`,
);
for (const [name, xs] of Object.entries(results))
  console.log(
    `  ${name.padEnd(8)} ${(median(xs) / 1000).toFixed(2)} s  (min ${(Math.min(...xs) / 1000).toFixed(2)}, max ${(Math.max(...xs) / 1000).toFixed(2)})  ${(median(xs) / base).toFixed(2)}× floor`,
  );
console.log("  restored not implemented yet (snapshot restore)");
