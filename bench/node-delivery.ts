// Node.js delivery to a job's VM, under TCG with the offline test image (which has no Node.js):
//  - obtain: preparing the runtimes on this host (a cold download from the npm registry into a fresh
//    folder, once per host; then the cached look-up every job pays);
//  - boot: boot-to-first-command with and without the two runtime disks attached;
//  - per job: a real job through the provisioner and the engine, a run step and then a node24 action:
//    how long after the run step ends the JavaScript step has its node (step-started, then the
//    in-guest look-up), and node's own cold start to its first line;
//  - the alternative: copying the runtime into the VM over the SSH tar stream, as files and as the
//    gzip archive unpacked in the guest.
// Usage: node --import tsx bench/node-delivery.ts [--runs 3] [--cold] [--parts boot,job,copy]

import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { EgressConfig } from "../src/config/schema.js";
import type { JobEventBody } from "../src/contract/job-event.js";
import { egressPolicy } from "../src/egress/policy.js";
import { executeJob } from "../src/engine/engine.js";
import { createSshExecutor, type SshExecutor } from "../src/executor/ssh.js";
import { createVmProvisioner } from "../src/orchestrator/provisioner.js";
import { rootLogger } from "../src/telemetry/log.js";
import { loadCatalog } from "../src/vm/catalog.js";
import { bootMachine } from "../src/vm/machine.js";
import { NodeRuntimes } from "../src/vm/node-runtime.js";
import { planJob } from "../src/workflow/job-plan.js";
import { parseWorkflowFile } from "../src/workflow/workflow.js";
import { TEST_RUNTIMES_DIR, testNodeRuntimes } from "../test/support/node-runtimes.js";
import { TEST_IMAGES_DIR, TEST_RUN_DIR, testImage } from "../test/support/test-image.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    cold: { type: "boolean" },
    parts: { type: "string", default: "boot,job,copy" },
  },
});
const RUNS = Number(values.runs);
const parts = new Set(values.parts.split(","));
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return Math.round(s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2);
};
const stats = (xs: readonly number[]) =>
  `median ${median(xs)} ms (min ${Math.round(Math.min(...xs))}, max ${Math.round(Math.max(...xs))}, ${xs.length} runs)`;
const log = rootLogger();

const image = await testImage();
const runtimes = testNodeRuntimes();

// --- obtain ---------------------------------------------------------------------------------------
if (values.cold) {
  const fresh = await mkdtemp(join(tmpdir(), "gnomon-bench-runtimes-"));
  try {
    const t0 = performance.now();
    await Promise.all([20, 24].map((m) => new NodeRuntimes({ dir: fresh }).prepare("linux-x64", m as 20 | 24)));
    console.log(
      `obtain, cold (download from the npm registry, verify, unpack, write the disks): ${Math.round(performance.now() - t0)} ms for Node.js 20 and 24`,
    );
  } finally {
    await rm(fresh, { recursive: true, force: true });
  }
}
const [n20, n24] = await Promise.all([runtimes.prepare("linux-x64", 20), runtimes.prepare("linux-x64", 24)]);
const warm: number[] = [];
for (let i = 0; i < 20; i++) {
  const t0 = performance.now();
  await Promise.all([runtimes.prepare("linux-x64", 20), runtimes.prepare("linux-x64", 24)]);
  warm.push(performance.now() - t0);
}
console.log(`obtain, cached (every job): median ${median(warm.map((x) => x * 1000)) / 1000} ms`);

// --- boot with and without the disks ----------------------------------------------------------------
interface BootTimes {
  /** QEMU start to the first command's exit. */
  readonly total: number;
  /** QEMU start to the initrd's first line: firmware and kernel, virtio disks probed. */
  readonly kernel: number;
  /** The seed applied → sshd started: where the test image's rcS mounts the runtime disks. */
  readonly rcs: number;
}

