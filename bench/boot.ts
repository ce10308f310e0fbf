// Boot-to-first-command time of the offline test image: from bootMachine() (overlay and seed
// included) to the first command's exit over the handed-over SSH connection, with the time each
// boot phase was reached. Runs under TCG and, when KVM really works here, under KVM; prints medians.
// Usage: node --import tsx bench/boot.ts [--runs 5] [--accel auto|tcg|kvm|both] [--append "kernel args"]
//        [--memory MiB]
import { parseArgs } from "node:util";
import { createSshExecutor } from "../src/executor/ssh.js";
import { detectAccel } from "../src/vm/accel.js";
import { bootMachine, type ProvisioningStep } from "../src/vm/machine.js";
import { type Accel, qemuBinary } from "../src/vm/qemu-args.js";
import { TEST_RUN_DIR, testImage, withKernelArgs } from "../test/support/test-image.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    accel: { type: "string", default: "both" },
    append: { type: "string", default: "" },
    memory: { type: "string" },
  },
});
const RUNS = Number(values.runs);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : Math.round((s[m - 1]! + s[m]!) / 2);
};

async function once(accel: Accel): Promise<{ total: number; phases: Partial<Record<ProvisioningStep, number>> }> {
  let image = await testImage();
  if (values.append) image = withKernelArgs(image, values.append);
  if (values.memory) image = { ...image, memoryMiB: Number(values.memory) };
  const phases: Partial<Record<ProvisioningStep, number>> = {};
  const t0 = performance.now();
  const vm = await bootMachine(image, {
    runDir: TEST_RUN_DIR,
    accel,
    onPhase: (p) => {
      phases[p] = Math.round(performance.now() - t0);
    },
  });
  try {
    const ex = await createSshExecutor(vm.takeSshClient() ?? vm.ssh, { label: "bench" });
    const r = await ex.run({
      argv: ["true"],
      env: {},
      cwd: "/",
      signal: AbortSignal.timeout(30_000),
      onLine: () => {},
    });
    if (r.exitCode !== 0) throw new Error(`the first command failed: ${JSON.stringify(r)}`);
    const total = Math.round(performance.now() - t0);
    await ex.close();
    return { total, phases };
  } finally {
    await vm.destroy();
  }
}

const detected = await detectAccel(qemuBinary("x86_64"));
const wanted: Accel[] =
  values.accel === "both"
    ? detected === "kvm"
      ? ["tcg", "kvm"]
      : ["tcg"]
    : values.accel === "auto"
      ? [detected]
      : [values.accel as Accel];
if (values.accel === "both" && detected !== "kvm")
  console.log("kvm: not usable on this host (the probe guest did not run); TCG only");

await testImage(); // build outside the measurement
for (const accel of wanted) {
  const runs: Awaited<ReturnType<typeof once>>[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await once(accel);
    runs.push(r);
    console.log(
      `${accel} run ${i + 1}: ${r.total} ms to first command (${Object.entries(r.phases)
        .map(([p, ms]) => `${p} ${ms}`)
        .join(", ")})`,
    );
  }
  const steps: ProvisioningStep[] = ["creating-disk", "booting", "kernel", "network", "ssh", "ready"];
  const phaseMedians = steps
    .map((p) => {
      const xs = runs.map((r) => r.phases[p]).filter((x): x is number => x !== undefined);
      return xs.length ? `${p} ${median(xs)}` : undefined;
    })
    .filter(Boolean)
    .join(", ");
  const totals = runs.map((r) => r.total);
  console.log(
    `${accel}: boot-to-first-command median ${median(totals)} ms (min ${Math.min(...totals)}, max ${Math.max(...totals)}, ${RUNS} runs); phase medians: ${phaseMedians}`,
  );
}
