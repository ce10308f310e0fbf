// The orchestrator role: consumes JobRequests for the labels its host serves, never holding more
// than it can start (prefetch = free VM slots), runs each job (run-job.ts), acts on Cancel
// broadcasts, and reaps what a crashed predecessor left. Stop: no new jobs, running ones may
// finish until the drain deadline, then they are cancelled with a reason and cleaned up.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Cancel } from "../contract/cancel.js";
import type { JobRequest } from "../contract/job-request.js";
import type { DebugSshServer } from "../debug-ssh/debug-ssh-server.js";
import { withTimeout } from "../lifecycle/abort.js";
import { deferred, ForcedStopError, type Service, type ServiceStatus } from "../lifecycle/service.js";
import type { JobBus, JobConsumer, JobDelivery, Subscription } from "../queue/bus.js";
import type { Store } from "../store/store.js";
import { type Logger, rootLogger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import { type Budget, Capacity } from "./capacity.js";
import type { JobServiceDeps } from "./job-services.js";
import type { Provisioner } from "./provisioner.js";
import { Reaper } from "./reaper.js";
import { JobCancelledError, type JobOptions, runJob } from "./run-job.js";
import { type PoolLabelConfig, WarmPool } from "./warm-pool.js";

export interface OrchestratorOptions {
  readonly bus: JobBus;
  readonly store: Store;
  readonly provisioner: Provisioner;
  readonly budget: Budget;
  readonly clusterKey: Buffer;
  readonly leaseTtlMs: number;
  /** How often each job's heartbeat goes out while this orchestrator holds it; default 10 s. */
  readonly heartbeatIntervalMs?: number;
  /** How long running jobs may finish after stop() before they are cancelled. */
  readonly drainTimeoutMs: number;
  readonly metrics: Metrics;
  readonly log?: Logger;
  /** Default: <hostname>-<pid>-<random>. */
  readonly id?: string;
  /** The host name VM records carry; default os.hostname(). */
  readonly host?: string;
  /** How often the reaper looks for lost jobs and orphan VMs. */
  readonly reapIntervalMs?: number;
  /** Engine options per job (gnomon exec's local checkout); default none. */
  readonly jobOptions?: (req: JobRequest) => JobOptions;
  /** runner.name of its jobs; default the orchestrator id. */
  readonly runnerName?: string;
  /** What jobs get served in their machines (the cache); default nothing. */
  readonly services?: JobServiceDeps;
  /** The debug SSH endpoint, when this host allows debug SSH (docs/debug-ssh.md); absent: no job is held. */
  readonly debugSsh?: Pick<DebugSshServer, "ask" | "hold">;
  /** Warm pools of pre-booted VMs (orchestrator.pool); absent or no labels: none. */
  readonly pool?: WarmPoolSettings;
}

export interface WarmPoolSettings {
  readonly labels: readonly PoolLabelConfig[];
  /** Memory all pooled VMs may hold together, MiB. */
  readonly memoryMiB: number;
  readonly idleTtlMs: number;
  /** Wait after a failed pool boot; default 30 s. */
  readonly retryMs?: number;
}

/** Nothing to serve: no job could ever reach this orchestrator. A setting to fix, not an outage. */
export class NoLabelsError extends Error {
  override readonly name = "NoLabelsError";
  readonly code = "orchestrator.no-labels";
  constructor() {
    super(
      "this orchestrator serves no labels: the image catalog is empty or orchestrator.labels names none of its labels; " +
        "add an image to the catalog (docs/images.md) or fix orchestrator.labels (GNOMON_LABELS)",
    );
  }
}

/** The heartbeat interval when none is configured: as orchestrator.heartbeatInterval's default. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000;

interface Running {
  readonly cancel: AbortController;
  /** A stop gives the job back to the queue through this, if it has not started here yet. */
  readonly handBack: AbortController;
  readonly done: Promise<void>;
}

