// Boot-to-first-command time of a recipe image (the offline test image by default, or debian-12):
// from bootMachine() (overlay and seed included) to the first command's exit over the handed-over
// SSH connection, with the time each boot phase was reached. On a systemd guest, also when systemd
// started and when cloud-init's stages, the network and sshd were up, from the guest's own clock
// (ms since the kernel started). Runs under TCG and, when KVM really works here, under KVM; prints medians.
// Usage: node --import tsx bench/boot.ts [--image test|debian-12] [--runs 5] [--accel auto|tcg|kvm|both]
//        [--append "kernel args"] [--memory MiB] [--images-dir DIR]
// --images-dir boots the image built in DIR (e.g. a variant of the recipe, built with buildRecipe's
// recipesDir) instead of building the shipped recipe into the test images folder.
import { parseArgs } from "node:util";
import { createSshExecutor } from "../src/executor/ssh.js";
import { detectAccel } from "../src/vm/accel.js";
import { loadCatalog, resolveImage } from "../src/vm/catalog.js";
import { bootMachine, type ProvisioningStep } from "../src/vm/machine.js";
import { type Accel, qemuBinary } from "../src/vm/qemu-args.js";
import { recipeImage, TEST_RUN_DIR, withKernelArgs } from "../test/support/test-image.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    accel: { type: "string", default: "both" },
    append: { type: "string", default: "" },
    memory: { type: "string" },
    image: { type: "string", default: "test" },
    "images-dir": { type: "string" },
  },
});
const imagesDir = values["images-dir"];
const testImage = async () =>
  imagesDir ? resolveImage(await loadCatalog(), values.image, imagesDir) : recipeImage(values.image);

/** What a systemd guest reached, in ms since its kernel started: the property and its name here. */
const GUEST_PHASES = [
  ["systemd", "-p UserspaceTimestampMonotonic"],
  ["cloud-init-local", "-p ActiveEnterTimestampMonotonic cloud-init-local.service"],
  ["networkd", "-p ActiveEnterTimestampMonotonic systemd-networkd.service"],
  ["cloud-init", "-p ActiveEnterTimestampMonotonic cloud-init.service"],
  ["sshd", "-p ActiveEnterTimestampMonotonic ssh.service"],
] as const;
const GUEST_SCRIPT = GUEST_PHASES.map(([name, q]) => `echo "${name} $(systemctl show --value ${q})"`).join("; ");
const RUNS = Number(values.runs);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : Math.round((s[m - 1]! + s[m]!) / 2);
};

interface Run {
  readonly total: number;
  readonly phases: Partial<Record<ProvisioningStep, number>>;
  readonly guest: Record<string, number>;
}

async function once(accel: Accel): Promise<Run> {
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
    const guest: Record<string, number> = {};
    if (image.os === "linux" && values.image !== "test")
      await ex.run({
        argv: ["sh", "-c", GUEST_SCRIPT],
        env: {},
        cwd: "/",
        signal: AbortSignal.timeout(30_000),
        onLine: (_s, line) => {
          const [name, us] = line.split(" ");
          if (name && Number(us) > 0) guest[name] = Math.round(Number(us) / 1000);
        },
      });
    await ex.close();
    return { total, phases, guest };
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
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await once(accel);
    runs.push(r);
    console.log(
      `${accel} run ${i + 1}: ${r.total} ms to first command (${Object.entries(r.phases)
        .map(([p, ms]) => `${p} ${ms}`)
        .join(", ")})${guestText(r.guest)}`,
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
  const guestMedians: Record<string, number> = {};
  for (const [name] of GUEST_PHASES) {
    const xs = runs.map((r) => r.guest[name]).filter((x): x is number => x !== undefined);
    if (xs.length) guestMedians[name] = median(xs);
  }
  console.log(
    `${values.image} ${accel}: boot-to-first-command median ${median(totals)} ms (min ${Math.min(...totals)}, max ${Math.max(...totals)}, ${RUNS} runs); phase medians: ${phaseMedians}${guestText(guestMedians)}`,
  );
}

function guestText(guest: Record<string, number>): string {
  const parts = Object.entries(guest).map(([p, ms]) => `${p} ${ms}`);
  return parts.length ? `; in the guest, ms since its kernel started: ${parts.join(", ")}` : "";
}
