// Test harness for the Forgejo runner: a fake Forgejo, a registered runner on the in-process bus,
// and a scripted stand-in for an orchestrator that takes the jobs and publishes JobEvents on the bus
// exactly as a real one would. Everything it starts is stopped when the test ends.
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { pino } from "pino";
import type { Cancel } from "../../../src/contract/cancel.js";
import type { JobEvent, JobEventBody } from "../../../src/contract/job-event.js";
import type { JobRequest } from "../../../src/contract/job-request.js";
import { localCapacity } from "../../../src/forge/forgejo/capacity.js";
import { forgejoClient } from "../../../src/forge/forgejo/client.js";
import type { RunnerCredentials } from "../../../src/forge/forgejo/credentials-file.js";
import { parseLabels } from "../../../src/forge/forgejo/labels.js";
import type { PollerState } from "../../../src/forge/forgejo/poller.js";
import { registerRunner } from "../../../src/forge/forgejo/registration.js";
import { ForgejoRunner, type ForgejoRunnerOptions } from "../../../src/forge/forgejo/runner.js";
import { Slots } from "../../../src/lifecycle/slots.js";
import type { JobDelivery } from "../../../src/queue/bus.js";
import { MemoryBus } from "../../../src/queue/memory.js";
import { type FakeForgejo, type FakeForgejoOptions, startFakeForgejo } from "../../fakes/forgejo-server.js";

export const LABEL = "linux";
export const RUNS_ON = "debian-12";

/** A single-job workflow as Forgejo stores it, with `n` run steps. */
export function workflow(n: number, runsOn = LABEL): string {
  const steps = Array.from({ length: n }, (_, i) => `      - name: step ${i + 1}\n        run: echo ${i + 1}`).join(
    "\n",
  );
  return `name: ci\non:\n  push:\njobs:\n  build:\n    runs-on: ${runsOn}\n    steps:\n${steps}\n`;
}

export interface Harness {
  readonly forgejo: FakeForgejo;
  readonly bus: MemoryBus;
  readonly creds: RunnerCredentials;
  readonly runner: ForgejoRunner;
  readonly slots: Slots;
  /** Jobs the stand-in orchestrator received, in order. */
  readonly jobs: JobDelivery[];
  readonly cancels: Cancel[];
  /** Resolves with the next job delivered to the stand-in orchestrator. */
  nextJob(timeoutMs?: number): Promise<JobDelivery>;
  /** Resolves when the poller next enters `state` (at once if it is there now). */
  reached(state: PollerState, timeoutMs?: number): Promise<void>;
  /** An event publisher for one job: stamps v, jobId, seq and t like the orchestrator's EventStream. */
  emitter(job: JobRequest): Emitter;
}

export interface Emitter {
  emit(body: JobEventBody): Promise<JobEvent>;
  /** Publishes an event again (a redelivery): same seq. */
  again(event: JobEvent): Promise<void>;
}

export interface HarnessOptions {
  readonly capacity?: number;
  readonly fake?: FakeForgejoOptions;
  readonly runner?: Partial<ForgejoRunnerOptions>;
  /** Start without the stand-in orchestrator: nothing consumes the label's queue. */
  readonly noOrchestrator?: boolean;
}

