// The host's VM budget: a count of VMs plus CPU and memory. A job holds a reservation for its
// image's size from boot to teardown. Pure bookkeeping, no I/O; waits are AbortSignal-aware.

export interface Budget {
  readonly maxVms: number;
  readonly cpus: number;
  readonly memoryMiB: number;
}

export interface Size {
  readonly cpus: number;
  readonly memoryMiB: number;
}

export interface Reservation {
  readonly size: Size;
  /** Gives the capacity back; idempotent. */
  release(): void;
}

export class DoesNotFitError extends Error {
  override readonly name = "DoesNotFitError";
  readonly code = "orchestrator.does-not-fit";
  constructor(
    readonly label: string,
    readonly size: Size,
    readonly budget: Budget,
  ) {
    super(
      `runs-on "${label}" needs ${size.cpus} CPUs and ${size.memoryMiB} MiB, more than this host's whole budget ` +
        `(${budget.cpus} CPUs, ${budget.memoryMiB} MiB); lower cpus/memoryMiB for the image in the catalog or raise orchestrator.cpus/memoryMiB`,
    );
  }
}

export class Capacity {
  #vms = 0;
  #cpus = 0;
  #memoryMiB = 0;
  readonly #waiters: { size: Size; resolve: (r: Reservation) => void }[] = [];
  readonly #listeners = new Set<() => void>();

  constructor(readonly budget: Budget) {}

  /** VMs that could still start now, ignoring their size: what the queue prefetch should be. */
  get freeVms(): number {
    return Math.max(0, this.budget.maxVms - this.#vms - this.#waiters.length);
  }

  get usedVms(): number {
    return this.#vms;
  }

  /** Jobs waiting in reserve() now: a warm pool gives its idle VMs' capacity up to them. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Reserves at once if nobody waits and it fits, else nothing: a warm pool never queues for capacity. */
  tryReserve(size: Size): Reservation | undefined {
    return this.wouldWait(size) ? undefined : this.#take(size);
  }

  /** Whether reserve(size) would wait now: VMs, CPUs or memory in use, or others waiting first. */
  wouldWait(size: Size): boolean {
    return this.#waiters.length > 0 || !this.#available(size);
  }

  fits(size: Size): boolean {
    return size.cpus <= this.budget.cpus && size.memoryMiB <= this.budget.memoryMiB;
  }

  /** Reserves capacity for one VM of `size`, waiting for running VMs to end if needed. */
  reserve(label: string, size: Size, signal?: AbortSignal): Promise<Reservation> {
    if (!this.fits(size)) return Promise.reject(new DoesNotFitError(label, size, this.budget));
    signal?.throwIfAborted();
    if (this.#waiters.length === 0 && this.#available(size)) return Promise.resolve(this.#take(size));
    return new Promise<Reservation>((resolve, reject) => {
      const waiter = { size, resolve };
      this.#waiters.push(waiter);
      this.#notify();
      signal?.addEventListener(
        "abort",
        () => {
          const i = this.#waiters.indexOf(waiter);
          if (i < 0) return;
          this.#waiters.splice(i, 1);
          this.#notify();
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Called whenever freeVms may have changed. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #available(size: Size): boolean {
    return (
      this.#vms < this.budget.maxVms &&
      this.#cpus + size.cpus <= this.budget.cpus &&
      this.#memoryMiB + size.memoryMiB <= this.budget.memoryMiB
    );
  }

  #take(size: Size): Reservation {
    this.#vms += 1;
    this.#cpus += size.cpus;
    this.#memoryMiB += size.memoryMiB;
    this.#notify();
    let released = false;
    return {
      size,
      release: () => {
        if (released) return;
        released = true;
        this.#vms -= 1;
        this.#cpus -= size.cpus;
        this.#memoryMiB -= size.memoryMiB;
        // First come, first served: a large job at the head is not starved by small ones behind it.
        while (this.#waiters.length > 0 && this.#available(this.#waiters[0]!.size)) {
          const w = this.#waiters.shift()!;
          w.resolve(this.#take(w.size));
        }
        this.#notify();
      },
    };
  }

  #notify(): void {
    for (const l of this.#listeners) l();
  }
}
