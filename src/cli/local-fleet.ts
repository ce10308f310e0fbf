// The fleet `gnomon exec` runs VM jobs on: the same orchestrator a forge's jobs reach, on the
// embedded defaults (the in-process queue, embedded PostgreSQL under the data directory), started
// on the first VM job and stopped when exec ends. exec plays the forge runner: it publishes a
// JobRequest per job, renders the job's events, and publishes a Cancel when asked to stop.
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import type { CacheService } from "../cache/service.js";
import type { Config } from "../config/schema.js";
import type { JobEvent, JobEventBody, JobResult } from "../contract/job-event.js";
import { JobRequest } from "../contract/job-request.js";
import { sealSecrets } from "../contract/sealed-secrets.js";
import { egressPolicy } from "../egress/policy.js";
import type { CheckoutSource } from "../engine/runtime.js";
import { Orchestrator } from "../orchestrator/orchestrator.js";
import { createVmProvisioner, NotServedError, type Provisioner } from "../orchestrator/provisioner.js";
import { MemoryBus } from "../queue/memory.js";
import { Store } from "../store/store.js";
import type { Logger } from "../telemetry/log.js";
import { createMetrics, type Metrics } from "../telemetry/metrics.js";
import type { PlannedJob } from "../workflow/job-plan.js";
import { catalogOf, imagesDir, nodeRuntimes } from "./images.js";
import { createActionCache } from "./infrastructure.js";

/** How long a cancelled job may take to run its cleanup steps before exec stops waiting. */
const CANCEL_GRACE_MS = 5 * 60_000;

export interface LocalJob {
  readonly leg: PlannedJob;
  /** The catalog image (or label) to run it on. */
  readonly target: string;
  readonly secrets: Readonly<Record<string, string>>;
  readonly checkout: CheckoutSource;
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly onEvent: (e: JobEventBody) => void;
  readonly signal: AbortSignal;
}

export interface LocalOutcome {
  readonly result: JobResult;
  readonly outputs: Readonly<Record<string, string>>;
  readonly reason?: string;
}

export class LocalFleet {
  readonly #config: Readonly<Config>;
  readonly #log: Logger;
  readonly #key = randomBytes(32);
  readonly #replyTo = `exec-${process.pid}-${randomBytes(3).toString("hex")}`;
  readonly #jobs = new Map<
    string,
    { checkout: CheckoutSource; baseEnv: Readonly<Record<string, string>>; onEvent: (e: JobEvent) => void }
  >();
  #started: Promise<{ bus: MemoryBus; store: Store; orchestrator: Orchestrator }> | undefined;
  #provisioner: Promise<Provisioner> | undefined;
  readonly #metrics: Metrics = createMetrics({ defaultMetrics: false });
  readonly #cache: CacheService | undefined;

  /** `cache`: the exec process's cache service, shared with its host jobs (one per process). */
  constructor(config: Readonly<Config>, log: Logger, cache?: CacheService) {
    this.#config = config;
    this.#log = log;
    this.#cache = cache;
  }

  /** Runs one job on the fleet and resolves with its result; never throws for the job's own failure. */
  async run(job: LocalJob): Promise<LocalOutcome> {
    // Nothing would consume a label no image serves: say so now, before starting anything.
    this.#provisioner ??= this.#makeProvisioner();
    const { labels } = await this.#provisioner;
    if (!labels.includes(job.target))
      return { result: "failure", outputs: {}, reason: new NotServedError(job.target, labels).message };
    this.#started ??= this.#start();
    const { bus } = await this.#started;
    const id = randomUUID();
    const request = JobRequest.parse({
      v: 1,
      id,
      source: { forge: "local", instance: "local", runner: this.#replyTo },
      replyTo: this.#replyTo,
      runsOn: job.target,
      spec: job.leg.spec,
      contexts: job.leg.contexts,
      secrets: sealSecrets(job.secrets, this.#key, id),
      queuedAt: new Date().toISOString(),
    });
    const finished = new Promise<Extract<JobEvent, { kind: "job-finished" }>>((resolve) => {
      const seen = new Set<number>();
      this.#jobs.set(id, {
        checkout: job.checkout,
        baseEnv: job.baseEnv,
        onEvent: (e) => {
          if (seen.has(e.seq)) return;
          seen.add(e.seq);
          if (e.kind === "job-finished") resolve(e);
          else job.onEvent(e);
        },
      });
    });
    // On stop: cancel the job, and give it a while to run its cleanup steps and say it ended.
    let giveUp: NodeJS.Timeout | undefined;
    let onStop = () => {};
    const abandoned = new Promise<LocalOutcome>((resolve) => {
      onStop = () => {
        void bus.publishCancel({ v: 1, jobId: id, reason: reasonOf(job.signal), t: Date.now() });
        giveUp = setTimeout(
          () =>
            resolve({
              result: "cancelled",
              outputs: {},
              reason: `${reasonOf(job.signal)}; the job did not confirm it in time`,
            }),
          CANCEL_GRACE_MS,
        );
      };
    });
    if (job.signal.aborted) onStop();
    else job.signal.addEventListener("abort", onStop, { once: true });
    try {
      await bus.publishJob(request);
      return await Promise.race([
        finished.then((fin) => ({ result: fin.result, outputs: fin.outputs, reason: fin.reason })),
        abandoned,
      ]);
    } finally {
      job.signal.removeEventListener("abort", onStop);
      clearTimeout(giveUp);
      this.#jobs.delete(id);
    }
  }

  async stop(): Promise<void> {
    if (!this.#started) return;
    const { bus, store, orchestrator } = await this.#started;
    const deadline = AbortSignal.timeout(60_000);
    await orchestrator.stop(deadline);
    await bus.stop(deadline);
    await store.stop(deadline);
  }

  async #makeProvisioner(): Promise<Provisioner> {
    const c = this.#config;
    return createVmProvisioner({
      catalog: await catalogOf(c),
      imagesDir: imagesDir(c),
      runDir: join(c.dataDir, "vms"),
      egress: egressPolicy(c.orchestrator.egress),
      actionCache: createActionCache(c, this.#log, this.#metrics),
      nodeRuntimes: nodeRuntimes(c, this.#log),
    });
  }

  async #start(): Promise<{ bus: MemoryBus; store: Store; orchestrator: Orchestrator }> {
    const c = this.#config;
    const store = new Store({ dataDir: c.dataDir, log: this.#log });
    await store.start();
    const bus = new MemoryBus({ log: this.#log });
    await bus.start();
    await bus.consumeEvents(this.#replyTo, (d) => {
      void d.ack();
      this.#jobs.get(d.event.jobId)?.onEvent(d.event);
    });
    this.#provisioner ??= this.#makeProvisioner();
    const provisioner = await this.#provisioner;
    const orchestrator = new Orchestrator({
      bus,
      store,
      provisioner,
      budget: { maxVms: 1, cpus: Number.MAX_SAFE_INTEGER, memoryMiB: Number.MAX_SAFE_INTEGER },
      clusterKey: this.#key,
      leaseTtlMs: c.orchestrator.leaseTtl,
      drainTimeoutMs: 0,
      metrics: this.#metrics,
      log: this.#log,
      runnerName: "gnomon-exec",
      services: { cache: this.#cache },
      jobOptions: (req) => {
        const j = this.#jobs.get(req.id);
        return { checkout: j?.checkout, baseEnv: j?.baseEnv, jobContainer: "fail" };
      },
    });
    await orchestrator.start();
    return { bus, store, orchestrator };
  }
}

function reasonOf(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error ? r.message : "gnomon exec was asked to stop";
}