export class Orchestrator implements Service {
  readonly name = "orchestrator";
  readonly id: string;
  readonly host: string;
  readonly done: Promise<Error | undefined>;
  readonly capacity: Capacity;
  readonly #opts: OrchestratorOptions;
  readonly #log: Logger;
  readonly #ended = deferred<Error | undefined>();
  readonly #running = new Map<string, Running>();
  readonly #reaper: Reaper;
  /** Pre-booted VMs per label; undefined when none are configured. */
  readonly pool: WarmPool | undefined;
  #consumer: JobConsumer | undefined;
  #cancels: Subscription | undefined;
  #stopping: Promise<void> | undefined;
  #phase: "new" | "starting" | "running" | "stopping" | "stopped" = "new";
  #startError: Error | undefined;

  constructor(opts: OrchestratorOptions) {
    this.#opts = opts;
    this.host = opts.host ?? hostname();
    this.id = opts.id ?? `${this.host}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.#log = (opts.log ?? rootLogger()).child({ component: "orchestrator", orchestrator: this.id });
    this.capacity = new Capacity(opts.budget);
    this.done = this.#ended.promise;
    this.#reaper = new Reaper({
      store: opts.store,
      bus: opts.bus,
      host: this.host,
      self: this.id,
      metrics: opts.metrics,
      log: this.#log,
      intervalMs: opts.reapIntervalMs ?? Math.max(1_000, Math.floor(opts.leaseTtlMs / 2)),
      runDir: opts.provisioner.runDir,
      isRunningHere: (jobId) => this.#running.has(jobId),
    });
    const pool = opts.pool;
    this.pool =
      pool && pool.labels.length > 0
        ? new WarmPool({
            ...pool,
            capacity: this.capacity,
            provisioner: opts.provisioner,
            store: opts.store,
            owner: this.id,
            host: this.host,
            recordTtlMs: opts.leaseTtlMs,
            metrics: opts.metrics,
            log: this.#log.child({ component: "warm-pool" }),
          })
        : undefined;
  }

  /** Labels this orchestrator consumes. */
  get labels(): readonly string[] {
    return this.#opts.provisioner.labels;
  }

  /** Jobs running here now. */
  get runningJobs(): readonly string[] {
    return [...this.#running.keys()];
  }

  status(): ServiceStatus {
    const jobs = this.#running.size;
    switch (this.#phase) {
      case "new":
        return { state: "starting", detail: "not started yet" };
      case "starting":
        return { state: "starting", detail: "reaping what a crashed predecessor left before taking jobs" };
      case "running":
        return {
          state: "ready",
          detail: `running ${jobs} job${jobs === 1 ? "" : "s"}; ${this.capacity.freeVms} of ${this.#opts.budget.maxVms} VM slots free${this.#poolDetail()}`,
        };
      case "stopping":
        return { state: "stopping", detail: `taking no jobs; ${jobs} still running` };
      case "stopped":
        return { state: "stopped", detail: this.#startError?.message ?? "stopped" };
    }
  }

