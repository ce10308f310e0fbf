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
}

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
  };
}
