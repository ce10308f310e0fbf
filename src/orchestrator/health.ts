// What /healthz says about an orchestrator process: the process's health from every service it runs
// (telemetry/health.ts, forge runners included under `gnomon up`), plus the orchestrator's own
// fields operators and scripts read: its id, labels, running jobs, free VM slots, and the queue's
// and the database's state in words. It only reads status() and the state its parts keep; it never
// waits, never asks the broker or the database, and never throws.
import type { Service } from "../lifecycle/service.js";
import type { JobBus } from "../queue/bus.js";
import type { Store } from "../store/store.js";
import { type Health, processHealth, reportOf } from "../telemetry/health.js";
import type { Orchestrator } from "./orchestrator.js";

/** The queue's part: "connected", "reconnecting", or blocked with the broker's reason. */
export function queueHealth(bus: Pick<JobBus, "name" | "status">): {
  readonly ok: boolean;
  readonly state: string;
} {
  const report = reportOf(bus);
  return { ok: report.state === "ready", state: report.detail ?? report.state };
}

/** The database's part: "ok", or "unreachable since …" (or starting, closing). */
export function databaseHealth(store: Pick<Store, "name" | "status">): string {
  const report = reportOf(store);
  return report.state === "ready" ? "ok" : (report.detail ?? report.state);
}

export function orchestratorHealth(parts: {
  readonly orchestrator: Orchestrator;
  readonly bus: JobBus;
  readonly store: Store;
  /** The debug SSH endpoint, when this host allows debug SSH. */
  readonly debugSsh?: Service;
  /** The forge runners of the same process (`gnomon up`). */
  readonly runners?: readonly Service[];
}): () => Health {
  const { orchestrator, bus, store } = parts;
  return processHealth({
    services: [store, bus, ...(parts.debugSsh ? [parts.debugSsh] : []), orchestrator],
    runners: parts.runners,
    fields: () => ({
      orchestrator: orchestrator.id,
      labels: orchestrator.labels,
      runningJobs: orchestrator.runningJobs.length,
      freeVms: orchestrator.capacity.freeVms,
      queue: queueHealth(bus).state,
      database: databaseHealth(store),
    }),
  });
}
