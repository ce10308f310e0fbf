// Imports point downstream only: each stage under src/ may import only itself and the stages listed.
// And the shapes the code keeps: a job's lifecycle is written down by its ledger alone and runJob
// has one exit; the pure cores reach no I/O; gnomon exec's scheduling lives in the workflow stage.
// Inside forge/, the two adapters never import each other and are built alike on forge/'s skeleton;
// the shared primitives (backoff, retry, error normalising, URL redaction…) each have one home.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { describe, it } from "node:test";

const SRC = new URL("../src/", import.meta.url).pathname;

const mayImport: Record<string, readonly string[]> = {
  contract: [],
  lifecycle: [],
  telemetry: ["lifecycle"],
  config: [],
  gen: [],
  queue: ["contract", "lifecycle", "telemetry"],
  store: ["contract", "lifecycle", "telemetry"],
  workflow: ["contract"],
  executor: ["lifecycle", "telemetry"],
  engine: ["contract", "executor", "workflow", "lifecycle"],
  vm: ["lifecycle", "telemetry"],
  images: ["vm", "lifecycle", "telemetry"],
  egress: ["telemetry"],
  cache: ["lifecycle", "telemetry"],
  "debug-ssh": ["contract", "executor", "store", "lifecycle", "telemetry"],
  forge: ["contract", "queue", "gen", "lifecycle", "telemetry", "workflow"],
  orchestrator: [
    "contract",
    "queue",
    "vm",
    "executor",
    "engine",
    "store",
    "lifecycle",
    "telemetry",
    "workflow",
    "egress",
    "cache",
    "debug-ssh",
  ],
};
const WIRING = new Set(["cli", "main.ts", "bin.ts"]);

/** Inside forge/: each adapter speaks one forge; what both need lives in forge/ itself and knows neither. */
const FORGE_ADAPTERS = ["forgejo", "github"] as const;

/** The roles every forge adapter has, in files of the same name (docs/contributing.md, "A forge adapter"). */
const ADAPTER_FILES = ["runner.ts", "poller.ts", "reporter.ts", "to-job-request.ts", "registration.ts", "errors.ts"];

