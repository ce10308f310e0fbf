// The whole control plane without VMs: a forge runner's side of the bus (publishes JobRequests,
// consumes their events, as both forge runners do) → RabbitMQ → the real Orchestrator with its
// PostgreSQL store, lease, ledger and engine → a no-op machine whose steps succeed at once →
// events back. Prints jobs/s and per-job latency (published → job-finished received), p50/p99,
// and the idle RSS of `gnomon up` (embedded queue and database) and of `gnomon orchestrator` on
// RabbitMQ + PostgreSQL. Compare with ../shared/floors/control-plane (floor_jobs_per_s) measured
// in the same run (--floor DIR runs it). Prints figures, asserts nothing; removes its queues,
// database and folders.
// Usage: node --import tsx bench/control-plane.ts [--jobs 2000] [--slots 64] [--window 256]
//        [--runs 3] [--rss] [--floor DIR] [--count]      (--runs 0: only --rss and --floor)
// --count also prints, per job, the SQL statements sent to PostgreSQL and the messages published
// and acknowledged on RabbitMQ (both sides of the bus: runner and orchestrator).
import { execFile, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import amqplib from "amqplib";
import pg from "pg";
import type { JobRequest } from "../src/contract/job-request.js";
import { sealSecrets } from "../src/contract/sealed-secrets.js";
import {
  type Executor,
  FileNotFoundError,
  type RunOptions,
  type RunResult,
  ServeRefusedError,
} from "../src/executor/executor.js";
import { Orchestrator } from "../src/orchestrator/orchestrator.js";
import type { Provisioner, Workspace } from "../src/orchestrator/provisioner.js";
import { AmqpBus } from "../src/queue/amqp.js";
import { Store } from "../src/store/store.js";
import { createMetrics } from "../src/telemetry/metrics.js";

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "2000" },
    slots: { type: "string", default: "64" },
    window: { type: "string", default: "256" },
    runs: { type: "string", default: "3" },
    rss: { type: "boolean", default: false },
    count: { type: "boolean", default: false },
    floor: { type: "string" },
    amqp: { type: "string", default: process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672" },
    db: { type: "string", default: process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test" },
  },
});
const JOBS = Number(values.jobs);
const SLOTS = Number(values.slots);
const WINDOW = Number(values.window);
const LABEL = "bench";
const KEY = randomBytes(32);
const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** What went over the wire while counting (--count): SQL statements, AMQP publishes and acks. */
const wire = { sql: 0, publish: 0, ack: 0, counting: false };
if (values.count) {
  const countOn = (proto: Record<string, unknown>, method: string, field: "sql" | "publish" | "ack"): void => {
    const original = proto[method] as (...args: unknown[]) => unknown;
    proto[method] = function (this: unknown, ...args: unknown[]) {
      if (wire.counting) wire[field] += 1;
      return original.apply(this, args);
    };
  };
  countOn(pg.Client.prototype as unknown as Record<string, unknown>, "query", "sql");
  // amqplib's channel class (not exported), by its file: both the plain and the confirm channel.
  const { Channel } = createRequire(import.meta.url)(join(ROOT, "node_modules/amqplib/lib/channel_model.js")) as {
    Channel: { prototype: Record<string, unknown> };
  };
  countOn(Channel.prototype, "publish", "publish");
  countOn(Channel.prototype, "ack", "ack");
}

/** A machine that is there at once: steps run in no time and say one line; files live in memory. */
function noopExecutor(): Executor {
  const files = new Map<string, Buffer>();
  return {
    name: "noop",
    platform: {
      os: "Linux",
      arch: "X64",
      workDir: "/w",
      tempDir: "/w/_temp",
      toolCacheDir: "/w/_tool",
      homeDir: "/home/bench",
    },
    async run(opts: RunOptions): Promise<RunResult> {
      opts.onLine("stdout", "ok");
      return { exitCode: 0, signal: null };
    },
    async writeFile(path, data) {
      files.set(path, Buffer.from(data));
    },
    async readFile(path) {
      const b = files.get(path);
      if (!b) throw new FileNotFoundError(path);
      return b;
    },
    async mkdirp() {},
    async uploadDir() {},
    async serve() {
      throw new ServeRefusedError("noop", "the no-op machine serves nothing");
    },
    async close() {},
  };
}

const noopProvisioner: Provisioner = {
  labels: [LABEL],
  async resolve(label) {
    return { kind: "host", label };
  },
  sizeOf: () => ({ cpus: 0, memoryMiB: 0 }),
  async provision(): Promise<Workspace> {
    return { executor: noopExecutor(), describe: "no-op machine", destroy: async () => {} };
  },
};