  /** "; warm pool: 2 idle, 1 booting", or nothing without a pool. */
  #poolDetail(): string {
    if (!this.pool) return "";
    const counts = Object.values(this.pool.status().labels);
    const idle = counts.reduce((n, c) => n + c.idle, 0);
    const booting = counts.reduce((n, c) => n + c.booting, 0);
    return `; warm pool: ${idle} idle${booting ? `, ${booting} booting` : ""}`;
  }

  async start(): Promise<void> {
    this.#phase = "starting";
    try {
      await this.#start();
    } catch (err) {
      this.#phase = "stopped";
      this.#startError = err instanceof Error ? err : new Error(String(err));
      throw err;
    }
    if (this.#phase === "starting") this.#phase = "running";
  }

  async #start(): Promise<void> {
    const labels = this.labels;
    if (labels.length === 0) throw new NoLabelsError();
    await this.#reaper.reapOnce(); // before taking work: what a crashed predecessor left goes first
    this.#cancels = await this.#opts.bus.consumeCancels((c) => this.#onCancel(c));
    // Prefetch bounds the jobs held unacknowledged, and a job is held until it ends: so the bus
    // never hands this host more jobs than it has VM slots, and free slots are what it may take.
    this.#consumer = await this.#opts.bus.consumeJobs(labels, this.#opts.budget.maxVms, (d) => this.#onJob(d));
    this.#reaper.start();
    this.pool?.start();
    this.#log.info(
      {
        labels,
        maxVms: this.#opts.budget.maxVms,
        cpus: this.#opts.budget.cpus,
        memoryMiB: this.#opts.budget.memoryMiB,
      },
      "orchestrator ready",
    );
  }

  stop(deadline: AbortSignal): Promise<void> {
    this.#stopping ??= this.#stop(deadline);
    return this.#stopping;
  }

  async #stop(deadline: AbortSignal): Promise<void> {
    this.#phase = "stopping";
    await this.#consumer?.setPrefetch(0).catch(() => undefined);
    this.#reaper.stop();
    // Pooled VMs go first: no job will take them now, and their capacity lets waiting jobs start.
    await this.pool?.stop();
    // Jobs still waiting for a slot (or for another orchestrator's lease) go back to the queue
    // now: this host will not start them, another one can.
    for (const r of this.#running.values()) r.handBack.abort();
    if (this.#running.size > 0) {
      this.#log.info(
        { jobs: this.#running.size, drainMs: this.#opts.drainTimeoutMs },
        "stopping: letting running jobs finish",
      );
      const drain = withTimeout(this.#opts.drainTimeoutMs, deadline);
      const all = Promise.all([...this.#running.values()].map((r) => r.done));
      await Promise.race([all, new Promise((r) => drain.addEventListener("abort", r, { once: true }))]);
      if (this.#running.size > 0) {
        const forced = deadline.reason instanceof ForcedStopError;
        this.#log.warn(
          { jobs: this.#running.size },
          forced
            ? "stop forced: cancelling the jobs still running"
            : "drain time is up: cancelling the jobs still running",
        );
        const why = forced
          ? "the gnomon orchestrator running this job was stopped at once (it was asked to stop a second time)"
          : "the gnomon orchestrator running this job was stopped (its drain time ran out)";
        for (const r of this.#running.values()) r.cancel.abort(new JobCancelledError(why));
        await all;
      }
    }
    await this.#consumer?.cancel().catch(() => undefined);
    await this.#cancels?.cancel().catch(() => undefined);
    this.#phase = "stopped";
    this.#ended.resolve(undefined);
  }

  #onJob(delivery: JobDelivery): void {
    const id = delivery.request.id;
    const existing = this.#running.get(id);
    if (existing) {
      // A reconnect redelivered a job we are running: the new delivery is the one to ack, later.
      void existing.done.then(() => delivery.ack().catch(() => undefined));
      return;
    }
    if (this.#stopping) {
      void delivery.nack({ requeue: true }).catch(() => undefined);
      return;
    }
    const cancel = new AbortController();
    const handBack = new AbortController();
    const done = runJob(
      delivery,
      cancel.signal,
      {
        orchestratorId: this.id,
        host: this.host,
        bus: this.#opts.bus,
        store: this.#opts.store,
        provisioner: this.#opts.provisioner,
        capacity: this.capacity,
        clusterKey: this.#opts.clusterKey,
        leaseTtlMs: this.#opts.leaseTtlMs,
        heartbeatMs: this.#opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
        metrics: this.#opts.metrics,
        log: this.#log,
        runnerName: this.#opts.runnerName ?? this.id,
        jobOptions: this.#opts.jobOptions,
        services: this.#opts.services,
        debugSsh: this.#opts.debugSsh,
        pool: this.pool,
      },
      handBack.signal,
    )
      .catch((err: unknown) => this.#log.error({ err, jobId: id }, "job runner failed"))
      .finally(() => this.#running.delete(id));
    this.#running.set(id, { cancel, handBack, done });
  }

  #onCancel(c: Cancel): void {
    const running = this.#running.get(c.jobId);
    if (running) {
      this.#log.info({ jobId: c.jobId, reason: c.reason }, "cancelling job");
      running.cancel.abort(new JobCancelledError(c.reason));
      return;
    }
    // Not running here: remember it, so whoever consumes the job later drops it.
    this.#opts.store.cancellations
      .request(c.jobId, c.reason)
      .catch((err: unknown) => this.#log.warn({ err, jobId: c.jobId }, "could not record a cancellation"));
  }
}
