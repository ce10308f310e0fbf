// A counting semaphore with AbortSignal: a runner takes capacity before it asks for work, and an
// orchestrator's prefetch equals its free slots.

export interface Slot {
  /** Gives the slot back; idempotent. */
  release(): void;
}

export class Slots {
  #free: number;
  readonly #waiters: { resolve: (s: Slot) => void; reject: (e: unknown) => void; signal?: AbortSignal }[] = [];
  readonly #listeners = new Set<(free: number) => void>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be an integer ≥ 1, got ${capacity}`);
    this.#free = capacity;
  }

  get free(): number {
    return this.#free;
  }

  get used(): number {
    return this.capacity - this.#free;
  }

  /** Takes a slot now, or undefined when none is free. */
  tryAcquire(): Slot | undefined {
    if (this.#free === 0) return undefined;
    this.#free -= 1;
    this.#notify();
    return this.#slot();
  }

  /** Waits for a slot; rejects with the signal's reason when it aborts first. */
  acquire(signal?: AbortSignal): Promise<Slot> {
    signal?.throwIfAborted();
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise<Slot>((resolve, reject) => {
      const waiter = { resolve, reject, signal };
      this.#waiters.push(waiter);
      signal?.addEventListener(
        "abort",
        () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Called with the number of free slots whenever it changes. Returns an unsubscribe function. */
  onChange(listener: (free: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #slot(): Slot {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const next = this.#waiters.shift();
        if (next) next.resolve(this.#slot());
        else {
          this.#free += 1;
          this.#notify();
        }
      },
    };
  }

  #notify(): void {
    for (const l of this.#listeners) l(this.#free);
  }
}
