// Log latency through the real path: a step prints lines carrying the time they were printed;
// each goes through the executor's line splitter, the engine's log batching, the orchestrator's
// event stream, RabbitMQ, the Forgejo runner's reporter and UpdateLog to the fake Forgejo, which
// notes when it stored each row. Prints p50/p99/max of printed → stored per line, and UpdateLog
// calls per task-second (the request rate the reporter keeps). The program is the shipped bundle
// run as `gnomon up` on RabbitMQ and PostgreSQL; the machine is a `:host` label (the step is a
// local process, so the line's time and the fake's receipt share one clock; a VM would add only
// its SSH hop, and a guest clock that drifts from the host's). Prints figures, asserts nothing;
// removes its queues, database and folders.
// Usage: node --import tsx bench/log-latency.ts [--jobs 3] [--lines 200] [--max-gap-ms 300]
//        [--bin dist/gnomon.mjs]   (--bin another build's bundle: the "before" of a change)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { FakeForgejo, type TaskView } from "../test/fakes/forgejo-server.js";
import { GNOMON_BIN, registerForgejoWithCli } from "../test/support/cli.js";
import { createTestDatabase } from "../test/support/db.js";
import { deleteTopology, RABBIT_URL, testPrefix } from "../test/support/rabbit.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "3" },
    lines: { type: "string", default: "200" },
    "max-gap-ms": { type: "string", default: "300" },
    bin: { type: "string", default: GNOMON_BIN },
  },
});
const JOBS = Number(values.jobs);
const LINES = Number(values.lines);
const MAX_GAP_MS = Number(values["max-gap-ms"]);
const BIN = resolve(values.bin!);
const LINE = /^LAT (\d+) (\d+)$/;

/** One step printing LINES lines "LAT i <epoch ms>", a random 0…MAX_GAP_MS apart (bursts and pauses). */
function workflow(): string {
  const script = [
    `for i in $(seq 1 ${LINES}); do`,
    `  echo "LAT $i $(date +%s%3N)"`,
    `  sleep "0.$(printf %03d $((RANDOM % ${MAX_GAP_MS})))"`,
    "done",
  ];
  return `name: bench\non: push\njobs:\n  log:\n    runs-on: local\n    steps:\n      - name: Lines\n        run: |\n${script.map((l) => `          ${l}`).join("\n")}\n`;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Printed → stored, per timestamped row of the task. */
function latencies(task: TaskView): number[] {
  const out: number[] = [];
  for (const [i, row] of task.rows.entries()) {
    const m = LINE.exec(row);
    const stored = task.rowsStoredMs[i];
    if (m && stored !== undefined) out.push(stored - Number(m[2]));
  }
  return out;
}

const forgejo = await FakeForgejo.start();
const db = await createTestDatabase("postgres");
const prefix = testPrefix("bench-log-latency");
const dir = mkdtempSync(join(tmpdir(), "gnomon-bench-log-"));
await registerForgejoWithCli(forgejo, "local:host", dir);
const up = spawn(process.execPath, [BIN, "up"], {
  cwd: dir,
  env: {
    PATH: process.env["PATH"],
    HOME: process.env["HOME"],
    AMQP_URL: RABBIT_URL,
    DATABASE_URL: db.location,
    GNOMON_AMQP_PREFIX: prefix,
    GNOMON_CLUSTER_KEY: randomBytes(32).toString("hex"),
    GNOMON_DATA_DIR: join(dir, "data"),
    GNOMON_LABELS: "local:host",
    GNOMON_ALLOW_HOST_LABELS: "true",
    GNOMON_LOG_FORMAT: "json",
    GNOMON_LOG_LEVEL: "warn",
  },
  stdio: ["ignore", "ignore", "pipe"],
});
let stderr = "";
up.stderr.setEncoding("utf8").on("data", (d: string) => {
  stderr += d;
});
const exited = new Promise<number | null>((r) => up.once("exit", r));

try {
  console.log(`${BIN}: ${JOBS} jobs of ${LINES} lines, 0…${MAX_GAP_MS} ms apart, one job at a time (:host label)`);
  const all: number[] = [];
  let updateLogs = 0;
  let taskMs = 0;
  for (let j = 0; j < JOBS; j++) {
    const logsBefore = forgejo.calls("UpdateLog");
    const jobId = forgejo.queueJob({ workflow: workflow() });
    const task = await Promise.race([
      forgejo.waitFor(
        () => {
          const t = forgejo.taskOfJob(jobId);
          return t && t.status !== "running" && t.logArchived ? t : undefined;
        },
        `job ${jobId} to end`,
        (LINES * MAX_GAP_MS + 60_000) * 2,
      ),
      exited.then((code) => Promise.reject(new Error(`gnomon up exited (${code})`))),
    ]);
    if (task.status !== "success") throw new Error(`job ${jobId} ended ${task.status}:\n${task.rows.join("\n")}`);
    const lat = latencies(task);
    if (lat.length !== LINES) throw new Error(`job ${jobId}: ${lat.length} of ${LINES} timestamped rows stored`);
    const sorted = [...lat].sort((a, b) => a - b);
    const calls = forgejo.calls("UpdateLog") - logsBefore;
    const seconds = ((task.stoppedMs ?? Date.now()) - task.createdMs) / 1000;
    console.log(
      `job ${j + 1}: p50 ${percentile(sorted, 50)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted.at(-1)} ms; ` +
        `${calls} UpdateLog in ${seconds.toFixed(1)} s (${(calls / seconds).toFixed(1)}/s)`,
    );
    all.push(...lat);
    updateLogs += calls;
    taskMs += seconds * 1000;
  }
  all.sort((a, b) => a - b);
  console.log(
    `log_latency_p50_ms=${percentile(all, 50)} log_latency_p99_ms=${percentile(all, 99)} ` +
      `log_latency_max_ms=${all.at(-1)} (${all.length} lines) update_log_per_task_s=${((updateLogs / taskMs) * 1000).toFixed(1)}`,
  );
} catch (err) {
  console.error(`${String(err)}\ngnomon up said:\n${stderr.slice(-3_000)}`);
  process.exitCode = 1;
} finally {
  up.kill("SIGTERM");
  await exited;
  await forgejo.close();
  await db.drop();
  await deleteTopology(prefix);
  rmSync(dir, { recursive: true, force: true });
}
