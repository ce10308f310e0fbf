// Pure: a bus's ServiceStatus from where it is in its life and what its connection says. Both buses
// use it, so /healthz reads the same words ("connected", "reconnecting", "publishing blocked by
// rabbitmq (…)") from either. No I/O.
import type { ServiceStatus } from "../lifecycle/service.js";

export type BusPhase = "new" | "starting" | "running" | "stopping" | "stopped";

export interface BusCondition {
  readonly phase: BusPhase;
  /** The broker connection is up and restored. */
  readonly connected: boolean;
  /** Why the broker holds publishes back (RabbitMQ's resource alarm), if it does. */
  readonly blocked?: string | undefined;
  /** What ended the bus on its own (a broker that refuses our credentials, …). */
  readonly fatal?: Error | undefined;
  /** Where it connects to, for the starting sentence (a URL without its password). */
  readonly where: string;
}

export function busStatus(c: BusCondition): ServiceStatus {
  switch (c.phase) {
    case "new":
      return { state: "starting", detail: "not started yet" };
    case "starting":
      return { state: "starting", detail: `connecting to ${c.where}` };
    case "running":
      // Events and results cannot go out meanwhile: no job can be queued or finish.
      if (!c.connected) return { state: "degraded", detail: "reconnecting" };
      if (c.blocked !== undefined)
        return { state: "degraded", detail: `publishing blocked by rabbitmq (${c.blocked})` };
      return { state: "ready", detail: "connected" };
    case "stopping":
      return { state: "stopping", detail: "closing" };
    case "stopped":
      return c.fatal ? { state: "stopped", detail: c.fatal.message } : { state: "stopped", detail: "stopped" };
  }
}