/** Shared primitives and their one home: nothing else under src/ defines them. */
const HOMES: Record<string, string> = {
  backoffMs: "lifecycle/backoff.ts",
  jitter: "lifecycle/backoff.ts",
  nextDelayMs: "lifecycle/backoff.ts",
  randomBetween: "lifecycle/backoff.ts",
  retry: "lifecycle/retry.ts",
  retryUntil: "lifecycle/retry.ts",
  withRetries: "lifecycle/retry.ts",
  isAbort: "lifecycle/abort.ts",
  pause: "lifecycle/abort.ts",
  toError: "lifecycle/to-error.ts",
  asError: "lifecycle/to-error.ts",
  redactUrl: "telemetry/redact.ts",
  JOB_STATES: "store/job-state.ts",
  issuesText: "contract/codec.ts",
  SecretMatcher: "contract/secret-forms.ts",
  LogMasker: "forge/log-masker.ts",
  Outage: "forge/outage.ts",
  InFlightFile: "forge/in-flight-file.ts",
  OrphanJobs: "forge/orphan-jobs.ts",
  HeldJobs: "forge/held-jobs.ts",
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const stageOf = (file: string): string => relative(SRC, file).split(sep)[0]!;

const read = (path: string): string => readFileSync(join(SRC, path), "utf8");

/** The code of a module without its imports and comments (a comment may name what the code must not do). */
const code = (path: string): string =>
  read(path)
    .replace(/^import\s[\s\S]*?\sfrom\s+["'][^"']+["'];/gm, "")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");

/** Relative modules a file imports for their values (not `import type`), as paths under src/. */
function valueImports(path: string): string[] {
  const out: string[] = [];
  for (const m of read(path).matchAll(/^import\s+(type\s+)?([\s\S]*?)\s+from\s+["']([^"']+)["'];/gm)) {
    const [, typeOnly, names = "", from = ""] = m;
    if (typeOnly) continue;
    // `import { type A, type B } from` brings no value either.
    const inner = /^\{([\s\S]*)\}$/.exec(names.trim())?.[1];
    if (inner?.split(",").every((n) => n.trim() === "" || n.trim().startsWith("type "))) continue;
    out.push(from.startsWith(".") ? relative(SRC, join(SRC, path, "..", from)).replace(/\.js$/, ".ts") : from);
  }
  return out;
}

/**
 * Decisions without effects (STYLE 2.4): no builtin of node, no driver, no logger, through every
 * module they load. Each is tested without QEMU, sockets, databases or clocks.
 */
const PURE = [
  "store/job-state.ts",
  "queue/bus-status.ts",
  "orchestrator/capacity.ts",
  "orchestrator/forge-endpoints.ts",
  "workflow/run-plan.ts",
  "workflow/run-schedule.ts",
  "debug-ssh/debug-request.ts",
  "debug-ssh/attempt-limiter.ts",
];
const EFFECTFUL_PACKAGES = /^(node:|pg$|pg-|amqplib|ssh2|pino|prom-client|@electric-sql\/|@connectrpc\/connect-node)/;

describe("architecture", () => {
  it("every module's relative imports point to itself or a stage it may import", () => {
    const violations: string[] = [];
    for (const file of files(SRC)) {
      const stage = stageOf(file);
      if (WIRING.has(stage)) continue;
      const allowed = mayImport[stage];
      if (!allowed) {
        violations.push(
          `${relative(SRC, file)}: stage "${stage}" is not in the import table; add it to test/architecture.test.ts`,
        );
        continue;
      }
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const target = join(file, "..", m[1]!);
        const other = stageOf(target);
        if (other !== stage && !allowed.includes(other))
          violations.push(`${relative(SRC, file)} imports ${m[1]} (${other})`);
      }
    }
    assert.deepEqual(violations, []);
  });

  it("nothing imports the wiring (cli/, main.ts)", () => {
    const bad = files(SRC)
      .filter((f) => !WIRING.has(stageOf(f)))
      .filter((f) => /from\s+["'](\.\.\/)+(cli\/|main\.js)/.test(readFileSync(f, "utf8")));
    assert.deepEqual(bad, []);
  });

  it("runJob has one exit: run-job.ts closes the job's ledger in one place, settles no delivery and calls no store", () => {
    const runJob = code("orchestrator/run-job.ts");
    assert.equal(runJob.match(/ledger\.close\(/g)?.length, 1, "one close of the ledger");
    assert.equal(
      runJob.match(/ledger\.crashed\(/g)?.length,
      1,
      "one place where an unexpected error becomes an ending",
    );
    assert.doesNotMatch(runJob, /\.(ack|nack)\(/, "the delivery is settled by the ledger's close");
    assert.doesNotMatch(runJob, /\bstore\.|\.(jobs|leases|vms|cancellations)\./, "the store is the ledger's");
    assert.doesNotMatch(runJob, /\bmetrics\./, "the metrics are the ledger's");
    assert.doesNotMatch(runJob, /new EventStream|\.emit\(/, "the events are the ledger's");
  });

  it("in the orchestrator only the job ledger settles a job's delivery and moves its row, besides the reaper's and a Cancel's bookkeeping", () => {
    const settles = new Set(["orchestrator/job-ledger.ts", "orchestrator/orchestrator.ts"]);
    // The warm pool writes only the rows of the VMs it holds, which no job has yet.
    const movesJobs = new Set([
      "orchestrator/job-ledger.ts",
      "orchestrator/lease-keeper.ts",
      "orchestrator/reaper.ts",
      "orchestrator/warm-pool.ts",
    ]);
    const bad: string[] = [];
    for (const file of files(join(SRC, "orchestrator"))) {
      const path = relative(SRC, file);
      const text = code(path);
      if (/\.(ack|nack)\(/.test(text) && !settles.has(path)) bad.push(`${path} settles a delivery`);
      if (/\.(jobs|leases|vms)\.[a-zA-Z]+\(/.test(text) && !movesJobs.has(path))
        bad.push(`${path} writes a job's rows`);
    }
    assert.deepEqual(bad, []);
  });

  it("the pure cores reach no I/O through anything they load", () => {
    const bad: string[] = [];
    for (const root of PURE) {
      const seen = new Set<string>();
      const walk = (path: string, via: string) => {
        if (seen.has(path)) return;
        seen.add(path);
        for (const dep of valueImports(path)) {
          if (EFFECTFUL_PACKAGES.test(dep)) bad.push(`${root}: ${via}${path} loads ${dep}`);
          else if (dep.endsWith(".ts")) walk(dep, `${via}${path} → `);
        }
      };
      walk(root, "");
    }
    assert.deepEqual(bad, []);
  });

  it("the job path never loads the image builder: nothing the orchestrator or the VM layer loads is in images/", () => {
    const bad: string[] = [];
    const seen = new Set<string>();
    const walk = (path: string, via: string) => {
      if (seen.has(path)) return;
      seen.add(path);
      for (const m of read(path).matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const dep = relative(SRC, join(SRC, path, "..", m[1]!)).replace(/\.js$/, ".ts");
        if (stageOf(join(SRC, dep)) === "images") bad.push(`${via}${path} → ${dep}`);
        else if (existsSync(join(SRC, dep))) walk(dep, `${via}${path} → `);
      }
    };
    for (const stage of ["orchestrator", "vm"])
      for (const file of files(join(SRC, stage))) walk(relative(SRC, file), "");
    assert.deepEqual(bad, []);
    // …and resolves a recipe image from its build's manifest, without reading the recipe.
    for (const file of files(join(SRC, "vm")))
      assert.doesNotMatch(code(relative(SRC, file)), /recipe\.yaml|recipesDir|recipeHash/, relative(SRC, file));
  });

  it("gnomon exec leaves needs, if: and fail-fast to workflow/run-schedule.ts", () => {
    const exec = valueImports("cli/exec.ts");
    assert.ok(exec.includes("workflow/run-schedule.ts"));
    for (const planner of ["workflow/job-plan.ts", "workflow/run-plan.ts"])
      assert.ok(!exec.includes(planner), `cli/exec.ts plans jobs itself (${planner})`);
  });

  it("no module uses a default export or an index.ts barrel", () => {
    const bad = files(SRC).filter(
      (f) =>
        !f.includes(`${sep}gen${sep}`) &&
        (/^export default /m.test(readFileSync(f, "utf8")) || f.endsWith(`${sep}index.ts`)),
    );
    assert.deepEqual(bad, []);
  });

  it("the forge adapters never import each other, and forge/'s shared modules import neither", () => {
    const adapterOf = (file: string): string | undefined => {
      const [stage, sub] = relative(SRC, file).split(sep);
      return stage === "forge" ? FORGE_ADAPTERS.find((a) => a === sub) : undefined;
    };
    const violations: string[] = [];
    for (const file of files(join(SRC, "forge"))) {
      const from = adapterOf(file) ?? "forge/";
      for (const m of readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const to = adapterOf(join(file, "..", m[1]!));
        if (to !== undefined && to !== from)
          violations.push(`${relative(SRC, file)} (${from}) imports ${m[1]} (${to})`);
      }
    }
    assert.deepEqual(violations, []);
  });

  it("the forge adapters are mirrored: the same roles in files of the same names, reporters on the shared skeleton", () => {
    const missing = FORGE_ADAPTERS.flatMap((a) =>
      ADAPTER_FILES.filter((f) => !existsSync(join(SRC, "forge", a, f))).map((f) => `forge/${a}/${f}`),
    );
    assert.deepEqual(missing, []);
    for (const a of FORGE_ADAPTERS) {
      const reporter = readFileSync(join(SRC, "forge", a, "reporter.ts"), "utf8");
      assert.match(reporter, /export class \w+Reporter implements Reporter</, `forge/${a}/reporter.ts`);
      const runner = readFileSync(join(SRC, "forge", a, "runner.ts"), "utf8");
      assert.match(runner, /new HeldJobs\(/, `forge/${a}/runner.ts holds its jobs in the shared skeleton`);
      assert.match(runner, /new Poller\(/, `forge/${a}/runner.ts polls through its poller.ts`);
    }
  });

  it("each shared primitive is defined in its one home and nowhere else", () => {
    const copies: string[] = [];
    for (const file of files(SRC)) {
      const where = relative(SRC, file).split(sep).join("/");
      if (where.startsWith("gen/")) continue;
      const text = readFileSync(file, "utf8");
      for (const [name, home] of Object.entries(HOMES))
        if (where !== home && new RegExp(`(?:function|const|let|class)\\s+${name}\\b`).test(text))
          copies.push(`${where} defines ${name} (its home is ${home})`);
    }
    assert.deepEqual(copies, []);
    for (const [name, home] of Object.entries(HOMES)) {
      if (name === "withRetries" || name === "asError") continue; // names of removed copies: defined nowhere
      assert.match(
        readFileSync(join(SRC, home), "utf8"),
        new RegExp(`export (?:async )?(?:function|const|class) ${name}\\b`),
        home,
      );
    }
  });
});
