// In-process orchestrators for tests: a real Store on a fresh database, a real bus, the shipped
// catalog plus explicit host labels, and a collector of the event stream a forge runner would see.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { CacheService } from "../../src/cache/service.js";
import { EgressConfig } from "../../src/config/schema.js";
import type { JobEvent } from "../../src/contract/job-event.js";
import type { DebugSshPolicy } from "../../src/debug-ssh/debug-request.js";
import { DebugSshServer } from "../../src/debug-ssh/debug-ssh-server.js";
import { hostKeyPath, loadOrCreateHostKey } from "../../src/debug-ssh/host-key.js";
import { type EgressPolicy, egressPolicy } from "../../src/egress/policy.js";
import { ActionCache } from "../../src/orchestrator/action-cache.js";
import { Orchestrator, type WarmPoolSettings } from "../../src/orchestrator/orchestrator.js";
import { createVmProvisioner, type Provisioner } from "../../src/orchestrator/provisioner.js";
import type { JobBus } from "../../src/queue/bus.js";
import { Store } from "../../src/store/store.js";
import { type Logger, rootLogger } from "../../src/telemetry/log.js";
import { createMetrics, type Metrics } from "../../src/telemetry/metrics.js";
import { loadCatalog } from "../../src/vm/catalog.js";
import type { NodeRuntimes } from "../../src/vm/node-runtime.js";
import { testNodeRuntimes } from "./node-runtimes.js";
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
  /** The VM budget beyond maxVms; default plenty (8 CPUs, 16 GiB). */
  readonly cpus?: number;
  readonly memoryMiB?: number;
  /** How long the store waits out an unreachable PostgreSQL; default the store's own. */
  readonly outageToleranceMs?: number;
  /** Where the orchestrator logs; default the silent root logger. */
  readonly log?: Logger;
  /** What jobs in VMs reach; default: the configuration's default policy. */
  readonly egress?: EgressPolicy;
  /** Where the test's labels resolve to, over the real VM provisioner (e.g. one image, broken on purpose). */
  readonly provisioner?: (vms: Provisioner) => Provisioner;
  /** The host's action cache; default: one in a folder of this orchestrator's own, as <dataDir>/actions. */
  readonly actionCache?: ActionCache;
  /** The Actions cache its jobs get (as `gnomon up` gives them by default); default none. */
  readonly cache?: CacheService;
  /** Node.js runtimes for JavaScript actions; default the tests' cache of gnomon's pinned releases, as `gnomon up` has. */
  readonly nodeRuntimes?: NodeRuntimes;
  /**
   * Allow debug SSH (as orchestrator.debugSsh.enabled): an endpoint on 127.0.0.1, a free port, with
   * this policy over the configuration's defaults; default off.
   */
  readonly debugSsh?: Partial<DebugSshPolicy>;
  /** Warm pools (orchestrator.pool); default none. */
  readonly pool?: WarmPoolSettings;
}

/** The debug SSH policy of a default configuration. */
export const DEFAULT_DEBUG_SSH: DebugSshPolicy = {
  windowMs: 30 * 60_000,
  maxWindowMs: 2 * 3_600_000,
  mode: "on-failure",
  onDebugLogging: true,
};

/** The egress policy of a default configuration. */
export const DEFAULT_EGRESS = egressPolicy(EgressConfig.parse({}));

