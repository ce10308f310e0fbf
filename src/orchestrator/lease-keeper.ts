// Keeps a running job's lease alive: renews it every third of its TTL and records the job's event
// seq with it. If the lease is lost (taken over after a long stall), `lost` aborts so the job stops.
import { setTimeout as sleep } from "node:timers/promises";
import type { Store } from "../store/store.js";
import type { Logger } from "../telemetry/log.js";

export interface LeaseKeeperOptions {
  readonly store: Store;
  readonly jobId: string;
  readonly owner: string;
  readonly ttlMs: number;
  /** The job's next event seq, recorded with each renewal for a successor's takeover. */
  readonly seq: () => number;
  readonly log: Logger;
}

export class LeaseLostWhileRunningError extends Error {
  override readonly name = "LeaseLostWhileRunningError";
  readonly code = "orchestrator.lease-lost";
}

export interface LeaseKeeper {
  /** Aborts when the lease is lost for good. */
  readonly lost: AbortSignal;
  stop(): void;
}

export function keepLease(opts: LeaseKeeperOptions): LeaseKeeper {
  const lost = new AbortController();
  const stopped = new AbortController();
  const everyMs = Math.max(100, Math.floor(opts.ttlMs / 3));
  void (async () => {
    let failingSince: number | undefined;
    while (!stopped.signal.aborted) {
      try {
        await sleep(everyMs, undefined, { signal: stopped.signal });
      } catch {
        return;
      }
      try {
        await opts.store.leases.renew(opts.jobId, opts.owner, opts.ttlMs);
        await opts.store.jobs.recordEventSeq(opts.jobId, opts.seq());
        if (failingSince !== undefined) opts.log.info("lease renewal works again");
        failingSince = undefined;
      } catch (err) {
        const name = (err as Error).name;
        if (name === "LeaseLostError") {
          opts.log.error({ err }, "lease lost; stopping the job");
          lost.abort(
            new LeaseLostWhileRunningError(
              "gnomon lost this job's lease (the database was unreachable longer than the lease TTL and another orchestrator took it over); the job is stopped",
            ),
          );
          return;
        }
        if (failingSince === undefined) {
          failingSince = Date.now();
          opts.log.warn({ err }, "lease renewal failed; retrying");
        }
      }
    }
  })();
  return { lost: lost.signal, stop: () => stopped.abort() };
}
