// One job's ledger in this orchestrator, as TaskRecord is one task's in a Forgejo runner: the only
// code that moves the job's row through its states, takes, renews and releases its lease, numbers
// its events (and beats its heartbeat) and counts it in the metrics. run-job.ts decides what
// happens to the job; the ledger writes it down, in order. Its one exit, close(ending), records the
// ending, sends the last event, gives the lease up and only then settles the queue delivery. It
// never decides an outcome itself, except what an unexpected error means (crashed()).

import { setTimeout as sleep } from "node:timers/promises";
import type { JobEventBody, JobResult, ProvisioningPhase } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";
import { toError } from "../lifecycle/to-error.js";
import type { JobDelivery } from "../queue/bus.js";
import { StoreUnavailableError } from "../store/errors.js";
import { afterLostOwner, isTerminal } from "../store/job-state.js";
import type { Job } from "../store/jobs.js";
import type { Store } from "../store/store.js";
import type { Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { SpawnedVm } from "../vm/machine.js";
import { type EventSink, EventStream } from "./event-stream.js";
import { keepLease, type LeaseKeeper } from "./lease-keeper.js";

export interface LedgerDeps {
  readonly orchestratorId: string;
  /** The host name VM records carry. */
  readonly host: string;
  readonly bus: EventSink;
  readonly store: Store;
  readonly leaseTtlMs: number;
  /** How often the job's heartbeat goes out, from its accepted event until it ends. */
  readonly heartbeatMs: number;
  readonly metrics: Metrics;
  /** The job's own logger (jobId, forge, label). */
  readonly log: Logger;
}

/** Events published by an owner that vanished are above its recorded seq by at most this much. */
export const TAKEOVER_SEQ_GAP = 100_000;

/** How long a job waits before going back to the queue when the database is unreachable. */
export const STORE_DOWN_REQUEUE_DELAY_MS = 5_000;

/** How the job's time on this orchestrator ends: what close() writes down. */
export type Ending =
  /** The job ends here with a result: recorded, counted, published, and only then acked. */
  | {
      readonly kind: "result";
      readonly result: JobResult;
      /** Why it failed or was cancelled, as the job's last words. */
      readonly reason?: string;
      readonly outputs?: Readonly<Record<string, string>>;
    }
  /** It had ended before this delivery (a redelivery after our ack was lost): its result again, acked. */
  | { readonly kind: "repeat" }
  /** It ended elsewhere while this orchestrator waited for another's lease: acked, nothing said. */
  | { readonly kind: "ended-elsewhere" }
  /**
   * Back to the queue as it came, nothing of it run here: the database was unreachable (then after
   * `afterMs`, so that a long outage does not spin the queue), or a stop came while it waited for
   * another orchestrator's lease.
   */
  | { readonly kind: "requeue"; readonly afterMs?: number }
  /** Given back on a stop before it had capacity here: queued again, its seq kept, lease released, requeued. */
  | { readonly kind: "hand-back" }
  /** Refused for good: dead-lettered with the reason. */
  | { readonly kind: "dead-letter"; readonly reason: string };

/**
 * Where the ledger is. Each method moves it forward only; `assigned`, `provisioning` and `running`
 * are the job's own states in the store, which the ledger moved it to.
 */
export type LedgerState =
  /** Nothing written yet. */
  | "new"
  /** The job's row exists; this orchestrator holds nothing of it. */
  | "recorded"
  /** This orchestrator holds the job's lease; the job is still queued. */
  | "leased"
  | "assigned"
  | "provisioning"
  | "running"
  | "closed";

export type Recorded =
  | { readonly kind: "recorded" }
  /** It ended before: the ending is `repeat`. */
  | { readonly kind: "ended"; readonly job: Job }
  | { readonly kind: "unreachable"; readonly error: Error }
  | { readonly kind: "refused"; readonly error: Error };

export type Leased =
  | { readonly kind: "held" }
  /** The previous owner vanished after a step started: the lease is ours, the job must fail. */
  | { readonly kind: "lost-owner"; readonly reason: string }
  /** The job ended while this orchestrator waited for its owner. */
  | { readonly kind: "ended" }
  /** Stopped while waiting for another orchestrator's lease. */
  | { readonly kind: "gone" };

/** A ledger method was called in a state it does not follow: a defect in the caller, not in the job. */
export class LedgerStateError extends Error {
  override readonly name = "LedgerStateError";
  readonly code = "orchestrator.ledger-state";
  constructor(
    readonly step: string,
    readonly state: LedgerState,
    readonly expected: readonly LedgerState[],
  ) {
    super(
      `the job ledger cannot ${step} in state "${state}" (only after ${expected.join(" or ")}); ` +
        "this is a bug in gnomon's run-job phases, please report it",
    );
  }
}

export class JobLedger {
  readonly request: JobRequest;
  readonly log: Logger;
  readonly #delivery: JobDelivery;
  readonly #d: LedgerDeps;
  /** Aborts the pause before a requeue (a stop whose deadline passed). */
  readonly #cancel: AbortSignal;
  readonly #acceptedAt = Date.now();
  readonly #notLost = new AbortController().signal;
  #state: LedgerState = "new";
  #job: Job | undefined;
  #events: EventStream | undefined;
  #leaseHeld = false;
  #keeper: LeaseKeeper | undefined;
  /** The jobs-by-state gauge's state this job is counted in now. */
  #counted: string | undefined;
  #firstStepRecorded = false;
  /** Whether the job's VM is held for debug SSH now (counted in the held-jobs gauge). */
  #held = false;
  #lastPhase: { readonly name: string; readonly at: number } | undefined;
  /** VMs spawned for the job and counted running: forgotten by machineGone(). */
  readonly #vms: string[] = [];

  constructor(delivery: JobDelivery, deps: LedgerDeps, cancel: AbortSignal) {
    this.#delivery = delivery;
    this.request = delivery.request;
    this.#d = deps;
    this.log = deps.log;
    this.#cancel = cancel;
  }

  get state(): LedgerState {
    return this.#state;
  }

  /** Aborts when the job's lease is lost for good while it is held (taken over after a long stall). */
  get leaseLost(): AbortSignal {
    return this.#keeper?.lost ?? this.#notLost;
  }

  /** Records the job as queued; an existing row (a redelivery) is kept as it is. */
  async record(): Promise<Recorded> {
    this.#expect("record", ["new"]);
    let job: Job;
    try {
      job = (await this.#d.store.jobs.insert(this.request)).job;
    } catch (err) {
      const error = toError(err);
      // The database is down, not the message bad: the job can come back later.
      return err instanceof StoreUnavailableError ? { kind: "unreachable", error } : { kind: "refused", error };
    }
    this.#job = job;
    this.#state = "recorded";
    this.#events = new EventStream({
      jobId: this.request.id,
      replyTo: this.request.replyTo,
      sink: this.#d.bus,
      // A job taken over after a crash continues above whatever its vanished owner may have sent.
      firstSeq: job.eventSeq > 0 || job.attempts > 0 ? job.eventSeq + TAKEOVER_SEQ_GAP : 0,
      onPublishError: (err, ev) =>
        this.log.warn({ err, seq: ev.seq, kind: ev.kind }, "job event could not be published"),
    });
    return isTerminal(job.state) ? { kind: "ended", job } : { kind: "recorded" };
  }

  /**
   * Takes the job's lease. When another live orchestrator holds it (this is a redelivery while that
   * one still runs the job), watches until the job ends or the lease expires, then takes it over.
   */
  async lease(signal: AbortSignal): Promise<Leased> {
    this.#expect("take the lease", ["recorded"]);
    const { store, orchestratorId, leaseTtlMs } = this.#d;
    const id = this.request.id;
    for (;;) {
      const got = await store.leases.acquire(id, orchestratorId, leaseTtlMs);
      if (got.acquired) {
        this.#leaseHeld = true;
        this.#state = "leased";
        const fresh = (await store.jobs.get(id)) ?? this.#job;
        if (fresh) this.#job = fresh;
        if (!fresh || fresh.state === "queued") return { kind: "held" };
        if (isTerminal(fresh.state)) return { kind: "ended" };
        const previous = fresh.assignedTo ?? "another orchestrator";
        if (afterLostOwner(fresh.state, fresh.firstStepAt !== null) === "requeue") {
          // Nothing of the job ran yet (also our own earlier attempt, redelivered after a reconnect): start over.
          this.log.info({ previous }, "taking over a job whose orchestrator was lost before any step ran");
          this.#job = await store.jobs.requeue(id);
          return { kind: "held" };
        }
        return {
          kind: "lost-owner",
          reason: `orchestrator lost while running: ${previous} stopped renewing the job's lease while the job was ${fresh.state}; steps may have run, so the job is not retried`,
        };
      }
      const current = await store.jobs.get(id);
      if (current) this.#job = current;
      if (current && isTerminal(current.state)) return { kind: "ended" };
      this.log.info({ holder: got.holder?.owner }, "job is held by another orchestrator; watching it");
      try {
        await sleep(Math.max(500, Math.min(leaseTtlMs / 3, 5_000)), undefined, { signal });
      } catch {
        return { kind: "gone" };
      }
    }
  }

  /** The reason of a Cancel that came while the job still waited in the queue, if one did. */
  async cancelledEarly(): Promise<string | undefined> {
    const c = await this.#d.store.cancellations.get(this.request.id).catch(() => undefined);
    return c?.reason;
  }

  /**
   * queued → assigned: counts an attempt and says `accepted`. From here the forge runner may call
   * the job lost when this orchestrator falls silent: heartbeats say it is alive while nothing else
   * happens (waiting for capacity, booting, a quiet step), and the lease is renewed.
   */
  async accept(): Promise<void> {
    this.#expect("accept the job", ["leased"]);
    const d = this.#d;
    const events = this.#stream();
    this.#job = await d.store.jobs.assign(this.request.id, d.orchestratorId);
    this.#state = "assigned";
    this.#count("assigned");
    events.emit({ kind: "accepted", orchestrator: d.orchestratorId, heartbeatMs: d.heartbeatMs });
    events.startHeartbeat(d.heartbeatMs);
    d.metrics.queueWaitSeconds.observe(
      { label: this.request.runsOn },
      Math.max(0, this.#acceptedAt - Date.parse(this.request.queuedAt)) / 1000,
    );
    this.#keeper = keepLease({
      store: d.store,
      jobId: this.request.id,
      owner: d.orchestratorId,
      ttlMs: d.leaseTtlMs,
      seq: () => events.nextSeq,
      log: this.log,
    });
  }

  /** The host has no room for the job's machine now: the forge shows that while it waits. */
  waitingForCapacity(): void {
    this.#stream().emit({
      kind: "provisioning",
      phase: "waiting-for-capacity",
      label: this.request.runsOn,
      message: "waiting for a free VM slot on this host (its VMs, CPUs or memory are in use)",
    });
  }

  /** assigned → provisioning: its machine is being made. */
  async provisioning(): Promise<void> {
    this.#expect("start provisioning", ["assigned"]);
    await this.#d.store.jobs.markProvisioning(this.request.id);
    this.#state = "provisioning";
    this.#count("provisioning");
  }

  /** A boot phase began: the previous one's time is measured, and the forge shows the new one. */
  bootPhase(phase: ProvisioningPhase, message?: string): void {
    const now = Date.now();
    const label = this.request.runsOn;
    if (this.#lastPhase)
      this.#d.metrics.bootPhaseSeconds.observe(
        { phase: this.#lastPhase.name, label },
        (now - this.#lastPhase.at) / 1000,
      );
    this.#lastPhase = { name: phase, at: now };
    // The message travels in the event (forge reporters and exec show it from there), not again as a log line.
    this.#stream().emit({ kind: "provisioning", phase, label, message });
  }

  /** How long getting Node.js for the job's JavaScript actions took ("obtain" on this host, "locate" in the machine). */
  nodeTimed(stage: "obtain" | "locate", ms: number): void {
    this.#d.metrics.nodeDeliverySeconds.observe({ stage, label: this.request.runsOn }, ms / 1000);
  }

  /** QEMU started: counted running, and recorded so that a crash of this process still gets it reaped. */
  async vmSpawned(vm: SpawnedVm): Promise<void> {
    const d = this.#d;
    d.metrics.vmsRunning.inc({ label: this.request.runsOn });
    this.log.info({ vm: vm.id, pid: vm.pid }, "vm started");
    this.#vms.push(vm.id);
    await d.store.vms.record({
      id: vm.id,
      jobId: this.request.id,
      owner: d.orchestratorId,
      host: d.host,
      pid: vm.pid,
      overlayPath: vm.overlay,
      seedPath: vm.seed,
      sshPort: vm.sshPort,
      qmpSocket: vm.qmpSocket,
    });
  }

  /**
   * A warm pool's VM is the job's: its record gets the job (the job's lease decides from now on
   * whether it is an orphan), and it is counted running.
   */
  async vmAdopted(vmId: string): Promise<void> {
    const d = this.#d;
    d.metrics.vmsRunning.inc({ label: this.request.runsOn });
    this.#vms.push(vmId);
    await d.store.vms.assignPooled(vmId, this.request.id);
  }

  /** The job's machine is ready, `ms` after it had capacity, by the path it took (pooled, cold). */
  vmStarted(path: string, ms: number): void {
    this.#d.metrics.vmStartSeconds.observe({ label: this.request.runsOn, path }, ms / 1000);
  }

  /**
   * The job's machines are destroyed (or never finished booting: the provisioner destroys what it
   * started before it fails): their records go, and they are no longer counted running.
   */
  async machineGone(): Promise<void> {
    const d = this.#d;
    for (const id of this.#vms.splice(0)) {
      await d.store.vms.delete(id).catch((err: unknown) => this.log.warn({ err }, "could not delete the VM record"));
      d.metrics.vmsRunning.dec({ label: this.request.runsOn });
      this.log.info({ vm: id }, "vm gone");
    }
  }

  /** provisioning → running: its machine is ready and the engine starts. */
  async running(): Promise<void> {
    this.#expect("start running", ["provisioning"]);
    await this.#d.store.jobs.markRunning(this.request.id);
    this.#state = "running";
    this.#count("running");
  }

  /**
   * Applies one of the engine's events, as TaskRecord.apply does: the first step's start is
   * recorded (from then on a lost job fails instead of being requeued), and every event goes out in
   * order except job-finished, which close() sends once the result is recorded.
   */
  apply(body: JobEventBody): void {
    if (body.kind === "job-finished") return;
    if (body.kind === "step-started" && !this.#firstStepRecorded) {
      this.#firstStepRecorded = true;
      this.#d.store.jobs
        .markFirstStepStarted(this.request.id)
        .catch((err: unknown) => this.log.warn({ err }, "could not record the first step"));
    }
    this.#stream().emit(body);
  }

  /** A line of the job's own, outside any step (debug SSH's command and sessions): in its log, at once. */
  note(text: string): void {
    this.#stream().log(text);
  }

  /**
   * Its result is decided and its VM held open for debug SSH: still running for the store, the
   * forge (heartbeats, lease, no job-finished yet) and capacity; counted held until released().
   */
  held(): void {
    this.#expect("hold the job for debugging", ["running"]);
    if (this.#held) return;
    this.#held = true;
    this.#d.metrics.debugSshHeldJobs.inc({ label: this.request.runsOn });
    this.log.info("job held for debug SSH");
  }

  /** The debug window closed. */
  released(): void {
    if (!this.#held) return;
    this.#held = false;
    this.#d.metrics.debugSshHeldJobs.dec({ label: this.request.runsOn });
  }

  /**
   * What an error nothing expected means for the job, by how far it got: before this orchestrator
   * holds the lease it must not touch the job, so it goes back to the queue (the database is down)
   * or is dead-lettered (anything else would fail the same way again); once the lease is held, the
   * job fails with the error as its reason.
   */
  crashed(err: unknown): Ending {
    const error = toError(err);
    this.log.error({ err: error }, "job failed inside gnomon");
    if (this.#leaseHeld && this.#state !== "closed")
      return { kind: "result", result: "failure", reason: `gnomon failed while running the job: ${error.message}` };
    if (err instanceof StoreUnavailableError) return { kind: "requeue", afterMs: STORE_DOWN_REQUEUE_DELAY_MS };
    return { kind: "dead-letter", reason: `gnomon could not take the job: ${error.message}` };
  }

  /**
   * The one exit: writes the ending down and settles the delivery, once (a second call does
   * nothing). The lease is renewed until just before it is released, so a slow database or broker
   * at the end does not let another orchestrator take the job over. Rejects only when the delivery
   * cannot be settled (the bus is gone: the broker then delivers the job again).
   */
  async close(ending: Ending): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#count(undefined);
    this.released();
    switch (ending.kind) {
      case "result":
        await this.#finish(ending.result, ending.reason, ending.outputs ?? {});
        return;
      case "repeat": {
        const job = this.#job;
        const events = this.#stream();
        events.emit({
          kind: "job-finished",
          result: job?.result ?? "failure",
          outputs: { ...job?.outputs },
          reason: job?.failureReason ?? undefined,
        });
        await events.flush();
        await this.#delivery.ack();
        return;
      }
      case "ended-elsewhere":
        await this.#release();
        await this.#delivery.ack();
        return;
      case "requeue":
        if (ending.afterMs) await sleep(ending.afterMs, undefined, { signal: this.#cancel }).catch(() => undefined);
        await this.#release();
        await this.#delivery.nack({ requeue: true });
        return;
      case "hand-back":
        await this.#handBack();
        return;
      case "dead-letter":
        await this.#release();
        await this.#delivery.nack({ requeue: false, reason: ending.reason });
        return;
    }
  }

  async #finish(
    result: JobResult,
    reason: string | undefined,
    outputs: Readonly<Record<string, string>>,
  ): Promise<void> {
    const d = this.#d;
    const id = this.request.id;
    const label = this.request.runsOn;
    try {
      await d.store.jobs.finish(id, { result, reason, outputs });
    } catch (err) {
      this.log.warn({ err }, "could not record the job's result");
    }
    // Counted before the forge can learn the result, so /metrics never lags behind what it shows.
    d.metrics.jobsFinished.inc({ result, label });
    d.metrics.jobDurationSeconds.observe({ label, result }, (Date.now() - this.#acceptedAt) / 1000);
    const events = this.#events;
    if (events) {
      if (!events.finished) events.emit({ kind: "job-finished", result, outputs: { ...outputs }, reason });
      await events.flush();
      await d.store.jobs.recordEventSeq(id, events.nextSeq).catch(() => undefined);
    }
    await this.#release();
    await this.#delivery.ack();
    this.log.info({ result, reason, tookMs: Date.now() - this.#acceptedAt }, "job finished");
  }

  /** Back to the queue with nothing run here: queued again, its seq recorded (the next owner continues above it). */
  async #handBack(): Promise<void> {
    const d = this.#d;
    const events = this.#events;
    if (events) {
      events.stopHeartbeat();
      await events.flush();
      await d.store.jobs.recordEventSeq(this.request.id, events.nextSeq).catch(() => undefined);
    }
    try {
      await d.store.jobs.requeue(this.request.id);
    } catch (err) {
      this.log.warn({ err }, "could not mark the handed-back job queued; the next owner takes it over after the lease");
    }
    await this.#release();
    await this.#delivery.nack({ requeue: true });
    this.log.info("handed the job back to the queue: this orchestrator is stopping and had not started it");
  }

  /** Stops renewing and the heartbeat, and gives the lease up if it is held. */
  async #release(): Promise<void> {
    this.#keeper?.stop();
    this.#events?.stopHeartbeat();
    if (!this.#leaseHeld) return;
    this.#leaseHeld = false;
    await this.#d.store.leases.release(this.request.id, this.#d.orchestratorId).catch(() => undefined);
  }

  /** Moves the job between the states of the jobs-by-state gauge; undefined when it ends. */
  #count(state: string | undefined): void {
    const { metrics } = this.#d;
    const label = this.request.runsOn;
    if (this.#counted) metrics.jobsByState.dec({ state: this.#counted, label });
    if (state) metrics.jobsByState.inc({ state, label });
    this.#counted = state;
  }

  #stream(): EventStream {
    if (!this.#events) throw new LedgerStateError("send an event", this.#state, ["recorded"]);
    return this.#events;
  }

  #expect(step: string, expected: readonly LedgerState[]): void {
    if (!expected.includes(this.#state)) throw new LedgerStateError(step, this.#state, expected);
  }
}
