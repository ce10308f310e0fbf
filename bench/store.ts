// Store figures: PGlite first-open time and idle RSS with gnomon's memory settings, and jobs/s of
// the lease pattern on PostgreSQL and PGlite. Prints one line per figure; changes nothing it did not create.
// Usage: node --import tsx bench/store.ts [--jobs 2000] [--backend both|postgres|pglite] [--shared-buffers 4MB]
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Client } from "pg";
import type { JobRequest } from "../src/contract/job-request.js";
import { sealSecrets } from "../src/contract/sealed-secrets.js";
import { type Db, openDb } from "../src/store/db.js";
import {
  assignJob,
  finishJob,
  insertJob,
  markFirstStepStarted,
  markProvisioning,
  markRunning,
} from "../src/store/jobs.js";
import { acquireLease, releaseLease } from "../src/store/leases.js";
import { migrate } from "../src/store/migrate.js";
import { DEFAULT_SHARED_BUFFERS } from "../src/store/pglite-db.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "2000" },
    backend: { type: "string", default: "both" },
    "shared-buffers": { type: "string", default: DEFAULT_SHARED_BUFFERS },
    "admin-url": { type: "string", default: "postgres://postgres@127.0.0.1:5432/test" },
  },
});
const JOBS = Number(values.jobs);
const OWNER = "bench-orchestrator";
const TTL_MS = 30_000;

/** Secrets are not stored; one sealed blob serves every job of the bench. */
const SECRETS = sealSecrets({ GITHUB_TOKEN: "t" }, randomBytes(32), "bench");

const rssMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const elapsedMs = (since: number) => performance.now() - since;

function request(): JobRequest {
  const now = new Date().toISOString();
  return {
    v: 1,
    id: randomUUID(),
    source: { forge: "forgejo", instance: "https://forgejo.example", runner: "r-1", ref: { taskId: 1 } },
    replyTo: "forgejo-r-1",
    runsOn: "bench",
    spec: {
      workflow: { name: "bench" },
      job: { id: "j", name: "j" },
      env: [],
      defaults: [],
      steps: [],
      timeoutMinutes: 360,
      cancelTimeoutMinutes: 5,
      continueOnError: false,
    },
    contexts: { github: {}, vars: {}, matrix: null, strategy: null, needs: {}, inputs: {} },
    secrets: SECRETS,
    actionsUrl: "https://github.com",
    runtime: {},
    queuedAt: now,
  };
}

/** insert → lease → finish: three statements, the pattern of the measurements in shared/notes. */
async function leasePattern(db: Db): Promise<void> {
  const { job } = await insertJob(db, request());
  await acquireLease(db, job.id, OWNER, TTL_MS);
  await finishJob(db, job.id, { result: "failure", reason: "bench" });
}

/** What an orchestrator does per job: 9 statements, two of them transactions of two. */
async function lifecycle(db: Db): Promise<void> {
  const { job } = await insertJob(db, request());
  await db.transaction(async (tx) => {
    await acquireLease(tx, job.id, OWNER, TTL_MS);
    await assignJob(tx, job.id, OWNER);
  });
  await markProvisioning(db, job.id);
  await markRunning(db, job.id);
  await markFirstStepStarted(db, job.id);
  await db.transaction(async (tx) => {
    await finishJob(tx, job.id, { result: "success" });
    await releaseLease(tx, job.id, OWNER);
  });
}

async function throughput(db: Db, name: string, perJob: (db: Db) => Promise<void>, inFlight: number) {
  for (let i = 0; i < 50; i++) await perJob(db); // warm-up: plans, caches, JIT
  let next = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < JOBS) {
        next += 1;
        await perJob(db);
      }
    }),
  );
  const jobsPerS = Math.round(JOBS / (elapsedMs(startedAt) / 1000));
  console.log(`${db.kind.padEnd(8)} ${name.padEnd(24)} in flight ${String(inFlight).padStart(2)}: ${jobsPerS} jobs/s`);
}

async function benchPostgres(): Promise<void> {
  const adminUrl = values["admin-url"];
  const name = `gnomon_bench_${randomBytes(4).toString("hex")}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = await openDb({ kind: "postgres", url: url.toString(), poolMax: 10 });
  try {
    await migrate(db);
    console.log(`postgres idle RSS of this process with a pool connected: ${rssMiB()} MB`);
    for (const inFlight of [1, 64]) {
      await throughput(db, "insert+lease+finish", leasePattern, inFlight);
      await throughput(db, "full job lifecycle", lifecycle, inFlight);
    }
  } finally {
    await db.close();
    await admin.query(`drop database ${name} with (force)`);
    await admin.end();
  }
}

async function benchPglite(): Promise<void> {
  const sharedBuffers = values["shared-buffers"];
  const base = await mkdtemp(join(tmpdir(), "gnomon-bench-"));
  const dir = join(base, "pglite");
  try {
    console.log(`pglite   RSS before opening: ${rssMiB()} MB (shared_buffers=${sharedBuffers})`);
    let t0 = performance.now();
    let db = await openDb({ kind: "pglite", dir, sharedBuffers });
    const firstOpenMs = Math.round(elapsedMs(t0));
    await migrate(db);
    console.log(`pglite   first open (initdb in a child) ${firstOpenMs} ms, then idle RSS ${await settledRss()} MB`);
    await db.close();
    t0 = performance.now();
    db = await openDb({ kind: "pglite", dir, sharedBuffers });
    console.log(`pglite   reopen ${Math.round(elapsedMs(t0))} ms, idle RSS ${await settledRss()} MB`);
    for (const inFlight of [1, 64]) {
      await throughput(db, "insert+lease+finish", leasePattern, inFlight);
      await throughput(db, "full job lifecycle", lifecycle, inFlight);
    }
    console.log(`pglite   RSS after ${4 * (JOBS + 50)} jobs: ${rssMiB()} MB`);
    await db.close();
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

/** RSS once the garbage of opening has had a chance to go (gc() when run with --expose-gc). */
async function settledRss(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 200));
  }
  return rssMiB();
}

if (values.backend === "both" || values.backend === "postgres") await benchPostgres();
if (values.backend === "both" || values.backend === "pglite") await benchPglite();
