// The Prometheus registry: every metric name and label, in one place. Values are set by the
// orchestrator; /metrics serves registry.metrics().
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface Metrics {
  readonly registry: Registry;
  /** Jobs this orchestrator holds, by state and runs-on label. */
  readonly jobsByState: Gauge<"state" | "label">;
  /** Jobs finished, by result and label. */
  readonly jobsFinished: Counter<"result" | "label">;
  /** Seconds from the forge runner queueing a job to this orchestrator accepting it. */
  readonly queueWaitSeconds: Histogram<"label">;
  /** Seconds spent in each boot phase. */
  readonly bootPhaseSeconds: Histogram<"phase" | "label">;
  /** Seconds from accepting a job to its result. */
  readonly jobDurationSeconds: Histogram<"label" | "result">;
  readonly vmsRunning: Gauge<"label">;
  readonly vmsReaped: Counter<"label">;
  /** Remote actions jobs asked the host's action cache for: hit (had the commit) or miss (fetched). */
  readonly actionCacheRequests: Counter<"result">;
  /** Seconds fetching one action commit into the host's action cache (misses only). */
  readonly actionFetchSeconds: Histogram;
  /** Cache lookups of jobs, by result: "hit" or "miss". */
  readonly cacheLookups: Counter<"result">;
  /** Cache archive bytes, by direction: "saved" (committed entries) or "restored" (downloads). */
  readonly cacheBytes: Counter<"direction">;
  /** Bytes of the committed cache entries on this host. */
  readonly cacheStoredBytes: Gauge;
  /** Cache entries deleted, by reason: "evicted" (to make room) or "expired" (unused). */
  readonly cacheEntriesRemoved: Counter<"reason">;
  /**
   * Seconds spent delivering Node.js to a job: "obtain" on this host before boot (a cache hit, or
   * the first download), "locate" in the machine at its first JavaScript step of each major.
   */
  readonly nodeDeliverySeconds: Histogram<"stage" | "label">;
  /** Jobs whose result is decided but whose VM is held open for debug SSH, by label. */
  readonly debugSshHeldJobs: Gauge<"label">;
  /** Logins to the debug SSH endpoint, by outcome (DEBUG_SSH_OUTCOMES). */
  readonly debugSshSessions: Counter<"outcome">;
  /** Seconds from a job having its capacity to its machine being ready, by how it started: pooled, cold. */
  readonly vmStartSeconds: Histogram<"label" | "path">;
  /** Warm pool VMs by label and state: idle (ready for a job) or booting. */
  readonly poolVms: Gauge<"label" | "state">;
  /** Jobs that asked a warm pool for a VM, by result: hit (handed one) or miss (none idle). */
  readonly poolClaims: Counter<"label" | "result">;
}

export type CacheLookupResult = "hit" | "miss";
export type CacheDirection = "saved" | "restored";
export type CacheRemoval = "evicted" | "expired";

/**
 * How a login to the debug SSH endpoint went: `accepted` (a session into a held VM), `refused` (a
 * key that is not the actor's, or no held job by that name), `throttled` (too many failures from its
 * address or for its job).
 */
export const DEBUG_SSH_OUTCOMES = ["accepted", "refused", "throttled"] as const;
export type DebugSshOutcome = (typeof DEBUG_SSH_OUTCOMES)[number];

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: "gnomon_" });
  const registers = [registry];
  return {
    registry,
    jobsByState: new Gauge({
      name: "gnomon_jobs",
      help: "Jobs held by this orchestrator, by state",
      labelNames: ["state", "label"],
      registers,
    }),
    jobsFinished: new Counter({
      name: "gnomon_jobs_finished_total",
      help: "Jobs finished, by result",
      labelNames: ["result", "label"],
      registers,
    }),
    queueWaitSeconds: new Histogram({
      name: "gnomon_job_queue_wait_seconds",
      help: "Time from queueing to acceptance by an orchestrator",
      labelNames: ["label"],
      buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900],
      registers,
    }),
    bootPhaseSeconds: new Histogram({
      name: "gnomon_vm_boot_phase_seconds",
      help: "Time spent in each VM boot phase",
      labelNames: ["phase", "label"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    }),
    jobDurationSeconds: new Histogram({
      name: "gnomon_job_duration_seconds",
      help: "Time from acceptance to result",
      labelNames: ["label", "result"],
      buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200],
      registers,
    }),
    vmsRunning: new Gauge({
      name: "gnomon_vms_running",
      help: "VMs running on this host",
      labelNames: ["label"],
      registers,
    }),
    vmsReaped: new Counter({
      name: "gnomon_vms_reaped_total",
      help: "VMs of lost jobs killed by the reaper",
      labelNames: ["label"],
      registers,
    }),
    actionCacheRequests: new Counter({
      name: "gnomon_action_cache_requests_total",
      help: "Remote actions asked of the host's action cache, by result (hit or miss)",
      labelNames: ["result"],
      registers,
    }),
    actionFetchSeconds: new Histogram({
      name: "gnomon_action_fetch_seconds",
      help: "Time fetching one action commit into the host's action cache",
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    }),
    cacheLookups: new Counter({
      name: "gnomon_cache_lookups_total",
      help: "Cache lookups of jobs, by result (hit, miss)",
      labelNames: ["result"],
      registers,
    }),
    cacheBytes: new Counter({
      name: "gnomon_cache_bytes_total",
      help: "Cache archive bytes saved (committed) and restored (downloaded)",
      labelNames: ["direction"],
      registers,
    }),
    cacheStoredBytes: new Gauge({
      name: "gnomon_cache_stored_bytes",
      help: "Bytes of the committed cache entries on this host",
      registers,
    }),
    cacheEntriesRemoved: new Counter({
      name: "gnomon_cache_entries_removed_total",
      help: "Cache entries deleted, by reason (evicted to make room, expired unused)",
      labelNames: ["reason"],
      registers,
    }),
    nodeDeliverySeconds: new Histogram({
      name: "gnomon_node_delivery_seconds",
      help: "Time spent delivering Node.js for JavaScript actions, by stage (obtain: on this host before boot; locate: in the machine)",
      labelNames: ["stage", "label"],
      buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 120],
      registers,
    }),
    debugSshHeldJobs: new Gauge({
      name: "gnomon_debug_ssh_held_jobs",
      help: "Jobs whose VM is held open for debug SSH after their result was decided",
      labelNames: ["label"],
      registers,
    }),
    debugSshSessions: new Counter({
      name: "gnomon_debug_ssh_sessions_total",
      help: "Logins to the debug SSH endpoint, by outcome: accepted, refused, throttled",
      labelNames: ["outcome"],
      registers,
    }),
    vmStartSeconds: new Histogram({
      name: "gnomon_vm_start_seconds",
      help: "Time from a job having its VM capacity to its machine being ready, by path: pooled (from the warm pool) or cold (booted for it)",
      labelNames: ["label", "path"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 60, 300],
      registers,
    }),
    poolVms: new Gauge({
      name: "gnomon_pool_vms",
      help: "Warm pool VMs on this host, by label and state (idle: ready for a job; booting)",
      labelNames: ["label", "state"],
      registers,
    }),
    poolClaims: new Counter({
      name: "gnomon_pool_claims_total",
      help: "Jobs of a pooled label that asked the warm pool for a VM, by result: hit or miss",
      labelNames: ["label", "result"],
      registers,
    }),
  };
}
