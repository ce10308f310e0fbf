// One job from delivery to ack: record it, take its lease, resolve its label, reserve capacity,
// boot its machine, run the engine over it, tear the machine down, record the outcome, send the
// last event, and only then ack. Every path ends the job with a result and a sentence; nothing
// here throws past runJob.
import type { JobResult } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";
import { openSecrets } from "../contract/sealed-secrets.js";
import { mayRunJavaScript } from "../engine/action-node.js";
import { type EngineOptions, executeJob, jobInputOf } from "../engine/engine.js";
import type { JobDelivery } from "../queue/bus.js";
import { StoreUnavailableError } from "../store/errors.js";
import { afterLostOwner, isTerminal } from "../store/job-state.js";
import type { Job } from "../store/jobs.js";
import type { Store } from "../store/store.js";
import { jobLogger, type Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { Capacity, Reservation } from "./capacity.js";
import { type EventSink, EventStream } from "./event-stream.js";
import { forgeEndpointsOf } from "./forge-endpoints.js";
import { keepLease } from "./lease-keeper.js";
import type { Provisioner, Target, Workspace } from "./provisioner.js";

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
}

/** What a job may change about how the engine runs it. */
export type JobOptions = Pick<EngineOptions, "checkout" | "baseEnv" | "jobContainer">;

/** Why a job is being cancelled, as the job log's last words. */
export class JobCancelledError extends Error {
  override readonly name = "JobCancelledError";
  readonly code = "orchestrator.job-cancelled";
}

/** How long a job waits before going back to the queue when the database is unreachable. */
const STORE_DOWN_REQUEUE_DELAY_MS = 5_000;

/** Events published by an owner that vanished are above its recorded seq by at most this much. */
export const TAKEOVER_SEQ_GAP = 100_000;

/**
 * Runs one delivered job to its end. `cancel` aborts it (a Cancel message, a lost lease, a stop
 * whose deadline passed); the abort reason becomes the job's last words. `handBack` (a stop) gives
 * the job back to the queue instead, if it has not got its machine's capacity yet: another
 * orchestrator runs it, and nothing of it ran here.
 */
