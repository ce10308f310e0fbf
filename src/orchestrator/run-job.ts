// One job from delivery to ack, as phases: record → lease → provision → execute (→ a debug window,
// when the run asked for one), then teardown and the ledger's close, once, on every path. Each phase either lets the job go on or says how it ends
// (an Ending); the job's ledger (job-ledger.ts) writes every step down: store transitions, lease,
// events, metrics. This file holds the decisions and never talks to the store itself. runJob
// rejects only when the queue delivery cannot be settled (the bus is gone; the job comes back).
import type { JobRequest } from "../contract/job-request.js";
import { openSecrets } from "../contract/sealed-secrets.js";
import { holdsFor } from "../debug-ssh/debug-request.js";
import type { DebugSshServer } from "../debug-ssh/debug-ssh-server.js";
import { mayRunJavaScript } from "../engine/action-node.js";
import { type EngineOptions, executeJob, jobInputOf } from "../engine/engine.js";
import type { JobDelivery } from "../queue/bus.js";
import type { Store } from "../store/store.js";
import { jobLogger, type Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { Capacity, Reservation } from "./capacity.js";
import type { EventSink } from "./event-stream.js";
import { forgeEndpointsOf } from "./forge-endpoints.js";
import { type Ending, JobLedger, STORE_DOWN_REQUEUE_DELAY_MS } from "./job-ledger.js";
import { type JobServiceDeps, type JobServices, servedWith, startJobServices } from "./job-services.js";
import type { Provisioner, Target, Workspace } from "./provisioner.js";
import type { PooledVm, WarmPool } from "./warm-pool.js";

export interface RunJobDeps {
  readonly orchestratorId: string;
  readonly host: string;
  readonly bus: EventSink;
  readonly store: Store;
  readonly provisioner: Provisioner;
  readonly capacity: Capacity;
  readonly clusterKey: Buffer;
  readonly leaseTtlMs: number;
  /** How often a job's heartbeat goes out, from its accepted event until it ends. */
  readonly heartbeatMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** runner.name in the job. */
  readonly runnerName: string;
  /** Engine options for one job beyond the defaults (gnomon exec: the local checkout). */
  readonly jobOptions?: (req: JobRequest) => JobOptions;
  /** What gnomon serves jobs in their machines (the cache); default nothing. */
  readonly services?: JobServiceDeps;
  /** Debug SSH (docs/debug-ssh.md): whether a run asked for it, and holding its VM for its actor. Absent: off. */
  readonly debugSsh?: Pick<DebugSshServer, "ask" | "hold">;
  /** This host's warm pools (orchestrator.pool); absent: every VM boots for its job. */
  readonly pool?: Pick<WarmPool, "claim">;
}

/** What a job may change about how the engine runs it. */
export type JobOptions = Pick<EngineOptions, "checkout" | "baseEnv" | "jobContainer">;

/** Why a job is being cancelled, as the job log's last words. */
export class JobCancelledError extends Error {
  override readonly name = "JobCancelledError";
  readonly code = "orchestrator.job-cancelled";
}

/**
 * Runs one delivered job to its end. `cancel` aborts it (a Cancel message, a stop whose deadline
 * passed); the abort reason becomes the job's last words, as does a lost lease. `handBack` (a stop)
 * gives the job back to the queue instead, if it has not got its machine's capacity yet: another
 * orchestrator runs it, and nothing of it ran here.
 */
export async function runJob(
  delivery: JobDelivery,
  cancel: AbortSignal,
  deps: RunJobDeps,
  handBack: AbortSignal = new AbortController().signal,
): Promise<void> {
  await new JobRun(delivery, cancel, handBack, deps).run();
}

class JobRun {
  readonly #req: JobRequest;
  readonly #d: RunJobDeps;
  readonly #log: Logger;
  readonly #ledger: JobLedger;
  readonly #cancel: AbortSignal;
  readonly #handBack: AbortSignal;
  /** What stops the job once it is accepted: a cancel, or its lease lost. */
  #signal: AbortSignal;
  #reservation: Reservation | undefined;
  #workspace: Workspace | undefined;
  #services: JobServices | undefined;
  /** The job's secrets, opened for the engine (debug SSH reads its variables and token from them too). */
  #secrets: Readonly<Record<string, string>> = {};

  constructor(delivery: JobDelivery, cancel: AbortSignal, handBack: AbortSignal, deps: RunJobDeps) {
    const req = delivery.request;
    this.#req = req;
    this.#d = deps;
    this.#log = jobLogger(deps.log, { jobId: req.id, forge: req.source.forge, label: req.runsOn });
    this.#cancel = cancel;
    this.#handBack = handBack;
    this.#signal = cancel;
    this.#ledger = new JobLedger(delivery, { ...deps, log: this.#log }, cancel);
  }

  async run(): Promise<void> {
    let ending: Ending;
    try {
      ending =
        (await this.#record()) ??
        (await this.#lease()) ??
        (await this.#provision()) ??
        (await this.#debugWindow(await this.#execute()));
    } catch (err) {
      ending = this.#ledger.crashed(err);
    }
    // Every path comes here, once: the machine goes before the result is recorded and published.
    await this.#teardown();
    await this.#ledger.close(ending);
  }

  /** Records the job; a job that ended before (a redelivery) says its result again. */
  async #record(): Promise<Ending | undefined> {
    const recorded = await this.#ledger.record();
    switch (recorded.kind) {
      case "recorded":
        return undefined;
      case "ended":
        this.#log.info({ state: recorded.job.state }, "redelivered job had ended already; repeating its result");
        return { kind: "repeat" };
      case "unreachable":
        // The database is down, not the message bad: give the job back for later, after a pause so
        // that a long outage does not spin the queue.
        this.#log.error(
          { err: recorded.error },
          "job could not be recorded while the database is unreachable; giving it back to the queue",
        );
        return { kind: "requeue", afterMs: STORE_DOWN_REQUEUE_DELAY_MS };
      case "refused":
        this.#log.error({ err: recorded.error }, "job could not be recorded; dead-lettering it");
        return { kind: "dead-letter", reason: `could not be recorded: ${recorded.error.message}` };
    }
  }

  /** Takes the lease and accepts the job, unless it is past its start deadline or was cancelled while queued. */
  async #lease(): Promise<Ending | undefined> {
    const req = this.#req;
    const lease = await this.#ledger.lease(AbortSignal.any([this.#cancel, this.#handBack]));
    switch (lease.kind) {
      case "gone":
        return { kind: "requeue" };
      case "ended":
        return { kind: "ended-elsewhere" };
      case "lost-owner":
        // The previous owner vanished after a step started: the step may have had effects, so the job fails.
        return failure(lease.reason);
      case "held":
        break;
    }
    const startBy = req.startBy ? Date.parse(req.startBy) : undefined;
    if (startBy !== undefined && Date.now() > startBy)
      return failure(
        `the job waited in the queue past its start deadline (${req.startBy}); no VM was free in time for runs-on "${req.runsOn}"`,
      );
    const cancelledEarly = await this.#ledger.cancelledEarly();
    if (cancelledEarly !== undefined) return { kind: "result", result: "cancelled", reason: cancelledEarly };
    try {
      await this.#ledger.accept();
    } catch (err) {
      this.#log.warn({ err }, "job could not be assigned");
      return failure(`gnomon could not assign the job: ${messageOf(err)}`);
    }
    this.#signal = AbortSignal.any([this.#cancel, this.#ledger.leaseLost]);
    return undefined;
  }

  /** Resolves the label, reserves the machine's capacity (or hands the job back on a stop), boots it. */
  async #provision(): Promise<Ending | undefined> {
    const { provisioner, capacity } = this.#d;
    const req = this.#req;
    const signal = this.#signal;
    let target: Target;
    try {
      target = await provisioner.resolve(req.runsOn);
    } catch (err) {
      return failure(messageOf(err));
    }
    const size = provisioner.sizeOf(target);
    const javascript = mayRunJavaScript(req.spec);
    // A pooled VM comes with its capacity. Jobs that may run JavaScript actions boot cold: Node.js
    // runtime disks are attached at boot.
    let pooled: PooledVm | undefined;
    if (target.kind === "vm" && !javascript) pooled = this.#d.pool?.claim(target.label);
    if (pooled) this.#reservation = pooled.reservation;
    else
      try {
        // Memory and CPUs count too: a host with free VM slots can still be out of memory.
        if (capacity.wouldWait(size)) this.#ledger.waitingForCapacity();
        this.#reservation = await capacity.reserve(req.runsOn, size, AbortSignal.any([signal, this.#handBack]));
      } catch (err) {
        if (this.#handBack.aborted && !signal.aborted) return { kind: "hand-back" };
        return signal.aborted ? this.#cancelled() : failure(messageOf(err));
      }
    const startedAt = Date.now();
    try {
      await this.#ledger.provisioning();
      if (pooled) await this.#ledger.vmAdopted(pooled.machine.id);
    } catch (err) {
      await pooled?.machine.destroy();
      throw err;
    }
    try {
      this.#workspace = await provisioner.provision(target, {
        signal,
        log: this.#log,
        forgeEndpoints: forgeEndpointsOf(req),
        javascript,
        pooled: pooled?.machine,
        onNodeTimed: (stage, ms) => this.#ledger.nodeTimed(stage, ms),
        onPhase: (phase, message) => this.#ledger.bootPhase(phase, message),
        onSpawn: (vm) => this.#ledger.vmSpawned(vm),
      });
    } catch (err) {
      if (signal.aborted) return this.#cancelled();
      return failure(`the machine for runs-on "${req.runsOn}" could not be started: ${messageOf(err)}`);
    }
    this.#log.info({ machine: this.#workspace.describe, path: this.#workspace.path }, "machine ready");
    if (this.#workspace.path) this.#ledger.vmStarted(this.#workspace.path, Date.now() - startedAt);
    // The services gnomon gives the job (the Actions cache), served into its machine; the
    // workspace's destroy() revokes them first.
    this.#services = await startJobServices(this.#req, this.#workspace.executor, this.#d.services ?? {}, this.#log);
    this.#workspace = servedWith(this.#workspace, this.#services);
    return undefined;
  }

  /** Runs the engine over the machine; its outcome is the job's. */
  async #execute(): Promise<Ending> {
    const workspace = this.#workspace;
    if (!workspace) throw new Error("the job has no machine to run on after provisioning");
    const req = this.#req;
    const signal = this.#signal;
    await this.#ledger.running();
    const extra = this.#d.jobOptions?.(req) ?? {};
    const secrets = { ...openSecrets(req.secrets, this.#d.clusterKey, req.id), ...this.#services?.maskHints };
    this.#secrets = secrets;
    const outcome = await executeJob(jobInputOf(req, secrets), {
      executor: workspace.executor,
      signal,
      runnerName: this.#d.runnerName,
      checkout: extra.checkout,
      hostGit: workspace.hostGit,
      actionCache: workspace.actionCache,
      machineUrl: workspace.machineUrl,
      node: workspace.node,
      jobContainer: extra.jobContainer,
      baseEnv: { ...forgeEnv(req), ...this.#services?.env, ...extra.baseEnv },
      emit: (body) => this.#ledger.apply(body),
    });
    const reason =
      outcome.result === "cancelled" && signal.aborted
        ? reasonOf(signal, outcome.reason ?? this.#cancelReason())
        : outcome.reason;
    return { kind: "result", result: outcome.result, reason, outputs: outcome.outputs };
  }

  /**
   * After the result is decided and before teardown: when this host allows debug SSH and the run
   * asked for it, the VM is held for the job's actor (src/debug-ssh) until they log out, its time
   * runs out, the job is cancelled or this orchestrator stops. The job still counts as running
   * (heartbeats, lease, capacity; job-finished waits), and then ends with the result it had.
   */
  async #debugWindow(ending: Ending): Promise<Ending> {
    const debugSsh = this.#d.debugSsh;
    if (!debugSsh || ending.kind !== "result" || this.#signal.aborted) return ending;
    const ask = debugSsh.ask(this.#req, this.#secrets);
    if (ask.kind === "invalid") this.#ledger.note(ask.message);
    if (ask.kind !== "asked" || !holdsFor(ask.mode, ending.result)) return ending;
    const openSession = this.#workspace?.openSession;
    if (!openSession) {
      this.#ledger.note(
        `debug SSH: runs-on "${this.#req.runsOn}" runs on this host, not in a VM, and nobody enters this host through gnomon; nothing is held`,
      );
      return ending;
    }
    try {
      await debugSsh.hold({
        request: this.#req,
        secrets: this.#secrets,
        ask,
        result: ending.result,
        orchestrator: this.#d.orchestratorId,
        openSession,
        note: (text) => this.#ledger.note(text),
        onHeld: () => this.#ledger.held(),
        cancel: this.#signal,
        stopping: this.#handBack,
      });
    } catch (err) {
      this.#log.error({ err }, "holding the job for debug SSH failed");
      this.#ledger.note(`debug SSH: gnomon could not hold the VM: ${messageOf(err)}`);
    } finally {
      this.#ledger.released();
    }
    return ending;
  }

  /** Destroys the machine (if any was started) and gives its capacity back. Never throws. */
  async #teardown(): Promise<void> {
    const workspace = this.#workspace;
    this.#workspace = undefined;
    try {
      await workspace?.destroy();
      await this.#ledger.machineGone();
    } catch (err) {
      this.#log.error({ err }, "tearing the job's machine down failed; the reaper deals with what is left");
    } finally {
      this.#reservation?.release();
    }
  }

  #cancelled(): Ending {
    return { kind: "result", result: "cancelled", reason: reasonOf(this.#signal, this.#cancelReason()) };
  }

  #cancelReason(): string {
    return this.#cancel.reason instanceof Error ? this.#cancel.reason.message : "the job was cancelled";
  }
}

function failure(reason: string): Ending {
  return { kind: "result", result: "failure", reason };
}

/** What the forge's own runner sets for every step, so workflows can tell where they run. */
function forgeEnv(req: JobRequest): Record<string, string> {
  switch (req.source.forge) {
    case "forgejo":
      return { FORGEJO_ACTIONS: "true", GITEA_ACTIONS: "true" };
    case "github":
    case "local":
      return {};
  }
}

function reasonOf(signal: AbortSignal, fallback: string): string {
  const r: unknown = signal.reason;
  return r instanceof Error && r.name !== "AbortError" ? r.message : fallback;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
