// In-process orchestrators for tests: a real Store on a fresh database, a real bus, the shipped
// catalog plus explicit host labels, and a collector of the event stream a forge runner would see.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { JobEvent } from "../../src/contract/job-event.js";
import { Orchestrator } from "../../src/orchestrator/orchestrator.js";
import { createVmProvisioner } from "../../src/orchestrator/provisioner.js";
import type { JobBus } from "../../src/queue/bus.js";
import { Store } from "../../src/store/store.js";
import { createMetrics, type Metrics } from "../../src/telemetry/metrics.js";
import { loadCatalog } from "../../src/vm/catalog.js";
import { SAMPLE_CLUSTER_KEY } from "./samples.js";
import { TEST_IMAGES_DIR, TEST_RUN_DIR } from "./test-image.js";

export interface TestOrchestratorOptions {
  readonly bus: JobBus;
  readonly databaseUrl: string;
  readonly labels?: readonly string[];
  readonly hostLabels?: readonly string[];
  readonly maxVms?: number;
  readonly leaseTtlMs?: number;
  readonly drainTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly id?: string;
}

export async function startOrchestrator(
  t: TestContext,
  opts: TestOrchestratorOptions,
): Promise<{ orchestrator: Orchestrator; store: Store; metrics: Metrics }> {
  const store = new Store({ databaseUrl: opts.databaseUrl, dataDir: mkdtempSync(join(tmpdir(), "gnomon-orch-")) });
  await store.start();
  const metrics = createMetrics({ defaultMetrics: false });
  const provisioner = createVmProvisioner({
    catalog: await loadCatalog(),
    imagesDir: TEST_IMAGES_DIR,
    runDir: TEST_RUN_DIR,
    labels: opts.labels ?? ["test"],
    hostLabels: opts.hostLabels ?? [],
    hostWorkDir: mkdtempSync(join(tmpdir(), "gnomon-host-jobs-")),
  });
  const orchestrator = new Orchestrator({
    bus: opts.bus,
    store,
    provisioner,
    budget: { maxVms: opts.maxVms ?? 2, cpus: 8, memoryMiB: 16_384 },
    clusterKey: SAMPLE_CLUSTER_KEY,
    leaseTtlMs: opts.leaseTtlMs ?? 5_000,
    drainTimeoutMs: opts.drainTimeoutMs ?? 10_000,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
    metrics,
    id: opts.id,
  });
  await orchestrator.start();
  t.after(async () => {
    await orchestrator.stop(AbortSignal.timeout(30_000));
    await store.stop(AbortSignal.timeout(5_000));
  });
  return { orchestrator, store, metrics };
}

/** Everything a forge runner's event stream receives, per job, deduplicated by seq. */
export class EventCollector {
  readonly #byJob = new Map<string, JobEvent[]>();
  readonly #waiters = new Set<() => void>();

  static async start(t: TestContext, bus: JobBus, replyTo: string): Promise<EventCollector> {
    const c = new EventCollector();
    const sub = await bus.consumeEvents(replyTo, (d) => {
      c.#add(d.event);
      void d.ack();
    });
    t.after(() => sub.cancel());
    return c;
  }

  events(jobId: string): readonly JobEvent[] {
    return this.#byJob.get(jobId) ?? [];
  }

  /** Waits until `pred` holds for the job's events. */
  async until(
    jobId: string,
    pred: (events: readonly JobEvent[]) => boolean,
    timeoutMs = 60_000,
    what = "the expected events",
  ): Promise<readonly JobEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.events(jobId))) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `job ${jobId}: ${what} did not arrive in ${timeoutMs} ms; got ${JSON.stringify(this.events(jobId).map((e) => e.kind))}`,
        );
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 500));
        this.#waiters.add(done);
      });
    }
    return this.events(jobId);
  }

  finished(jobId: string, timeoutMs?: number): Promise<readonly JobEvent[]> {
    return this.until(jobId, (es) => es.some((e) => e.kind === "job-finished"), timeoutMs, "job-finished");
  }

  #add(e: JobEvent): void {
    const list = this.#byJob.get(e.jobId) ?? [];
    if (!list.some((x) => x.seq === e.seq)) {
      list.push(e);
      list.sort((a, b) => a.seq - b.seq);
    }
    this.#byJob.set(e.jobId, list);
    for (const w of [...this.#waiters]) w();
  }
}

export function logText(events: readonly JobEvent[]): string[] {
  return events.flatMap((e) => (e.kind === "log" ? e.lines.map((l) => l.text) : []));
}

export function resultOf(events: readonly JobEvent[]): Extract<JobEvent, { kind: "job-finished" }> | undefined {
  return events.find((e): e is Extract<JobEvent, { kind: "job-finished" }> => e.kind === "job-finished");
}