export async function runJob(
  delivery: JobDelivery,
  cancel: AbortSignal,
  deps: RunJobDeps,
  handBack: AbortSignal = new AbortController().signal,
): Promise<void> {
  const req = delivery.request;
  const log = jobLogger(deps.log, { jobId: req.id, forge: req.source.forge, label: req.runsOn });
  const acceptedAt = Date.now();
  let job: Job;
  try {
    job = (await deps.store.jobs.insert(req)).job;
  } catch (err) {
    if (err instanceof StoreUnavailableError) {
      // The database is down, not the message bad: give the job back for later, after a pause so
      // that a long outage does not spin the queue.
      log.error({ err }, "job could not be recorded while the database is unreachable; giving it back to the queue");
      await sleepUntil(STORE_DOWN_REQUEUE_DELAY_MS, cancel).catch(() => undefined);
      await delivery.nack({ requeue: true });
      return;
    }
    log.error({ err }, "job could not be recorded; dead-lettering it");
    await delivery.nack({ requeue: false, reason: `could not be recorded: ${(err as Error).message}` });
    return;
  }

  const events = new EventStream({
    jobId: req.id,
    replyTo: req.replyTo,
    sink: deps.bus,
    firstSeq: job.eventSeq > 0 || job.attempts > 0 ? job.eventSeq + TAKEOVER_SEQ_GAP : 0,
    onPublishError: (err, ev) => log.warn({ err, seq: ev.seq, kind: ev.kind }, "job event could not be published"),
  });

  // A job that ended already (a redelivery after our ack was lost): say its result again, ack.
  if (isTerminal(job.state)) {
    log.info({ state: job.state }, "redelivered job had ended already; repeating its result");
    events.emit({
      kind: "job-finished",
      result: job.result ?? "failure",
      outputs: { ...job.outputs },
      reason: job.failureReason ?? undefined,
    });
    await events.flush();
    await delivery.ack();
    return;
  }

  const lease = await takeLease(job, req, deps, AbortSignal.any([cancel, handBack]), log);
  if (lease.kind === "gone") {
    await delivery.nack({ requeue: true });
    return;
  }
  if (lease.kind === "ended") {
    await delivery.ack();
    return;
  }
  job = lease.job;

  const gauge = stateGauge(deps.metrics, req.runsOn);
  const end = async (result: JobResult, reason?: string, outputs: Readonly<Record<string, string>> = {}) => {
    gauge.clear();
    try {
      await deps.store.jobs.finish(req.id, { result, reason, outputs });
    } catch (err) {
      log.warn({ err }, "could not record the job's result");
    }
    // Counted before the forge can learn the result, so /metrics never lags behind what it shows.
    deps.metrics.jobsFinished.inc({ result, label: req.runsOn });
    deps.metrics.jobDurationSeconds.observe({ label: req.runsOn, result }, (Date.now() - acceptedAt) / 1000);
    if (!events.finished) events.emit({ kind: "job-finished", result, outputs: { ...outputs }, reason });
    await events.flush();
    await deps.store.jobs.recordEventSeq(req.id, events.nextSeq).catch(() => undefined);
    await deps.store.leases.release(req.id, deps.orchestratorId).catch(() => undefined);
    await delivery.ack();
    log.info({ result, reason, tookMs: Date.now() - acceptedAt }, "job finished");
  };

  if (lease.kind === "lost-owner") {
    // The previous owner vanished after a step started: the step may have had effects, so the job fails.
    await end("failure", lease.reason);
    return;
  }

  const cancelled = () => (cancel.reason instanceof Error ? cancel.reason.message : "the job was cancelled");
  const startBy = req.startBy ? Date.parse(req.startBy) : undefined;
  if (startBy !== undefined && Date.now() > startBy) {
    await end(
      "failure",
      `the job waited in the queue past its start deadline (${req.startBy}); no VM was free in time for runs-on "${req.runsOn}"`,
    );
    return;
  }
  const cancelledEarly = await deps.store.cancellations.get(req.id).catch(() => undefined);
  if (cancelledEarly) {
    await end("cancelled", cancelledEarly.reason);
    return;
  }

  try {
    job = await deps.store.jobs.assign(req.id, deps.orchestratorId);
    gauge.set("assigned");
  } catch (err) {
    log.warn({ err }, "job could not be assigned");
    await end("failure", `gnomon could not assign the job: ${(err as Error).message}`);
    return;
  }
  // From here the forge runner may call the job lost when this orchestrator falls silent: the
  // heartbeats say it is alive while nothing else happens (waiting for capacity, booting, a quiet step).
  events.emit({ kind: "accepted", orchestrator: deps.orchestratorId, heartbeatMs: deps.heartbeatMs });
  events.startHeartbeat(deps.heartbeatMs);
  deps.metrics.queueWaitSeconds.observe(
    { label: req.runsOn },
    Math.max(0, acceptedAt - Date.parse(req.queuedAt)) / 1000,
  );

  const keeper = keepLease({
    store: deps.store,
    jobId: req.id,
    owner: deps.orchestratorId,
    ttlMs: deps.leaseTtlMs,
    seq: () => events.nextSeq,
    log,
  });
  const signal = AbortSignal.any([cancel, keeper.lost]);
  let reservation: Reservation | undefined;
  let workspace: Workspace | undefined;
  let target: Target;
  try {
    try {
      target = await deps.provisioner.resolve(req.runsOn);
    } catch (err) {
      await end("failure", (err as Error).message);
      return;
    }
    const size = deps.provisioner.sizeOf(target);
    try {
      // Memory and CPUs count too: a host with free VM slots can still be out of memory.
      const waiting = deps.capacity.wouldWait(size);
      if (waiting)
        events.emit({
          kind: "provisioning",
          phase: "waiting-for-capacity",
          label: req.runsOn,
          message: "waiting for a free VM slot on this host (its VMs, CPUs or memory are in use)",
        });
      reservation = await deps.capacity.reserve(req.runsOn, size, AbortSignal.any([signal, handBack]));
    } catch (err) {
      if (handBack.aborted && !signal.aborted) {
        gauge.clear();
        await giveBack(req, deps, events, delivery, log);
        return;
      }
      await end(
        signal.aborted ? "cancelled" : "failure",
        signal.aborted ? reasonOf(signal, cancelled()) : (err as Error).message,
      );
      return;
    }

    await deps.store.jobs.markProvisioning(req.id);
    gauge.set("provisioning");
    const phaseStarted = new Map<string, number>();
    let lastPhase: { name: string; at: number } | undefined;
    try {
      workspace = await deps.provisioner.provision(target, {
        signal,
        log,
        forgeEndpoints: forgeEndpointsOf(req),
        javascript: mayRunJavaScript(req.spec),
        onNodeTimed: (stage, ms) => deps.metrics.nodeDeliverySeconds.observe({ stage, label: req.runsOn }, ms / 1000),
        onPhase: (phase, message) => {
          const now = Date.now();
          if (lastPhase)
            deps.metrics.bootPhaseSeconds.observe(
              { phase: lastPhase.name, label: req.runsOn },
              (now - lastPhase.at) / 1000,
            );
          lastPhase = { name: phase, at: now };
          phaseStarted.set(phase, now);
          // The message travels in the event (forge reporters and exec show it from there), not again as a log line.
          events.emit({ kind: "provisioning", phase, label: req.runsOn, message });
        },
        onSpawn: async (vm) => {
          deps.metrics.vmsRunning.inc({ label: req.runsOn });
          await deps.store.vms.record({
            id: vm.id,
            jobId: req.id,
            owner: deps.orchestratorId,
            host: deps.host,
            pid: vm.pid,
            overlayPath: vm.overlay,
            seedPath: vm.seed,
            sshPort: vm.sshPort,
            qmpSocket: vm.qmpSocket,
          });
        },
      });
    } catch (err) {
      if (signal.aborted) await end("cancelled", reasonOf(signal, cancelled()));
      else
        await end("failure", `the machine for runs-on "${req.runsOn}" could not be started: ${(err as Error).message}`);
      return;
    }
    log.info({ machine: workspace.describe }, "machine ready");

    await deps.store.jobs.markRunning(req.id);
    gauge.set("running");
    let firstStep = true;
    const extra = deps.jobOptions?.(req) ?? {};
    const secrets = openSecrets(req.secrets, deps.clusterKey, req.id);
    const outcome = await executeJob(jobInputOf(req, secrets), {
      executor: workspace.executor,
      signal,
      runnerName: deps.runnerName,
      checkout: extra.checkout,
      hostGit: workspace.hostGit,
      node: workspace.node,
      jobContainer: extra.jobContainer,
      baseEnv: { ...forgeEnv(req), ...extra.baseEnv },
      emit: (body) => {
        if (body.kind === "step-started" && firstStep) {
          firstStep = false;
          deps.store.jobs
            .markFirstStepStarted(req.id)
            .catch((err: unknown) => log.warn({ err }, "could not record the first step"));
        }
        if (body.kind === "job-finished") return; // end() records the result first, then sends it
        events.emit(body);
      },
    });
    const reason =
      outcome.result === "cancelled" && signal.aborted
        ? reasonOf(signal, outcome.reason ?? cancelled())
        : outcome.reason;
    await teardown(workspace, deps, req, log);
    workspace = undefined;
    await end(outcome.result, reason, outcome.outputs);
  } catch (err) {
    log.error({ err }, "job failed inside gnomon");
    if (workspace) await teardown(workspace, deps, req, log);
    workspace = undefined;
    await end("failure", `gnomon failed while running the job: ${(err as Error).message}`);
  } finally {
    if (workspace) await teardown(workspace, deps, req, log);
    reservation?.release();
    keeper.stop();
    events.stopHeartbeat();
  }
}

