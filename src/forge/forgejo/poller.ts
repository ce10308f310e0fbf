// The capacity-gated FetchTask loop: take room for a task BEFORE asking, ask for as many tasks as
// there is room for, hand each task off at once (it is already running on Forgejo), and never hold
// one it cannot start. tasks_version and the request key follow forgejo-runner; errors back off
// with jitter, an outage is logged when it starts and when it ends, and fatal errors end the loop.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { isAbort, pause } from "../../lifecycle/abort.js";
import { type Intervals, nextDelayMs } from "../../lifecycle/backoff.js";
import type { Slot } from "../../lifecycle/slots.js";
import { toError } from "../../lifecycle/to-error.js";
import type { Logger } from "../../telemetry/log.js";
import { Outage } from "../outage.js";
import type { TaskCapacity } from "./capacity.js";
import type { ForgejoClient, ForgejoTask } from "./client.js";
import { codeOf, ForgejoUnreachableError, type RegisterAgain, RunnerUnregisteredError } from "./errors.js";

export type PollerState = "waiting-for-slot" | "fetching" | "waiting" | "stopped";

export interface PollerOptions {
  readonly client: ForgejoClient;
  readonly capacity: TaskCapacity;
  /** Label names (what capacity is asked for). */
  readonly labels: readonly string[];
  readonly runnerName: string;
  /** For the "runner deleted" message: how to register a new runner in its place. */
  readonly registerAgain: RegisterAgain;
  /** Minimum time between two FetchTask calls, and the base of the error backoff. */
  readonly fetchIntervalMs: number;
  /** The error backoff never waits longer, jitter included: a Forgejo that is back is polled within it. */
  readonly fetchIntervalMaxMs: number;
  readonly fetchTimeoutMs: number;
  /** Called once per task, with the slot it holds; it must release the slot when the task is done. */
  readonly handOff: (task: ForgejoTask, slot: Slot) => void;
  readonly log: Logger;
  readonly onState?: (s: PollerState) => void;
  readonly random?: () => number;
}

type Outcome =
  | { kind: "tasks"; tasks: readonly ForgejoTask[] }
  | { kind: "empty" }
  | { kind: "transient"; error: Error }
  | { kind: "fatal"; error: Error }
  | { kind: "stopped" };

/** Forgejo re-reads the job queue when asked with version 0; do that at least this often. */
const VERSION_RESET_MS = 60_000;

export class Poller {
  readonly #o: PollerOptions;
  #tasksVersion = 0n;
  #versionSetAt = 0;
  #requestKey = randomUUID();
  /** Failing FetchTask calls: logged when they start and end; the backoff grows with its streak. */
  readonly #outage: Outage;

