// What /healthz says about a process, computed from the status() of every Service it runs: healthy
// while each one is ready, and each listed with its state and sentence, the forge runners apart.
// It only reads status(); it never waits, never asks a peer, and never throws.
import type { Service, ServiceState, ServiceStatus } from "../lifecycle/service.js";

export interface Health {
  readonly ok: boolean;
  readonly detail: Readonly<Record<string, unknown>>;
}

/** One service as /healthz lists it. */
export interface ServiceReport {
  readonly name: string;
  readonly state: ServiceState;
  readonly detail?: string;
}

export interface ProcessHealthParts {
  /** The process's services other than its forge runners (store, queue, orchestrator), in start order. */
  readonly services: readonly Service[];
  /** Its forge runners, listed under "runners": which forges this process serves, and how that goes. */
  readonly runners?: readonly Service[];
  /** Fields of the process's role kept at the top level of the answer (an orchestrator's labels, free VMs, …). */
  readonly fields?: () => Readonly<Record<string, unknown>>;
}

/**
 * Healthy (200) when every service and runner is ready; otherwise 503, and the one that is not says
 * why: starting, degraded (its peer is out of reach: no job can start or finish through it), stopping
 * or stopped.
 */
export function processHealth(parts: ProcessHealthParts): () => Health {
  return () => {
    const services = parts.services.map(reportOf);
    const runners = (parts.runners ?? []).map(reportOf);
    return {
      ok: [...services, ...runners].every((r) => r.state === "ready"),
      detail: { ...parts.fields?.(), services, runners },
    };
  };
}

export function reportOf(service: Pick<Service, "name" | "status">): ServiceReport {
  let status: ServiceStatus;
  try {
    status = service.status();
  } catch (err) {
    // status() must not throw; one that does is reported, not allowed to take /healthz down.
    status = { state: "degraded", detail: `its status could not be read: ${(err as Error).message}` };
  }
  return status.detail === undefined
    ? { name: service.name, state: status.state }
    : { name: service.name, state: status.state, detail: status.detail };
}