async function bootOnce(disks: readonly string[]): Promise<BootTimes> {
  const t0 = performance.now();
  const at = new Map<string, number>();
  const vm = await bootMachine(image, {
    runDir: TEST_RUN_DIR,
    accel: "tcg",
    readOnlyDisks: disks,
    onSerialLine: (line) => {
      for (const marker of ["started the initrd", "seed applied", "ssh server started"])
        if (line.includes(marker) && !at.has(marker)) at.set(marker, performance.now());
    },
  });
  try {
    const ex = await createSshExecutor(vm.takeSshClient() ?? vm.ssh, { label: "bench" });
    await ex.run({ argv: ["true"], env: {}, cwd: "/", signal: AbortSignal.timeout(60_000), onLine: () => {} });
    const total = performance.now() - t0;
    await ex.close();
    return {
      total,
      kernel: (at.get("started the initrd") ?? Number.NaN) - t0,
      rcs: (at.get("ssh server started") ?? Number.NaN) - (at.get("seed applied") ?? Number.NaN),
    };
  } finally {
    await vm.destroy();
  }
}
if (parts.has("boot")) {
  const without: BootTimes[] = [];
  const withDisks: BootTimes[] = [];
  for (let i = 0; i < RUNS; i++) {
    // Interleaved, so that a change of load on the machine affects both alike.
    without.push(await bootOnce([]));
    withDisks.push(await bootOnce([n20.disk, n24.disk]));
  }
  for (const [what, runs] of [
    ["no runtime disks", without],
    ["both runtime disks attached and mounted at boot", withDisks],
  ] as const) {
    console.log(`boot to first command, ${what}: ${stats(runs.map((r) => r.total))}`);
    console.log(`  … QEMU start → initrd (disks probed): ${stats(runs.map((r) => r.kernel))}`);
    console.log(`  … seed applied → sshd started (rcS, where the disks are mounted): ${stats(runs.map((r) => r.rcs))}`);
  }
}

// --- a job: a run step and then a node24 action; and a job whose first step is the action ----------------
const provisioner = createVmProvisioner({
  catalog: await loadCatalog(),
  imagesDir: TEST_IMAGES_DIR,
  runDir: TEST_RUN_DIR,
  labels: ["test"],
  accel: "tcg",
  egress: egressPolicy(EgressConfig.parse({})),
  nodeRuntimes: runtimes,
});

interface JobTimes {
  /** The step before ends (or the job's first step is about to start) → the JavaScript step starts. */
  readonly gap: number;
  /** How long the JavaScript step waited for its node. */
  readonly wait: number;
  /** node started → its first line (node's own start-up, not delivery). */
  readonly coldStart: number;
}

async function jobOnce(steps: string, js: number): Promise<JobTimes> {
  const workflow = await parseWorkflowFile(
    "bench.yml",
    `on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n${steps}`,
  );
  const [leg] = planJob(workflow, workflow.jobs[0]!, {
    github: { repository: "gnomon/bench", server_url: "https://forge.invalid" },
  });
  let wait = 0;
  const ws = await provisioner.provision(await provisioner.resolve("test"), {
    signal: AbortSignal.timeout(300_000),
    log,
    javascript: true,
    onPhase: () => {},
    onSpawn: async () => {},
    onNodeTimed: (stage, ms) => {
      if (stage === "locate") wait = ms;
    },
  });
  try {
    const at = new Map<string, number>();
    const t0 = performance.now();
    const mark = (e: JobEventBody) => {
      const now = performance.now();
      if (e.kind === "step-finished" && e.step === js - 1 && e.stage === "main") at.set("before-ended", now);
      if (e.kind === "step-started" && e.step === js && e.stage === "main") at.set("js-started", now);
      if (e.kind === "log" && e.step === js && e.lines.some((l) => l.text === "js says hi") && !at.has("js-line"))
        at.set("js-line", now);
    };
    const ex = ws.executor;
    const workspace = `${ex.platform.workDir}/bench/bench`;
    await ex.writeFile(`${workspace}/js/action.yml`, "runs:\n  using: node24\n  main: main.js\n");
    await ex.writeFile(`${workspace}/js/main.js`, 'console.log("js says hi");\n');
    const out = await executeJob(
      { spec: leg!.spec, contexts: leg!.contexts, secrets: {}, actionsUrl: "https://github.com" },
      { executor: ex, node: ws.node, emit: mark, signal: AbortSignal.timeout(300_000) },
    );
    if (out.result !== "success") throw new Error(`the bench job failed: ${out.reason}`);
    const started = at.get("js-started")!;
    return {
      gap: started - (at.get("before-ended") ?? t0),
      wait,
      coldStart: at.get("js-line")! - started - wait,
    };
  } finally {
    await ws.destroy();
  }
}

