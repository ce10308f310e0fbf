// Warm pools: per label, VMs booted ahead of any job and kept idle, so that a job of that label gets
// a ready machine at once (docs/configuration.md, orchestrator.pool). A pooled VM holds a capacity
// reservation like a job's VM, so the host is never overcommitted, but it never delays a job: the
// pool only takes capacity nobody waits for, and while a job waits for capacity it gives its VMs
// up (a booting one first, then the oldest idle). Its memory stays within the pool's own budget.
// A pooled VM holds nothing of a job: it boots with a key of its own, in memory only; the job gets
// its own key at hand-over (vm/identity.ts), and the VM is destroyed after the job, never returned.
// Idle VMs are recycled after the idle TTL. Each pooled VM is recorded for the reaper with an
// expiry this pool renews: if this process dies, its pooled VMs are reaped once that expiry passes.
import type { Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { ImageSpec } from "../vm/catalog.js";
import type { Machine } from "../vm/machine.js";
import type { Capacity, Reservation } from "./capacity.js";
import type { Provisioner } from "./provisioner.js";

export interface PoolLabelConfig {
  readonly label: string;
  /** Idle VMs kept ready. */
  readonly min: number;
  /** Most idle VMs kept: after a miss the pool keeps one more, up to this; back to min as they idle out. */
  readonly max: number;
}

/** The store operations the pool records its VMs with (Store.vms). */
export interface PoolRecords {
  recordPooled(
    vm: {
      id: string;
      owner: string;
      host: string;
      pid: number;
      overlayPath: string;
      seedPath: string;
      sshPort: number;
      qmpSocket: string;
    },
    ttlMs: number,
  ): Promise<unknown>;
  renewPooled(owner: string, ids: readonly string[], ttlMs: number): Promise<unknown>;
  delete(id: string): Promise<unknown>;
}

export interface WarmPoolOptions {
  readonly labels: readonly PoolLabelConfig[];
  /** Memory all pooled VMs (idle and booting) may hold together, MiB. */
  readonly memoryMiB: number;
  /** An idle VM older than this is destroyed and replaced. */
  readonly idleTtlMs: number;
  readonly capacity: Capacity;
  readonly provisioner: Provisioner;
  /** Where its VMs are recorded for the reaper; read at each use (the store starts after the pool is made). */
  readonly store: { readonly vms: PoolRecords };
  /** The orchestrator id and host its VM records carry. */
  readonly owner: string;
  readonly host: string;
  /** The expiry of its VM records, renewed every third of it (the lease TTL). */
  readonly recordTtlMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Wait after a failed boot before the next try; default 30 s. */
  readonly retryMs?: number;
}

/** A VM handed out of the pool, with the capacity it holds; both are the job's now. */
export interface PooledVm {
  readonly label: string;
  readonly machine: Machine;
  readonly reservation: Reservation;
}

interface Idle extends PooledVm {
  readonly since: number;
  readonly timer: NodeJS.Timeout;
}

interface Booting {
  readonly label: string;
  readonly ac: AbortController;
}

/** What the pool holds now, and what (if anything) keeps it from holding more. */
export interface PoolStatus {
  readonly labels: Readonly<Record<string, { idle: number; booting: number; target: number }>>;
  readonly memoryMiB: number;
  /** Why the last refill stopped short: "memory" (the pool's budget), "capacity" (the host's), "failed" (a boot). */
  readonly limitedBy: "memory" | "capacity" | "failed" | undefined;
}

export class WarmPool {
  readonly #o: WarmPoolOptions;
  readonly #idle = new Map<string, Idle[]>();
  readonly #targets = new Map<string, number>();
  readonly #cfg = new Map<string, PoolLabelConfig>();
  #booting: Booting | undefined;
  /** The booting VM's id once QEMU was spawned (and recorded). */
  #bootingId: string | undefined;
  #memoryMiB = 0;
  #limitedBy: PoolStatus["limitedBy"];
  #refilling: Promise<void> | undefined;
  #again = false;
  #evicting = false;
  #stopped = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #unlisten: (() => void) | undefined;

  constructor(opts: WarmPoolOptions) {
    this.#o = opts;
    for (const l of opts.labels) {
      this.#cfg.set(l.label, l);
      this.#targets.set(l.label, l.min);
      this.#idle.set(l.label, []);
    }
  }

  get labels(): readonly string[] {
    return [...this.#cfg.keys()];
  }

  status(): PoolStatus {
    const labels: Record<string, { idle: number; booting: number; target: number }> = {};
    for (const [label, idle] of this.#idle)
      labels[label] = {
        idle: idle.length,
        booting: this.#booting?.label === label ? 1 : 0,
        target: this.#targets.get(label) ?? 0,
      };
    return { labels, memoryMiB: this.#memoryMiB, limitedBy: this.#limitedBy };
  }

  start(): void {
    if (this.#cfg.size === 0) return;
    this.#unlisten = this.#o.capacity.onChange(() => queueMicrotask(() => this.#onCapacity()));
    const renewMs = Math.max(1_000, Math.floor(this.#o.recordTtlMs / 3));
    this.#renewTimer = setInterval(() => {
      const ids = [...this.#idle.values()].flat().map((v) => v.machine.id);
      if (this.#bootingId) ids.push(this.#bootingId);
      if (ids.length === 0) return;
      this.#o.store.vms
        .renewPooled(this.#o.owner, ids, this.#o.recordTtlMs)
        .catch((err: unknown) => this.#o.log.warn({ err }, "could not renew the warm pool's VM records"));
    }, renewMs);
    this.#renewTimer.unref();
    this.#kick();
  }

  /** An idle VM for `label`, now, or undefined (a miss: the pool keeps one more next time, up to max). */
  claim(label: string): PooledVm | undefined {
    const cfg = this.#cfg.get(label);
    if (!cfg || this.#stopped) return undefined;
    const vm = this.#idle.get(label)?.shift();
    if (!vm) {
      this.#o.metrics.poolClaims.inc({ label, result: "miss" });
      this.#targets.set(label, Math.min(cfg.max, (this.#targets.get(label) ?? cfg.min) + 1));
      this.#kick();
      return undefined;
    }
    clearTimeout(vm.timer);
    this.#memoryMiB -= vm.reservation.size.memoryMiB;
    this.#gauge(label);
    this.#o.metrics.poolClaims.inc({ label, result: "hit" });
    this.#o.log.info({ vm: vm.machine.id, label, idleMs: Date.now() - vm.since }, "handed a pooled VM to a job");
    this.#kick();
    return { label, machine: vm.machine, reservation: vm.reservation };
  }

  /** Takes no more VMs, stops a boot and destroys every idle VM. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unlisten?.();
    clearTimeout(this.#retryTimer);
    clearInterval(this.#renewTimer);
    this.#booting?.ac.abort(new Error("the warm pool stopped"));
    const idle = [...this.#idle.values()].flatMap((l) => l.splice(0));
    await Promise.all(idle.map((vm) => this.#destroy(vm, "the pool stopped")));
    await this.#refilling;
  }

  /** Starts a refill pass, or asks the running one to look again when it ends. */
  #kick(): void {
    if (this.#stopped) return;
    if (this.#refilling) {
      this.#again = true;
      return;
    }
    this.#refilling = this.#refill()
      .catch((err: unknown) => this.#o.log.error({ err }, "warm pool refill failed"))
      .finally(() => {
        this.#refilling = undefined;
        if (this.#again) {
          this.#again = false;
          this.#kick();
        }
      });
  }

  /** Boots VMs one at a time while a label is short of its target, nobody waits for capacity, and it all fits. */
  async #refill(): Promise<void> {
    for (;;) {
      if (this.#stopped) return;
      const label = this.labels.find((l) => (this.#idle.get(l)?.length ?? 0) < (this.#targets.get(l) ?? 0));
      if (!label) {
        this.#limitedBy = undefined;
        return;
      }
      if (this.#o.capacity.waiting > 0) return this.#stopShort("capacity");
      let image: ImageSpec;
      try {
        const target = await this.#o.provisioner.resolve(label);
        if (target.kind !== "vm" || !this.#o.provisioner.preboot) return;
        image = target.image;
      } catch (err) {
        this.#o.log.warn({ err, label }, "the warm pool cannot resolve its label; retrying later");
        return this.#retryLater();
      }
      const size = { cpus: image.cpus, memoryMiB: image.memoryMiB };
      if (this.#memoryMiB + size.memoryMiB > this.#o.memoryMiB) {
        if (this.#limitedBy !== "memory")
          this.#o.log.info(
            { label, pooledMiB: this.#memoryMiB, vmMiB: size.memoryMiB, budgetMiB: this.#o.memoryMiB },
            "the warm pool is at its memory budget (orchestrator.pool.memoryMiB); not booting more",
          );
        return this.#stopShort("memory");
      }
      const reservation = this.#o.capacity.tryReserve(size);
      if (!reservation) return this.#stopShort("capacity");
      if (!(await this.#bootOne(label, image, reservation))) return this.#retryLater();
    }
  }

  /** Boots one pooled VM under `reservation`; false when the boot failed (not when it was stopped). */
  async #bootOne(label: string, image: ImageSpec, reservation: Reservation): Promise<boolean> {
    const ac = new AbortController();
    this.#booting = { label, ac };
    this.#memoryMiB += reservation.size.memoryMiB;
    this.#gauge(label);
    let machine: Machine | undefined;
    let recorded: string | undefined;
    try {
      machine = await this.#o.provisioner.preboot!(image, {
        signal: ac.signal,
        log: this.#o.log,
        onSpawn: (vm) => {
          recorded = vm.id;
          this.#bootingId = vm.id;
          return this.#o.store.vms
            .recordPooled(
              {
                id: vm.id,
                owner: this.#o.owner,
                host: this.#o.host,
                pid: vm.pid,
                overlayPath: vm.overlay,
                seedPath: vm.seed,
                sshPort: vm.sshPort,
                qmpSocket: vm.qmpSocket,
              },
              this.#o.recordTtlMs,
            )
            .then(() => undefined);
        },
      });
    } catch (err) {
      // The machine removed what it started; its record goes too (or its expiry would be renewed forever).
      if (recorded)
        await this.#o.store.vms
          .delete(recorded)
          .catch((e: unknown) => this.#o.log.warn({ err: e }, "could not delete a pooled VM's record"));
      this.#booting = undefined;
      this.#bootingId = undefined;
      this.#memoryMiB -= reservation.size.memoryMiB;
      reservation.release();
      this.#gauge(label);
      if (ac.signal.aborted) return true;
      this.#o.log.warn({ err, label }, "a warm pool VM failed to boot; retrying later");
      this.#limitedBy = "failed";
      return false;
    }
    this.#booting = undefined;
    this.#bootingId = undefined;
    // Stopped, or a job started waiting for capacity while this one booted: it goes at once.
    if (this.#stopped || ac.signal.aborted || this.#o.capacity.waiting > 0) {
      await this.#destroy({ label, machine, reservation }, "capacity is wanted by a job");
      return true;
    }
    const since = Date.now();
    const timer = setTimeout(() => this.#expire(label, machine), this.#o.idleTtlMs);
    timer.unref();
    this.#idle.get(label)!.push({ label, machine, reservation, since, timer });
    // A pooled VM whose QEMU ends while idle (a crash, a kill) leaves the pool, and another boots.
    void machine.exited.then(() => {
      const list = this.#idle.get(label)!;
      const i = list.findIndex((v) => v.machine === machine);
      if (i < 0) return;
      const [vm] = list.splice(i, 1);
      void this.#destroy(vm!, "its QEMU ended while idle").then(() => this.#kick());
    });
    this.#gauge(label);
    this.#o.log.info({ vm: machine.id, label, bootMs: machine.bootMs }, "a warm pool VM is ready");
    return true;
  }

  /** An idle VM outlived the idle TTL: destroyed, and the target shrinks back towards min. */
  #expire(label: string, machine: Machine): void {
    const list = this.#idle.get(label);
    const i = list?.findIndex((v) => v.machine === machine) ?? -1;
    if (!list || i < 0) return;
    const [vm] = list.splice(i, 1);
    const cfg = this.#cfg.get(label)!;
    this.#targets.set(label, Math.max(cfg.min, (this.#targets.get(label) ?? cfg.min) - 1));
    void this.#destroy(vm!, "idle too long").then(() => this.#kick());
  }

  /** While jobs wait for capacity, the pool gives its VMs up: the booting one, then the oldest idle one. */
  #onCapacity(): void {
    if (this.#stopped) return;
    if (this.#o.capacity.waiting === 0) {
      this.#kick();
      return;
    }
    if (this.#booting && !this.#booting.ac.signal.aborted) {
      this.#booting.ac.abort(new Error("a job waits for capacity"));
      return;
    }
    if (this.#evicting) return;
    const oldest = [...this.#idle.values()]
      .flat()
      .sort((a, b) => a.since - b.since)
      .at(0);
    if (!oldest) return;
    const list = this.#idle.get(oldest.label)!;
    list.splice(list.indexOf(oldest), 1);
    this.#evicting = true;
    void this.#destroy(oldest, "a job waits for capacity").finally(() => {
      this.#evicting = false;
      this.#onCapacity();
    });
  }

  async #destroy(vm: PooledVm & { timer?: NodeJS.Timeout }, why: string): Promise<void> {
    clearTimeout(vm.timer);
    this.#memoryMiB -= vm.reservation.size.memoryMiB;
    this.#gauge(vm.label);
    try {
      await vm.machine.destroy();
      await this.#o.store.vms.delete(vm.machine.id);
    } catch (err) {
      this.#o.log.warn({ err, vm: vm.machine.id }, "destroying a pooled VM failed; the reaper deals with what is left");
    } finally {
      // Only now: the memory it held is free.
      vm.reservation.release();
    }
    this.#o.log.info({ vm: vm.machine.id, label: vm.label, why }, "destroyed a pooled VM");
  }

  #stopShort(why: "memory" | "capacity"): void {
    this.#limitedBy = why;
  }

  #retryLater(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#kick(), this.#o.retryMs ?? 30_000);
    this.#retryTimer.unref();
  }

  #gauge(label: string): void {
    this.#o.metrics.poolVms.set({ label, state: "idle" }, this.#idle.get(label)?.length ?? 0);
    this.#o.metrics.poolVms.set({ label, state: "booting" }, this.#booting?.label === label ? 1 : 0);
  }
}
