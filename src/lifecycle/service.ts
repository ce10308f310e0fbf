// The shape of every long-lived part of gnomon: start, a two-phase stop, and a `done` promise.
// Only main.ts touches process signals; everything else is stopped through this interface.
import { withTimeout } from "./abort.js";

/**
 * Where a service is in its life, as an operator acts on it (temporalio's worker `State`, reduced):
 * `degraded` runs but cannot do its work right now (a peer it needs is out of reach) and comes back
 * by itself; `stopped` has ended, after stop() or on its own.
 */
export type ServiceState = "starting" | "ready" | "degraded" | "stopping" | "stopped";

/**
 * A snapshot of one service (temporalio's `WorkerStatus`): its state and a sentence for an
 * operator. A degraded service always says why, and so does one that stopped on its own (the
 * sentence its `done` carries); a ready one may say what it is doing.
 */
export type ServiceStatus =
  | { readonly state: "starting"; readonly detail: string }
  | { readonly state: "ready"; readonly detail?: string }
  | { readonly state: "degraded"; readonly detail: string }
  | { readonly state: "stopping"; readonly detail?: string }
  | { readonly state: "stopped"; readonly detail?: string };

export interface Service {
  readonly name: string;
  /**
   * What it is doing now, read from the state it keeps: never waits, never asks a peer, never
   * throws. /healthz is built from these.
   */
  status(): ServiceStatus;
  /** Resolves once ready for work (connected, declared, migrated); rejects if it cannot get there. */
  start(): Promise<void>;
  /** Take no new work; finish or hand back what is held; when `deadline` aborts, cancel the rest. Idempotent. */
  stop(deadline: AbortSignal): Promise<void>;
  /** Settles when the service ends, on its own or after stop(); carries the reason if it died. Never rejects. */
  readonly done: Promise<Error | undefined>;
}

/**
 * One service, or several that start one after another and stop side by side: roles that must
 * all stop taking work at once and drain together (gnomon up's orchestrator and forge runners).
 */
export type ServiceLayer = Service | readonly Service[];

/** The stop deadline's reason when the user asked a second time: cancel what runs, now. */
export class ForcedStopError extends Error {
  override readonly name = "ForcedStopError";
  readonly code = "lifecycle.forced-stop";
  constructor() {
    super("gnomon was asked to stop again, so it did not wait for the job to finish");
  }
}

/**
 * Starts the layers in order, waits until a stop is requested or a service ends, then stops the
 * layers in reverse order under one deadline: `stopTimeoutMs` after the stop began, or at once
 * when `forceRequested` resolves (its reason then is a ForcedStopError). Returns why it ended:
 * undefined for a requested stop.
 */
export async function runServices(
  layers: readonly ServiceLayer[],
  stopRequested: Promise<void>,
  stopTimeoutMs: number,
  forceRequested?: Promise<void>,
): Promise<Error | undefined> {
  const started: Service[][] = [];
  let why: Error | undefined;
  try {
    for (const layer of layers) {
      const members = isService(layer) ? [layer] : layer;
      started.push([]);
      for (const s of members) {
        await s.start();
        started.at(-1)?.push(s);
      }
    }
    why = await Promise.race([
      stopRequested.then(() => undefined),
      ...started.flat().map((s) => s.done.then((e) => e ?? new Error(`${s.name} ended on its own`))),
    ]);
  } catch (err) {
    why = err instanceof Error ? err : new Error(String(err));
  }
  const forced = new AbortController();
  void forceRequested?.then(() => forced.abort(new ForcedStopError()));
  const deadline = withTimeout(stopTimeoutMs, forced.signal);
  for (const layer of [...started].reverse()) await Promise.all(layer.map((s) => s.stop(deadline)));
  return why;
}

function isService(layer: ServiceLayer): layer is Service {
  return !Array.isArray(layer);
}

/** A resolvable promise: the building block of `done`. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
