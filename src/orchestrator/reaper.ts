// Cleans up after orchestrators that died: at start-up (before taking work) and on a timer. It
// kills QEMU processes and removes the files of VMs on this host whose owner no longer holds their
// job's lease, and ends jobs whose lease expired after a step started ("orchestrator lost"). Jobs
// lost before any step ran go back to queued: their queue message comes back to a live consumer.
// It never deletes a path it read from the database unless that path, resolved through symbolic
// links, lies inside this host's VM run folder (<dataDir>/vms): the database is shared by the
// fleet, and a forged or stale row must not make it `rm -rf` anything else.
import { readFile, realpath, rm } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { JobBus } from "../queue/bus.js";
import { afterLostOwner } from "../store/job-state.js";
import type { Store } from "../store/store.js";
import type { VmRecord } from "../store/vms.js";
import type { Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import { EventStream } from "./event-stream.js";
import { TAKEOVER_SEQ_GAP } from "./job-ledger.js";

export interface ReaperOptions {
  readonly store: Store;
  readonly bus: JobBus;
  readonly host: string;
  /** This orchestrator's id: it takes leases over under it. */
  readonly self: string;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly intervalMs: number;
  /** Jobs this process runs are never reaped, whatever their lease says. */
  readonly isRunningHere: (jobId: string) => boolean;
  /** The VM run folders' parent (<dataDir>/vms); absent: no VM file is ever deleted. */
  readonly runDir?: string;
}

export interface ReapReport {
  readonly vmsKilled: number;
  readonly jobsFailed: number;
  readonly jobsRequeued: number;
}

export class Reaper {
  readonly #o: ReaperOptions;
  readonly #stop = new AbortController();
  /** VM rows whose files were refused, each said once per process (they are seen every pass). */
  readonly #refusedSaid = new Set<string>();
  #loop: Promise<void> | undefined;

  constructor(opts: ReaperOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#loop ??= (async () => {
      while (!this.#stop.signal.aborted) {
        try {
          await sleep(this.#o.intervalMs, undefined, { signal: this.#stop.signal });
        } catch {
          return;
        }
        await this.reapOnce().catch((err: unknown) => this.#o.log.warn({ err }, "reaping failed; trying again later"));
      }
    })();
  }

  stop(): void {
    this.#stop.abort();
  }

  async reapOnce(): Promise<ReapReport> {
    const jobs = await this.#reapJobs();
    const vmsKilled = await this.#reapVms();
    return { vmsKilled, ...jobs };
  }

  async #reapVms(): Promise<number> {
    const { store, host, log, metrics } = this.#o;
    let killed = 0;
    for (const vm of await store.vms.listOrphans(host)) {
      if (this.#o.isRunningHere(vm.jobId)) continue;
      const wasAlive = await killQemu(vm); // its own check: a qemu process naming this VM's id
      const files = await vmFiles(vm, this.#o.runDir);
      if (files.kind === "refused") {
        // Kept, not deleted: the row is the only pointer to those files, and the gnomon whose
        // run folder does hold them (another data directory on this host) can still reap it.
        if (!this.#refusedSaid.has(vm.id))
          log.error(
            { vm: vm.id, jobId: vm.jobId, owner: vm.owner, path: files.path, runDir: this.#o.runDir, wasAlive },
            `not deleting ${files.path} of an orphan VM: ${files.why}; its record stays. If it is a leftover of this host, ` +
              `delete it by hand, then its record: delete from vms where id = '${vm.id}'`,
          );
        this.#refusedSaid.add(vm.id);
        continue;
      }
      for (const path of files.paths) await rm(path, { recursive: true, force: true }).catch(() => undefined);
      await store.vms.delete(vm.id);
      // A pooled VM (no job yet) is reaped once its pool stopped renewing it.
      const job = vm.jobId ? await store.jobs.get(vm.jobId) : undefined;
      metrics.vmsReaped.inc({ label: job?.runsOn ?? (vm.jobId ? "unknown" : "pooled") });
      log.warn(
        { vm: vm.id, jobId: vm.jobId || undefined, pid: vm.pid, owner: vm.owner, wasAlive },
        vm.jobId ? "reaped a VM whose orchestrator is gone" : "reaped a pooled VM whose orchestrator is gone",
      );
      killed += 1;
    }
    return killed;
  }

  async #reapJobs(): Promise<{ jobsFailed: number; jobsRequeued: number }> {
    const { store, bus, self, log } = this.#o;
    let jobsFailed = 0;
    let jobsRequeued = 0;
    for (const lease of await store.leases.listExpired()) {
      if (this.#o.isRunningHere(lease.jobId)) continue;
      const action = afterLostOwner(lease.jobState, lease.firstStepStarted);
      const got = await store.leases.acquire(lease.jobId, self, 60_000);
      if (!got.acquired) continue; // someone else took it over first
      try {
        if (action === "fail") {
          const reason = `orchestrator lost while running: ${lease.owner} stopped renewing the job's lease (it expired at ${lease.expiresAt.toISOString()}); steps may have run, so the job is not retried`;
          const job = await store.jobs.finish(lease.jobId, { result: "failure", reason });
          const events = new EventStream({
            jobId: job.id,
            replyTo: job.replyTo,
            sink: bus,
            firstSeq: job.eventSeq + TAKEOVER_SEQ_GAP,
            onPublishError: (err) => log.warn({ err, jobId: job.id }, "could not publish the lost job's result"),
          });
          events.log(`gnomon: ${reason}`);
          events.emit({ kind: "job-finished", result: "failure", outputs: {}, reason });
          await events.flush();
          await store.jobs.recordEventSeq(job.id, events.nextSeq);
          // Counted where the result is recorded, like the job ledger's close(): a redelivery that later
          // repeats this result counts nothing, or one job would be counted twice in the fleet.
          this.#o.metrics.jobsFinished.inc({ result: "failure", label: job.runsOn });
          log.warn({ jobId: job.id, owner: lease.owner }, "failed a job whose orchestrator was lost while it ran");
          jobsFailed += 1;
        } else if (action === "requeue") {
          await store.jobs.requeue(lease.jobId);
          log.info(
            { jobId: lease.jobId, owner: lease.owner },
            "requeued a job whose orchestrator was lost before it started",
          );
          jobsRequeued += 1;
        }
      } finally {
        await store.leases.release(lease.jobId, self);
      }
    }
    return { jobsFailed, jobsRequeued };
  }
}

type VmFiles =
  | { readonly kind: "inside"; readonly paths: readonly string[] }
  | { readonly kind: "refused"; readonly path: string; readonly why: string };

/**
 * The real paths the reaper may delete for `vm`: its run folder (the overlay's folder) and its seed,
 * each resolved through symbolic links and strictly inside `runDir`'s real path. A path that does
 * not exist needs no deleting; any other path refuses the whole VM.
 */
export async function vmFiles(vm: VmRecord, runDir: string | undefined): Promise<VmFiles> {
  const wanted = [dirname(vm.overlayPath), ...(vm.seedPath ? [vm.seedPath] : [])];
  if (runDir === undefined) return { kind: "refused", path: wanted[0]!, why: "this orchestrator has no VM run folder" };
  const root = await realpath(resolve(runDir)).catch(() => resolve(runDir));
  const paths: string[] = [];
  for (const path of wanted) {
    let real: string;
    try {
      real = await realpath(resolve(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // already gone: nothing to delete
      return { kind: "refused", path, why: `it cannot be resolved (${(err as Error).message})` };
    }
    const rel = relative(root, real);
    if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel))
      return {
        kind: "refused",
        path,
        why: `${real === resolve(path) ? "it" : `it resolves to ${real}, which`} is not inside this host's VM run folder ${root}`,
      };
    paths.push(real);
  }
  return { kind: "inside", paths };
}

/** Kills the VM's QEMU if that pid still is this VM's QEMU (pids are reused). True if it was alive. */
async function killQemu(vm: VmRecord): Promise<boolean> {
  if (vm.pid === null) return false;
  let cmdline: string;
  try {
    cmdline = (await readFile(`/proc/${vm.pid}/cmdline`, "utf8")).replaceAll("\0", " ");
  } catch {
    return false;
  }
  if (!cmdline.includes("qemu") || !cmdline.includes(vm.id)) return false;
  try {
    process.kill(vm.pid, "SIGKILL");
  } catch {
    return false;
  }
  for (let i = 0; i < 50; i++) {
    try {
      process.kill(vm.pid, 0);
    } catch {
      return true;
    }
    await sleep(100);
  }
  return true;
}