if (parts.has("job")) {
  const after: JobTimes[] = [];
  const first: JobTimes[] = [];
  for (let i = 0; i < RUNS; i++) {
    after.push(await jobOnce("      - run: echo before\n      - uses: ./js\n", 1));
    first.push(await jobOnce("      - uses: ./js\n", 0));
  }
  console.log(
    `per job, a run step then a node24 action: the run step ends → the action starts: ${stats(after.map((x) => x.gap))}`,
  );
  console.log(
    `  … then waits for its node (looked up in the background since boot): ${stats(after.map((x) => x.wait))}`,
  );
  console.log(`  … run step end → node has been found (goal ≤ 1000 ms): ${stats(after.map((x) => x.gap + x.wait))}`);
  console.log(`per job, a node24 action as the first step: it waits for its node: ${stats(first.map((x) => x.wait))}`);
  console.log(
    `not delivery: node's own cold start under TCG, exec to its first line: ${stats([...after, ...first].map((x) => x.coldStart))}`,
  );
}

// --- the alternative: copying the runtime into every VM ------------------------------------------------
const archiveDir = join(TEST_RUNTIMES_DIR, "..", "bench-node-archive");
await mkdir(archiveDir, { recursive: true });
const tgz = join(archiveDir, "node24.tgz");
execFileSync("sh", ["-c", `[ -f "$1" ] || tar -czf "$1" -C "$2" .`, "sh", tgz, join(n24.dir, "files")]);
const bytesOf = (path: string) => Number(execFileSync("stat", ["-c", "%s", path]).toString());
const tgzBytes = bytesOf(tgz);
const copyFiles: number[] = [];
const copyTgz: number[] = [];
async function timed(ex: SshExecutor, script: string): Promise<number> {
  const t0 = performance.now();
  const r = await ex.run({
    argv: ["sh", "-c", script],
    env: {},
    cwd: "/",
    signal: AbortSignal.timeout(600_000),
    onLine: () => {},
  });
  if (r.exitCode !== 0) throw new Error(`${script} failed`);
  return performance.now() - t0;
}
for (let i = 0; i < (parts.has("copy") ? RUNS : 0); i++) {
  const vm = await bootMachine(image, { runDir: TEST_RUN_DIR, accel: "tcg" });
  try {
    const ex = await createSshExecutor(vm.takeSshClient() ?? vm.ssh, { label: "bench" });
    let t0 = performance.now();
    await ex.uploadDir(join(n24.dir, "files"), "/tmp/node24-files");
    copyFiles.push(performance.now() - t0);
    t0 = performance.now();
    await ex.uploadDir(archiveDir, "/tmp/node24-archive");
    const sent = performance.now() - t0;
    copyTgz.push(
      sent +
        (await timed(ex, "mkdir -p /tmp/node24-tgz && tar -xzf /tmp/node24-archive/node24.tgz -C /tmp/node24-tgz")),
    );
    await ex.close();
  } finally {
    await vm.destroy();
  }
}
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;
if (parts.has("copy")) {
  console.log(
    `alternative, per job: copy Node.js 24 (${mib(bytesOf(n24.node))} of files) over the SSH tar stream: ${stats(copyFiles)}`,
  );
  console.log(
    `alternative, per job: copy the gzip archive (${mib(tgzBytes)}) and unpack it in the guest: ${stats(copyTgz)}`,
  );
}