export async function startHarness(t: TestContext, o: HarnessOptions = {}): Promise<Harness> {
  const forgejo = await startFakeForgejo(undefined, o.fake);
  const dir = mkdtempSync(join(tmpdir(), "gnomon-forgejo-"));
  const creds = await registerRunner({
    client: forgejoClient({ instance: forgejo.url, userAgent: "gnomon-test" }),
    token: forgejo.registrationToken,
    name: "test-runner",
    labels: [`${LABEL}:vm:${RUNS_ON}`],
    version: "test",
    credentialsFile: join(dir, ".runner"),
  });
  const bus = new MemoryBus();
  await bus.start();
  const slots = new Slots(o.capacity ?? 1);
  let pollerState: PollerState | undefined;
  const stateWaiters: { state: PollerState; resolve: () => void }[] = [];
  const runner = new ForgejoRunner({
    onPollerState: (st) => {
      pollerState = st;
      for (const w of stateWaiters.filter((x) => x.state === st)) {
        stateWaiters.splice(stateWaiters.indexOf(w), 1);
        w.resolve();
      }
    },
    credentials: creds,
    labels: parseLabels(creds.labels),
    bus,
    capacity: localCapacity(slots),
    clusterKey: randomBytes(32),
    version: "test",
    log: rootLoggerSilent(),
    fetchIntervalMs: 20,
    fetchIntervalMaxMs: 200,
    fetchTimeoutMs: 2_000,
    reportIntervalMs: 25,
    orchestratorSilenceMs: 60_000,
    finalTimeoutMs: 30_000,
    ...o.runner,
  });

  const jobs: JobDelivery[] = [];
  const waiting: ((j: JobDelivery) => void)[] = [];
  const consumer = o.noOrchestrator
    ? undefined
    : await bus.consumeJobs([RUNS_ON], 100, (j) => {
        jobs.push(j);
        waiting.shift()?.(j);
      });
  const cancels: Cancel[] = [];
  const cancelSub = await bus.consumeCancels((c) => cancels.push(c));

  await runner.start();
  t.after(async () => {
    await runner.stop(AbortSignal.timeout(500));
    await consumer?.cancel();
    await cancelSub.cancel();
    await bus.stop(AbortSignal.timeout(1_000));
    await forgejo.close(); // last: the runner's final reports need it
  });

  let seen = 0;
  return {
    forgejo,
    bus,
    creds,
    runner,
    slots,
    jobs,
    cancels,
    reached(state, timeoutMs = 10_000) {
      if (pollerState === state) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the poller did not reach ${state}`)), timeoutMs);
        stateWaiters.push({
          state,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    nextJob(timeoutMs = 20_000) {
      const have = jobs[seen];
      if (have) {
        seen += 1;
        return Promise.resolve(have);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no job reached the orchestrator in time")), timeoutMs);
        waiting.push((j) => {
          clearTimeout(timer);
          seen += 1;
          resolve(j);
        });
      });
    },
    emitter(job) {
      let seq = 0;
      return {
        async emit(body) {
          const event = { v: 1, jobId: job.id, seq: seq++, t: Date.now(), ...body } as JobEvent;
          await bus.publishEvent(job.replyTo, event);
          return event;
        },
        async again(event) {
          await bus.publishEvent(job.replyTo, event);
        },
      };
    },
  };
}

function rootLoggerSilent() {
  return pino({ level: process.env["GNOMON_TEST_LOG"] ?? "silent" });
}

/** Runs a job of `steps` steps to the end: lines per step, step results, the job's result. */
export async function runJob(
  e: Emitter,
  steps: readonly { lines: readonly string[]; conclusion?: "success" | "failure" }[],
  result: "success" | "failure" = "success",
  outputs: Record<string, string> = {},
  /** Pause after each batch of 10 lines, so that the job spans many report intervals. */
  paceMs = 0,
): Promise<void> {
  await e.emit({ kind: "accepted", orchestrator: "host-a" });
  await e.emit({ kind: "provisioning", phase: "booting", label: RUNS_ON });
  await e.emit({ kind: "provisioning", phase: "ready", label: RUNS_ON });
  for (const [i, s] of steps.entries()) {
    await e.emit({ kind: "step-started", step: i, stage: "main", name: `step ${i + 1}` });
    for (let k = 0; k < s.lines.length; k += 10) {
      const batch = s.lines.slice(k, k + 10).map((text) => ({ t: Date.now(), text }));
      await e.emit({ kind: "log", step: i, stage: "main", lines: batch });
      if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
    }
    const c = s.conclusion ?? "success";
    await e.emit({ kind: "step-finished", step: i, stage: "main", outcome: c, conclusion: c, outputs: {} });
  }
  await e.emit({ kind: "job-finished", result, outputs });
}