function makeJob(replyTo: string): JobRequest {
  const id = randomUUID();
  return {
    v: 1,
    id,
    source: { forge: "forgejo", instance: "https://forgejo.example", runner: "r-1", ref: { taskId: 1 } },
    replyTo,
    runsOn: LABEL,
    spec: {
      workflow: { name: "ci" },
      job: { id: "build", name: "build" },
      env: [],
      defaults: [],
      steps: [{ id: "__0", kind: "run", if: "success()", run: "echo ok" }],
      timeoutMinutes: 360,
      cancelTimeoutMinutes: 5,
      continueOnError: false,
    },
    contexts: { github: { repository: "o/r" }, vars: {}, matrix: null, strategy: null, needs: {}, inputs: {} },
    secrets: sealSecrets({ GITHUB_TOKEN: "t" }, KEY, id),
    actionsUrl: "https://github.com",
    runtime: {},
    queuedAt: new Date().toISOString(),
  } as JobRequest;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function withDatabase<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const name = `gnomon_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: values.db });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(values.db!);
  url.pathname = `/${name}`;
  try {
    return await fn(url.href);
  } finally {
    await admin.query(`drop database ${name} with (force)`);
    await admin.end();
  }
}

/** One measurement: N jobs through a fresh orchestrator; jobs/s and latency percentiles. */
async function measure(
  jobs: number,
): Promise<{ rate: number; p50: number; p99: number; events: number; cpuMsPerJob: number; wire: typeof wire }> {
  return withDatabase(async (databaseUrl) => {
    const prefix = `bench-cp-${randomUUID().slice(0, 8)}`;
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const runner = new AmqpBus({ url: values.amqp!, prefix, connectionName: "bench-runner" });
    const orchBus = new AmqpBus({ url: values.amqp!, prefix, connectionName: "bench-orchestrator" });
    const store = new Store({ databaseUrl, dataDir: mkdtempSync(join(tmpdir(), "gnomon-bench-")) });
    await runner.start();
    await orchBus.start();
    await store.start();
    const orchestrator = new Orchestrator({
      bus: orchBus,
      store,
      provisioner: noopProvisioner,
      budget: { maxVms: SLOTS, cpus: 1_000, memoryMiB: 1_000_000 },
      clusterKey: KEY,
      leaseTtlMs: 30_000,
      drainTimeoutMs: 10_000,
      metrics: createMetrics({ defaultMetrics: false }),
    });
    await orchestrator.start();
    const waiting = new Map<string, (at: number) => void>();
    let events = 0;
    const sub = await runner.consumeEvents(replyTo, (d) => {
      events += 1;
      void d.ack();
      if (d.event.kind === "job-finished") waiting.get(d.event.jobId)?.(performance.now());
    });
    const latencies: number[] = [];
    try {
      Object.assign(wire, { sql: 0, publish: 0, ack: 0, counting: true });
      const cpu = process.cpuUsage();
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(WINDOW, jobs) }, async () => {
          while (next < jobs) {
            next += 1;
            const job = makeJob(replyTo);
            const finished = new Promise<number>((resolve) => waiting.set(job.id, resolve));
            const sent = performance.now();
            await runner.publishJob(job);
            latencies.push((await finished) - sent);
            waiting.delete(job.id);
          }
        }),
      );
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      wire.counting = false;
      latencies.sort((a, b) => a - b);
      return {
        rate: (jobs / ms) * 1000,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        events,
        // Runner side and orchestrator both run in this process: its CPU is the control plane's
        // own (RabbitMQ's and PostgreSQL's are not in it), and barely moved by busy neighbours.
        cpuMsPerJob: (used.user + used.system) / 1000 / jobs,
        wire: { ...wire },
      };
    } finally {
      await sub.cancel();
      await orchestrator.stop(AbortSignal.timeout(30_000));
      await store.stop(AbortSignal.timeout(10_000));
      await runner.stop(AbortSignal.timeout(10_000));
      await orchBus.stop(AbortSignal.timeout(10_000));
      await deleteQueues(prefix);
    }
  });
}

async function deleteQueues(prefix: string): Promise<void> {
  const { stdout } = await run("rabbitmqctl", ["-q", "list_queues", "name"]).catch(() => ({ stdout: "" }));
  for (const q of stdout.split("\n").filter((n) => n.startsWith(prefix)))
    await run("rabbitmqctl", ["-q", "delete_queue", q]).catch(() => undefined);
  // Exchanges over AMQP itself: rabbitmqadmin needs the management plugin, which may be off.
  const ex = await run("rabbitmqctl", ["-q", "list_exchanges", "name"]).catch(() => ({ stdout: "" }));
  const names = ex.stdout.split("\n").filter((n) => n.startsWith(prefix));
  if (names.length === 0) return;
  const conn = await amqplib.connect(values.amqp!);
  try {
    const ch = await conn.createChannel();
    for (const e of names) await ch.deleteExchange(e);
  } finally {
    await conn.close();
  }
}

/** RSS in MiB of a gnomon command once it is idle (ready, then 5 s of nothing to do). */
async function idleRss(args: readonly string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), "gnomon-bench-rss-"));
  const child = spawn(process.execPath, [join(ROOT, "dist/gnomon.mjs"), ...args], {
    cwd: dataDir,
    env: { ...process.env, GNOMON_DATA_DIR: dataDir, GNOMON_LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  try {
    let err = "";
    await Promise.race([
      new Promise<void>((resolve) =>
        child.stderr.on("data", (b: Buffer) => {
          err += b.toString();
          if (ready.test(err)) resolve();
        }),
      ),
      exited.then((code) => {
        throw new Error(`gnomon ${args.join(" ")} exited with ${code}: ${err.slice(-500)}`);
      }),
    ]);
    await sleep(5_000);
    const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } finally {
    child.kill("SIGTERM");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Runs the plain amqplib + pg floor from a writable copy; its last line is floor_jobs_per_s=N. */
async function floor(dir: string): Promise<number> {
  const copy = mkdtempSync(join(tmpdir(), "gnomon-floor-"));
  cpSync(dir, copy, { recursive: true, filter: (p) => !p.includes("node_modules") && !p.includes("results") });
  try {
    if (!existsSync(join(copy, "node_modules"))) await run("npm", ["ci", "--no-audit", "--no-fund"], { cwd: copy });
    const { stdout } = await run(process.execPath, ["floor.mjs", "--runs", "1"], {
      cwd: copy,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, AMQP_URL: values.amqp, DATABASE_URL: values.db },
    });
    return Number(/floor_jobs_per_s=(\d+(\.\d+)?)/.exec(stdout)?.[1] ?? Number.NaN);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
console.log(`load average at start: ${load()}`);
const rates: number[] = [];
if (Number(values.runs) > 0) {
  await measure(Math.min(300, Math.ceil(JOBS / 10))); // warm-up: connections, prepared statements, JIT
  for (let i = 0; i < Number(values.runs); i++) {
    const r = await measure(JOBS);
    rates.push(r.rate);
    console.log(
      `run ${i + 1}: ${JOBS} jobs, ${SLOTS} slots, ${WINDOW} in flight: ${r.rate.toFixed(0)} jobs/s; ` +
        `latency p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms; ${(r.events / JOBS).toFixed(1)} events/job; ` +
        `${r.cpuMsPerJob.toFixed(2)} ms CPU/job in this process` +
        (values.count
          ? `; per job: ${(r.wire.sql / JOBS).toFixed(1)} SQL statements, ${(r.wire.publish / JOBS).toFixed(1)} publishes, ` +
            `${(r.wire.ack / JOBS).toFixed(1)} acks`
          : ""),
    );
  }
}
rates.sort((a, b) => a - b);
const median = rates[Math.floor(rates.length / 2)] ?? Number.NaN;
if (rates.length > 0)
  console.log(`control_plane_jobs_per_s=${median.toFixed(0)} (median of ${rates.length}); load average ${load()}`);
if (values.floor) {
  const f = await floor(values.floor);
  console.log(`floor_jobs_per_s=${f.toFixed(0)}; ratio ${(median / f).toFixed(2)}; load average ${load()}`);
}
if (values.rss) {
  const embedded = await idleRss(["up"], { AMQP_URL: "", DATABASE_URL: "" }, /orchestrator ready/);
  console.log(`idle_rss_up_embedded_mib=${embedded.toFixed(0)}`);
  const prefix = `bench-rss-${randomUUID().slice(0, 8)}`;
  const fleet = await withDatabase((db) =>
    idleRss(
      ["orchestrator"],
      { AMQP_URL: values.amqp, DATABASE_URL: db, GNOMON_AMQP_PREFIX: prefix, GNOMON_CLUSTER_KEY: KEY.toString("hex") },
      /orchestrator ready/,
    ),
  ).finally(() => deleteQueues(prefix));
  console.log(`idle_rss_orchestrator_rabbitmq_postgres_mib=${fleet.toFixed(0)}`);
}
