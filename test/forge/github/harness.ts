// Test harness for the GitHub runner: registers against the fake, runs a GitHubRunner on the
// in-process job bus with short timings, and plays the orchestrator's part on the bus (takes the
// JobRequest, publishes JobEvents with a per-job seq, watches Cancels), as the real one will.
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { TestContext } from "node:test";
import { pino } from "pino";
import type { Cancel } from "../../../src/contract/cancel.js";
import type { JobEvent, JobEventBody } from "../../../src/contract/job-event.js";
import type { JobRequest } from "../../../src/contract/job-request.js";
import type { Registration } from "../../../src/forge/github/credentials.js";
import { HttpClient } from "../../../src/forge/github/http.js";
import { register } from "../../../src/forge/github/registration.js";
import { GitHubRunner, type GitHubRunnerTimings } from "../../../src/forge/github/runner.js";
import { Slots } from "../../../src/lifecycle/slots.js";
import type { JobDelivery } from "../../../src/queue/bus.js";
import { MemoryBus } from "../../../src/queue/memory.js";
import type { Logger } from "../../../src/telemetry/log.js";
import type { FakeGitHubServer } from "../../fakes/github-server.js";

export const http = new HttpClient({ userAgent: "GitHubActionsRunner-linux-x64/2.330.0 gnomon/test" });

export const FAST: Partial<GitHubRunnerTimings> = {
  renew: {
    intervalMs: 150,
    firstAttempts: 3,
    firstRetryMs: [10, 20],
    retryMs: [20, 40],
    retryLongMs: [40, 60],
    graceMs: 0,
  },
  channel: { callTimeoutMs: 5_000, uploadAttempts: 4, uploadRetryMs: 20 },
  reportIntervalMs: 20,
  cancelTimeoutMs: 800,
  finalFlushMs: 10_000,
  completeRetry: { baseMs: 20, maxMs: 100 },
  pollErrors: { baseMs: 50, maxMs: 200 },
  acquireThrottle: { baseMs: 20, maxMs: 100 },
  sessionConflictRetryMs: 100,
  sessionConflictGiveUpMs: 1_000,
  pollTimeoutMs: 10_000,
};

/** Log lines the runner wrote, parsed: tests check levels and messages. */
export interface LogRecord {
  readonly level: number;
  readonly msg: string;
  readonly [k: string]: unknown;
}

export function capturingLogger(): { log: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) records.push(JSON.parse(line) as LogRecord);
      cb();
    },
  });
  return { log: pino<never>({ level: "debug" }, stream), records };
}

export async function registerOn(
  fake: FakeGitHubServer,
  over: { labels?: string[]; ephemeral?: boolean; name?: string } = {},
): Promise<Registration> {
  const { registration } = await register({
    url: fake.repoUrl,
    token: fake.registrationToken(),
    name: over.name ?? "gnomon-test",
    labels: over.labels ?? ["debian-12"],
    ephemeral: over.ephemeral ?? false,
    replace: false,
    runnerVersion: "2.330.0",
    http,
    retryDelayMs: () => 10,
  });
  return registration;
}

/** The orchestrator's side of the bus, driven by the test. */
export class BusOrchestrator {
  readonly jobs: JobDelivery[] = [];
  readonly cancels: Cancel[] = [];
  readonly #seq = new Map<string, number>();
  readonly #waiters = new Set<() => void>();

  constructor(readonly bus: MemoryBus) {}

