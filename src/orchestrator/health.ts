// What /healthz says about an orchestrator process: healthy while jobs can start and finish, i.e.
// the queue is connected and takes publishes, and the database answers. It only reads the state
// its parts keep; it never waits, never asks the broker or the database, and never throws.
import type { JobBus } from "../queue/bus.js";
import type { Store } from "../store/store.js";
import type { Health } from "../telemetry/metrics-server.js";
import type { Orchestrator } from "./orchestrator.js";

/** The queue's part: "connected", "reconnecting", or blocked with the broker's reason. */
export function queueHealth(bus: Pick<JobBus, "connected" | "publishingBlocked">): {
  readonly ok: boolean;
  readonly state: string;
} {
  if (!bus.connected) return { ok: false, state: "reconnecting" };
  const blocked = bus.publishingBlocked;
  // Events and results cannot be published meanwhile: no job can finish.
  if (blocked !== undefined) return { ok: false, state: `publishing blocked by rabbitmq (${blocked})` };
  return { ok: true, state: "connected" };
}

export function orchestratorHealth(parts: {
  readonly orchestrator: Orchestrator;
  readonly bus: JobBus;
  readonly store: Store;
}): () => Health {
  const { orchestrator, bus, store } = parts;
  return () => {
    const queue = queueHealth(bus);
    const since = unreachableSince(store);
    return {
      ok: queue.ok && since === undefined,
      detail: {
        orchestrator: orchestrator.id,
        labels: orchestrator.labels,
        runningJobs: orchestrator.runningJobs.length,
        freeVms: orchestrator.capacity.freeVms,
        queue: queue.state,
        database: since === undefined ? "ok" : `unreachable since ${new Date(since).toISOString()}`,
      },
    };
  };
}

function unreachableSince(store: Store): number | undefined {
  try {
    return store.db.unreachableSince;
  } catch {
    return Date.now(); // not open (starting or stopping)
  }
}