  constructor(options: PollerOptions) {
    this.#o = options;
    this.#outage = new Outage(options.log, {
      failing: "fetching tasks from forgejo failed; retrying with backoff",
      back: "fetching tasks from forgejo works again",
    });
  }

  /** Since when FetchTask has been failing, with its latest error; undefined while it works. */
  get outage(): { readonly since: number; readonly error: Error } | undefined {
    return this.#outage.current;
  }

  /** Makes the next FetchTask look at the job queue (after a task finished, new work may be waiting). */
  lookAgain(): void {
    this.#tasksVersion = 0n;
  }

  /** Runs until `signal` aborts (resolves) or a fatal error (rejects with it). */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.#o;
    let lastCallAt = Number.NEGATIVE_INFINITY;
    try {
      while (!signal.aborted) {
        o.onState?.("waiting-for-slot");
        let first: Slot;
        try {
          first = await o.capacity.acquire(o.labels, signal);
        } catch (err) {
          if (signal.aborted) break;
          throw err;
        }
        const slots = [first];
        // Forgejo 14+ hands out up to task_capacity tasks per call: ask for all the room there is.
        for (let s = o.capacity.tryAcquire(o.labels); s; s = o.capacity.tryAcquire(o.labels)) slots.push(s);

        const wait = lastCallAt + o.fetchIntervalMs - Date.now();
        if (wait > 0) {
          o.onState?.("waiting");
          await pause(wait, signal);
          if (signal.aborted) {
            for (const s of slots) s.release();
            break;
          }
        }
        o.onState?.("fetching");
        lastCallAt = Date.now();
        const got = await this.#fetchOnce(slots.length, signal);
        if (got.kind === "tasks") {
          this.#outage.recovered();
          const held = got.tasks.slice(0, slots.length);
          for (const [i, task] of held.entries()) o.handOff(task, slots[i]!);
          for (const s of slots.slice(held.length)) s.release();
          if (got.tasks.length > slots.length)
            // Only a server ignoring task_capacity could do this; the extra tasks are already running
            // there, so they are handed off too rather than left to the zombie reaper.
            for (const task of got.tasks.slice(slots.length)) o.handOff(task, { release() {} });
          continue;
        }
        for (const s of slots) s.release();
        if (got.kind === "stopped") break;
        if (got.kind === "fatal") throw got.error;
        if (got.kind === "empty") {
          this.#outage.recovered();
          continue; // the interval above paces the next call
        }
        this.#outage.failed(got.error);
        o.onState?.("waiting");
        await pause(nextDelayMs(this.#intervals(), this.#outage.streak, o.random), signal);
      }
    } finally {
      o.onState?.("stopped");
    }
  }

  #intervals(): Intervals {
    return { baseMs: this.#o.fetchIntervalMs, maxMs: Math.max(this.#o.fetchIntervalMs, this.#o.fetchIntervalMaxMs) };
  }

  async #fetchOnce(capacity: number, signal: AbortSignal): Promise<Outcome> {
    const o = this.#o;
    if (Date.now() - this.#versionSetAt > VERSION_RESET_MS) {
      // Runners that lost a race for a job would otherwise not look again until the next bump.
      this.#tasksVersion = 0n;
      this.#versionSetAt = Date.now();
    }
    const sent = this.#tasksVersion;
    try {
      const res = await o.client.fetchTask(
        { tasksVersion: sent, taskCapacity: capacity, requestKey: this.#requestKey },
        { signal, timeoutMs: o.fetchTimeoutMs },
      );
      this.#requestKey = randomUUID(); // a successful call: the next one is a new request
      if (res.tasksVersion > sent) {
        this.#tasksVersion = res.tasksVersion;
        this.#versionSetAt = Date.now();
      }
      if (res.tasks.length === 0) return { kind: "empty" };
      this.#tasksVersion = 0n; // there may be more work: look again next time
      return { kind: "tasks", tasks: res.tasks };
    } catch (err) {
      return this.#classify(err, signal);
    }
  }

  /** Keeps the request key on every failure, so Forgejo 15+ can replay tasks whose answer was lost. */
  #classify(err: unknown, signal: AbortSignal): Outcome {
    if (signal.aborted || isAbort(err) || codeOf(err) === Code.Canceled) return { kind: "stopped" };
    const o = this.#o;
    switch (codeOf(err)) {
      case Code.DeadlineExceeded:
        // A slow short poll (or a server that long-polls): nothing came in time.
        o.log.debug(
          { timeoutMs: o.fetchTimeoutMs },
          "fetch task timed out; raise forgejo.fetchTimeout if this persists",
        );
        return { kind: "empty" };
      case Code.Unauthenticated:
        return {
          kind: "fatal",
          error: new RunnerUnregisteredError(o.client.instance, o.runnerName, o.registerAgain, { cause: err }),
        };
      case Code.Unimplemented:
        return {
          kind: "fatal",
          error: new ForgejoUnreachableError(
            o.client.instance,
            "it does not implement FetchTask of the runner protocol",
            {
              cause: err,
            },
          ),
        };
      default:
        return { kind: "transient", error: toError(err) };
    }
  }
}