  notify(): void {
    for (const w of this.#waiters) w();
  }

  /** Waits until `probe` is truthy, re-checking whenever a job or cancel arrives. */
  until<T>(probe: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = probe();
        if (v) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`the orchestrator side never saw: ${what}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  nextJob(index = 0): Promise<JobRequest> {
    return this.until(() => this.jobs[index]?.request, `job #${index + 1} on the bus`);
  }

  /** Publishes events for a job as the orchestrator's event stream does: stamped, seq per job. */
  async emit(req: JobRequest, ...bodies: JobEventBody[]): Promise<JobEvent[]> {
    const out: JobEvent[] = [];
    for (const body of bodies) {
      const seq = this.#seq.get(req.id) ?? 0;
      this.#seq.set(req.id, seq + 1);
      const ev = { ...body, v: 1, jobId: req.id, seq, t: Date.now() } as JobEvent;
      await this.bus.publishEvent(req.replyTo, ev);
      out.push(ev);
    }
    return out;
  }
}

export interface RunningRunner {
  readonly runner: GitHubRunner;
  readonly bus: MemoryBus;
  readonly orchestrator: BusOrchestrator;
  readonly registration: Registration;
  readonly records: LogRecord[];
  readonly clusterKey: Buffer;
}

export async function startRunner(
  t: TestContext,
  fake: FakeGitHubServer,
  over: {
    registration?: Registration;
    labels?: string[];
    ephemeral?: boolean;
    capacity?: Slots;
    runnerVersion?: string;
    timings?: Partial<GitHubRunnerTimings>;
    start?: boolean;
    /** Nothing consumes the label's queue: no orchestrator serves it. */
    noOrchestrator?: boolean;
    inFlightFile?: string;
    /** The runner's HTTP transport (a test can cut it to play a process that died). */
    fetch?: typeof fetch;
  } = {},
): Promise<RunningRunner> {
  const registration =
    over.registration ?? (await registerOn(fake, { labels: over.labels, ephemeral: over.ephemeral }));
  const bus = new MemoryBus();
  await bus.start();
  const orchestrator = new BusOrchestrator(bus);
  const label = registration.settings.labels[0] ?? "self-hosted";
  if (!over.noOrchestrator)
    await bus.consumeJobs([label], 10, (d) => {
      orchestrator.jobs.push(d);
      void d.ack();
      orchestrator.notify();
    });
  await bus.consumeCancels((c) => {
    orchestrator.cancels.push(c);
    orchestrator.notify();
  });
  const { log, records } = capturingLogger();
  const clusterKey = randomBytes(32);
  const runner = new GitHubRunner({
    registration,
    bus,
    clusterKey,
    capacity: over.capacity ?? new Slots(1),
    runnerVersion: over.runnerVersion ?? "2.330.0",
    gnomonVersion: "0.0.0-test",
    log,
    timings: { ...FAST, ...over.timings },
    inFlightFile: over.inFlightFile,
    ...(over.fetch ? { fetch: over.fetch } : {}),
  });
  t.after(async () => {
    await runner.stop(AbortSignal.timeout(5_000));
    await bus.stop(AbortSignal.timeout(1_000));
  });
  if (over.start !== false) await runner.start();
  return { runner, bus, orchestrator, registration, records, clusterKey };
}

/** Standard events of a two-step job that succeeds; `lines` go to the second step. */
export function happyEvents(lines: readonly string[], outputs: Record<string, string> = {}): JobEventBody[] {
  const now = Date.now();
  return [
    { kind: "accepted", orchestrator: "host-1" },
    { kind: "provisioning", phase: "booting", label: "debian-12" },
    { kind: "provisioning", phase: "ready", label: "debian-12" },
    { kind: "step-started", step: 0, stage: "main", name: "Run actions/checkout@v4" },
    { kind: "log", step: 0, stage: "main", lines: [{ t: now, text: "Syncing repository: gnomon-org/gnomon-repo" }] },
    { kind: "step-finished", step: 0, stage: "main", outcome: "success", conclusion: "success", outputs: {} },
    { kind: "step-started", step: 1, stage: "main", name: "Say hello" },
    { kind: "log", step: 1, stage: "main", lines: lines.map((text, i) => ({ t: now + i, text })) },
    { kind: "step-finished", step: 1, stage: "main", outcome: "success", conclusion: "success", outputs: {} },
    { kind: "log", step: null, stage: "post", lines: [{ t: now + 100, text: "Cleaning up the VM" }] },
    { kind: "job-finished", result: "success", outputs },
  ];
}