/**
 * Back to the queue with nothing run here: the job is queued again, its lease released and its
 * seq recorded (the next owner continues above it), and the delivery requeued.
 */
async function giveBack(
  req: JobRequest,
  deps: RunJobDeps,
  events: EventStream,
  delivery: JobDelivery,
  log: Logger,
): Promise<void> {
  await events.flush();
  await deps.store.jobs.recordEventSeq(req.id, events.nextSeq).catch(() => undefined);
  try {
    await deps.store.jobs.requeue(req.id);
  } catch (err) {
    log.warn({ err }, "could not mark the handed-back job queued; the next owner takes it over after the lease");
  }
  await deps.store.leases.release(req.id, deps.orchestratorId).catch(() => undefined);
  await delivery.nack({ requeue: true });
  log.info("handed the job back to the queue: this orchestrator is stopping and had not started it");
}

async function teardown(workspace: Workspace, deps: RunJobDeps, req: JobRequest, log: Logger): Promise<void> {
  await workspace.destroy();
  const vms = await deps.store.vms.listOnHost(deps.host).catch(() => []);
  for (const vm of vms.filter((v) => v.jobId === req.id && v.owner === deps.orchestratorId)) {
    await deps.store.vms.delete(vm.id).catch((err: unknown) => log.warn({ err }, "could not delete the VM record"));
    deps.metrics.vmsRunning.dec({ label: req.runsOn });
  }
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

/** Moves this job between the states of the jobs-by-state gauge; clear() when it ends. */
function stateGauge(metrics: Metrics, label: string): { set(state: string): void; clear(): void } {
  let current: string | undefined;
  const set = (state: string | undefined) => {
    if (current) metrics.jobsByState.dec({ state: current, label });
    if (state) metrics.jobsByState.inc({ state, label });
    current = state;
  };
  return { set, clear: () => set(undefined) };
}

function reasonOf(signal: AbortSignal, fallback: string): string {
  const r: unknown = signal.reason;
  return r instanceof Error && r.name !== "AbortError" ? r.message : fallback;
}

type LeaseOutcome =
  | { kind: "held"; job: Job }
  /** The previous owner vanished after a step started. */
  | { kind: "lost-owner"; job: Job; reason: string }
  /** The job ended while we waited for its owner. */
  | { kind: "ended" }
  /** We were stopped while waiting: give the delivery back. */
  | { kind: "gone" };

/**
 * Takes the job's lease. When another live orchestrator holds it (this is a redelivery while that
 * one still runs the job), waits until the job ends or the lease expires, then takes it over.
 */
async function takeLease(
  job: Job,
  req: JobRequest,
  deps: RunJobDeps,
  cancel: AbortSignal,
  log: Logger,
): Promise<LeaseOutcome> {
  let current = job;
  for (;;) {
    const got = await deps.store.leases.acquire(req.id, deps.orchestratorId, deps.leaseTtlMs);
    if (got.acquired) {
      const fresh = (await deps.store.jobs.get(req.id)) ?? current;
      if (fresh.state === "queued") return { kind: "held", job: fresh };
      if (isTerminal(fresh.state)) return { kind: "ended" };
      const previous = fresh.assignedTo ?? "another orchestrator";
      if (afterLostOwner(fresh.state, fresh.firstStepAt !== null) === "requeue") {
        // Nothing of the job ran yet (also our own earlier attempt, redelivered after a reconnect): start over.
        log.info({ previous }, "taking over a job whose orchestrator was lost before any step ran");
        return { kind: "held", job: await deps.store.jobs.requeue(req.id) };
      }
      return {
        kind: "lost-owner",
        job: fresh,
        reason: `orchestrator lost while running: ${previous} stopped renewing the job's lease while the job was ${fresh.state}; steps may have run, so the job is not retried`,
      };
    }
    current = (await deps.store.jobs.get(req.id)) ?? current;
    if (isTerminal(current.state)) return { kind: "ended" };
    log.info({ holder: got.holder?.owner }, "job is held by another orchestrator; watching it");
    try {
      await sleepUntil(Math.max(500, Math.min(deps.leaseTtlMs / 3, 5_000)), cancel);
    } catch {
      return { kind: "gone" };
    }
  }
}

function sleepUntil(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