export async function startOrchestrator(
  t: TestContext,
  opts: TestOrchestratorOptions,
): Promise<{
  orchestrator: Orchestrator;
  store: Store;
  metrics: Metrics;
  actionCache: ActionCache;
  debugSsh: DebugSshServer | undefined;
}> {
  const store = new Store({
    databaseUrl: opts.databaseUrl,
    dataDir: mkdtempSync(join(tmpdir(), "gnomon-orch-")),
    outageToleranceMs: opts.outageToleranceMs,
  });
  await store.start();
  const metrics = createMetrics({ defaultMetrics: false });
  const actionsDir = mkdtempSync(join(tmpdir(), "gnomon-actions-"));
  const actionCache =
    opts.actionCache ??
    new ActionCache({
      dir: actionsDir,
      maxAgeMs: 3_600_000,
      maxBytes: 1 << 30,
      log: opts.log ?? rootLogger(),
      metrics,
    });
  const vms = createVmProvisioner({
    catalog: await loadCatalog(),
    imagesDir: TEST_IMAGES_DIR,
    runDir: TEST_RUN_DIR,
    labels: opts.labels ?? ["test"],
    hostLabels: opts.hostLabels ?? [],
    hostWorkDir: mkdtempSync(join(tmpdir(), "gnomon-host-jobs-")),
    egress: opts.egress ?? DEFAULT_EGRESS,
    actionCache,
    nodeRuntimes: opts.nodeRuntimes ?? testNodeRuntimes(),
  });
  const provisioner = opts.provisioner?.(vms) ?? vms;
  // As `gnomon orchestrator` starts it: after the store, before the orchestrator, stopped after it.
  const debugSsh = opts.debugSsh
    ? new DebugSshServer({
        listen: "127.0.0.1:0",
        host: "127.0.0.1",
        hostKey: loadOrCreateHostKey(hostKeyPath(mkdtempSync(join(tmpdir(), "gnomon-debug-ssh-")))),
        policy: { ...DEFAULT_DEBUG_SSH, ...opts.debugSsh },
        store,
        metrics,
        log: opts.log,
      })
    : undefined;
  await debugSsh?.start();
  const orchestrator = new Orchestrator({
    bus: opts.bus,
    store,
    provisioner,
    budget: { maxVms: opts.maxVms ?? 2, cpus: opts.cpus ?? 8, memoryMiB: opts.memoryMiB ?? 16_384 },
    clusterKey: SAMPLE_CLUSTER_KEY,
    leaseTtlMs: opts.leaseTtlMs ?? 5_000,
    drainTimeoutMs: opts.drainTimeoutMs ?? 10_000,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
    metrics,
    id: opts.id,
    log: opts.log,
    services: { cache: opts.cache },
    debugSsh,
    pool: opts.pool,
  });
  await orchestrator.start();
  t.after(async () => {
    await orchestrator.stop(AbortSignal.timeout(30_000));
    await debugSsh?.stop();
    await store.stop(AbortSignal.timeout(5_000));
    await actionCache.prune().catch(() => undefined);
    rmSync(actionsDir, { recursive: true, force: true });
  });
  return { orchestrator, store, metrics, actionCache, debugSsh };
}

/**
 * Everything a forge runner's event stream receives, per job, in arrival order, as the forge
 * runners apply it. A repeated seq (an at-least-once redelivery) is dropped as they drop it. What
 * would lose or misplace a line in production is an order violation, and every wait fails on it:
 * a new seq below one already seen (the runners apply events as they come), or an event after
 * job-finished other than the same result again (the runners drop everything after it).
 */
export class EventCollector {
  readonly #byJob = new Map<string, JobEvent[]>();
  readonly #violations = new Map<string, string[]>();
  readonly #waiters = new Set<() => void>();

  static async start(t: TestContext, bus: JobBus, replyTo: string): Promise<EventCollector> {
    const c = new EventCollector();
    const sub = await bus.consumeEvents(replyTo, (d) => {
      c.add(d.event);
      void d.ack();
    });
    t.after(() => sub.cancel());
    return c;
  }

  /** The job's events as they arrived, repeats dropped. Throws on an order violation. */
  events(jobId: string): readonly JobEvent[] {
    const bad = this.#violations.get(jobId);
    if (bad) throw new Error(`job ${jobId}: events out of order: ${bad.join("; ")}`);
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

  /** Takes one delivered event (what the bus subscription does). */
  add(e: JobEvent): void {
    const list = this.#byJob.get(e.jobId) ?? [];
    this.#byJob.set(e.jobId, list);
    const problem = orderProblem(list, e);
    if (problem === "repeat") return;
    if (problem) this.#violations.set(e.jobId, [...(this.#violations.get(e.jobId) ?? []), problem]);
    list.push(e);
    for (const w of [...this.#waiters]) w();
  }
}

/** Why `e` could not follow `seen` on a forge runner: "repeat" (dropped), a sentence, or undefined. */
function orderProblem(seen: readonly JobEvent[], e: JobEvent): string | undefined {
  if (seen.some((x) => x.seq === e.seq)) return "repeat";
  const last = seen.at(-1);
  const fin = seen.find((x) => x.kind === "job-finished");
  if (fin && !(e.kind === "job-finished" && e.result === fin.result))
    return `${e.kind} seq ${e.seq} arrived after job-finished (seq ${fin.seq}), where a runner drops it`;
  if (last && e.seq < last.seq) return `${e.kind} seq ${e.seq} arrived after seq ${last.seq}`;
  return undefined;
}

export function logText(events: readonly JobEvent[]): string[] {
  return events.flatMap((e) => (e.kind === "log" ? e.lines.map((l) => l.text) : []));
}

export function resultOf(events: readonly JobEvent[]): Extract<JobEvent, { kind: "job-finished" }> | undefined {
  return events.find((e): e is Extract<JobEvent, { kind: "job-finished" }> => e.kind === "job-finished");
}
