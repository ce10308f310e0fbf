// The shape of every long-lived part of gnomon: start, a two-phase stop, and a `done` promise.
// Only main.ts touches process signals; everything else is stopped through this interface.

export interface Service {
  readonly name: string;
  /** Resolves once ready for work (connected, declared, migrated); rejects if it cannot get there. */
  start(): Promise<void>;
  /** Take no new work; finish or hand back what is held; when `deadline` aborts, cancel the rest. Idempotent. */
  stop(deadline: AbortSignal): Promise<void>;
  /** Settles when the service ends, on its own or after stop(); carries the reason if it died. Never rejects. */
  readonly done: Promise<Error | undefined>;
}

/**
 * Starts services in order, waits until a stop is requested or one of them ends, then stops them
 * in reverse order under one deadline. Returns why it ended: undefined for a requested stop.
 */
export async function runServices(
  services: readonly Service[],
  stopRequested: Promise<void>,
  stopTimeoutMs: number,
): Promise<Error | undefined> {
  const started: Service[] = [];
  let why: Error | undefined;
  try {
    for (const s of services) {
      await s.start();
      started.push(s);
    }
    why = await Promise.race([
      stopRequested.then(() => undefined),
      ...started.map((s) => s.done.then((e) => e ?? new Error(`${s.name} ended on its own`))),
    ]);
  } catch (err) {
    why = err instanceof Error ? err : new Error(String(err));
  }
  const deadline = AbortSignal.timeout(stopTimeoutMs);
  for (const s of [...started].reverse()) await s.stop(deadline);
  return why;
}

/** A resolvable promise: the building block of `done`. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
