// Pure: what to do next in a local run of one workflow (gnomon exec), job after job in `needs`
// order, leg after leg of each job's matrix: run a leg somewhere, or record why a job or leg does
// not run (its if: is false or its needs failed, it cannot be planned, no runner serves its
// runs-on, fail-fast or a stop cancelled it). The caller runs each leg and reports its outcome;
// results flow into the `needs` of later jobs. No I/O, no clock: the same outcomes give the same
// schedule.
import { evaluateJobIf, type NeedResult, type PlannedJob, planJob } from "./job-plan.js";
import { combineLegs, jobsInOrder, transitiveNeeds } from "./run-plan.js";
import type { Workflow, WorkflowJob } from "./workflow.js";

export interface ScheduleOptions {
  /** The github context of the run. */
  readonly github: Readonly<Record<string, unknown>>;
  readonly vars?: Readonly<Record<string, string>>;
  /** Run only this job and what it needs, if the workflow has it; otherwise every job. */
  readonly only?: string;
  /** Keep only matrix legs whose values match (as text). */
  readonly matrixFilter?: Readonly<Record<string, string>>;
  /** Where each runs-on label runs (exec's --label NAME=TARGET); a leg runs where its first label points. */
  readonly targets: Readonly<Record<string, string>>;
}

/** A leg's outcome, as the caller reports it. */
export interface LegOutcome {
  readonly result: "success" | "failure" | "cancelled";
  readonly outputs: Readonly<Record<string, string>>;
}

/** What to do next. `name` is how the job or leg is shown: "<workflow> / <job or leg name>". */
export type Decision =
  /** Run this leg on `target`, then report its outcome with finished(). */
  | { readonly kind: "run"; readonly name: string; readonly leg: PlannedJob; readonly target: string }
  /** The job's if: or its matrix could not be evaluated: it fails without running. */
  | { readonly kind: "invalid"; readonly name: string; readonly reason: string }
  /** The job does not run: its if: is false, or a job it needs did not succeed. */
  | { readonly kind: "skipped"; readonly name: string; readonly note: string }
  /** The leg has no runner: no target serves every one of its runs-on labels. */
  | { readonly kind: "no-runner"; readonly name: string; readonly hint: string }
  /** The leg is cancelled before it started: another leg failed (fail-fast), or the run was stopped. */
  | { readonly kind: "cancelled"; readonly name: string; readonly note: string };

/** next() was called while a leg it handed out has no outcome yet: a defect in the caller. */
export class ScheduleOrderError extends Error {
  override readonly name = "ScheduleOrderError";
  readonly code = "workflow.schedule-order";
  constructor(leg: string) {
    super(
      `the run schedule was asked for the next step while "${leg}" has no outcome yet; report it with finished() first`,
    );
  }
}

interface CurrentJob {
  readonly job: WorkflowJob;
  readonly legs: readonly PlannedJob[];
  next: number;
  readonly results: NeedResult[];
  failFast: boolean;
}

export class RunSchedule {
  readonly #w: Workflow;
  readonly #o: ScheduleOptions;
  readonly #jobs: readonly WorkflowJob[];
  #nextJob = 0;
  readonly #results = new Map<string, NeedResult>();
  /** Jobs with a continue-on-error leg: their failure counts as success for the jobs after them. */
  readonly #continueOnError = new Set<string>();
  #current: CurrentJob | undefined;
  #running: { readonly name: string; readonly leg: PlannedJob } | undefined;

  constructor(workflow: Workflow, opts: ScheduleOptions) {
    this.#w = workflow;
    this.#o = opts;
    const only = opts.only !== undefined && workflow.jobs.some((j) => j.id === opts.only) ? opts.only : undefined;
    this.#jobs = jobsInOrder(workflow, only) ?? [];
  }

  /** Each job's result so far (what `needs` of later jobs see). */
  get results(): ReadonlyMap<string, NeedResult> {
    return this.#results;
  }

  /**
   * The next step, or undefined when the workflow is done. `cancelled`: the run was asked to stop
   * (legs not started yet are cancelled; jobs whose if: does not say always() are skipped).
   */
  next(cancelled: boolean): Decision | undefined {
    if (this.#running) throw new ScheduleOrderError(this.#running.name);
    for (;;) {
      const current = this.#current;
      if (current) {
        const leg = current.legs[current.next];
        if (leg) {
          current.next += 1;
          return this.#legDecision(current, leg, cancelled);
        }
        this.#results.set(
          current.job.id,
          current.results.length > 0 ? combineLegs(current.results) : { result: "skipped", outputs: {} },
        );
        this.#current = undefined;
      }
      const job = this.#jobs[this.#nextJob];
      if (!job) return undefined;
      this.#nextJob += 1;
      const decided = this.#jobDecision(job, cancelled);
      if (decided) return decided;
    }
  }

  /** The outcome of the leg the last `run` decision handed out. */
  finished(outcome: LegOutcome): void {
    const running = this.#running;
    const current = this.#current;
    if (!running || !current) throw new Error("finished() without a leg handed out by next()");
    this.#running = undefined;
    current.results.push({ result: outcome.result, outputs: outcome.outputs });
    const failFast = (running.leg.contexts.strategy as Record<string, unknown> | null)?.["fail-fast"];
    if (
      outcome.result === "failure" &&
      !running.leg.spec.continueOnError &&
      failFast !== false &&
      current.legs.length > 1
    )
      current.failFast = true;
  }

  /** Whether the job runs at all, and its legs; a decision when it does not. */
  #jobDecision(job: WorkflowJob, cancelled: boolean): Decision | undefined {
    const w = this.#w;
    const name = `${w.name} / ${job.id}`;
    const needs: Record<string, NeedResult> = {};
    for (const n of job.needs) needs[n] = this.#results.get(n) ?? { result: "skipped", outputs: {} };
    const planCtx = { github: this.#o.github, vars: this.#o.vars ?? {}, needs };
    let runIt: boolean;
    try {
      runIt = evaluateJobIf(w, job, planCtx, {
        upstream: transitiveNeeds(w, job.id).map((id) => this.#effective(id)),
        cancelled,
      });
    } catch (err) {
      this.#results.set(job.id, { result: "failure", outputs: {} });
      return { kind: "invalid", name, reason: messageOf(err) };
    }
    if (!runIt) {
      this.#results.set(job.id, { result: "skipped", outputs: {} });
      return { kind: "skipped", name, note: job.needs.length > 0 ? `needs ${job.needs.join(", ")}` : "if: false" };
    }
    let legs: PlannedJob[];
    try {
      legs = planJob(w, job, planCtx, { matrixFilter: this.#o.matrixFilter });
    } catch (err) {
      this.#results.set(job.id, { result: "failure", outputs: {} });
      return { kind: "invalid", name, reason: messageOf(err) };
    }
    this.#current = { job, legs, next: 0, results: [], failFast: false };
    return undefined;
  }

  #legDecision(current: CurrentJob, leg: PlannedJob, cancelled: boolean): Decision {
    const name = `${this.#w.name} / ${leg.spec.job.name}`;
    if (leg.spec.continueOnError) this.#continueOnError.add(current.job.id);
    const targets = this.#o.targets;
    const target =
      leg.runsOn.length > 0 && leg.runsOn.every((l) => l in targets) ? targets[leg.runsOn[0] ?? ""] : undefined;
    if (target === undefined) {
      const missing = leg.runsOn.filter((l) => !(l in targets));
      const hint =
        missing.length > 0
          ? `no --label for runs-on ${missing.join(", ")}; add --label ${missing[0]}=host to run it here`
          : "the job has no runs-on";
      return { kind: "no-runner", name, hint };
    }
    if (current.failFast || cancelled) {
      current.results.push({ result: "cancelled", outputs: {} });
      return { kind: "cancelled", name, note: current.failFast ? "fail-fast: another leg failed" : "cancelled" };
    }
    this.#running = { name, leg };
    return { kind: "run", name, leg, target };
  }

  /** A job's result as the status functions of the jobs after it see it. */
  #effective(id: string): NeedResult["result"] {
    const r = this.#results.get(id)?.result ?? "skipped";
    return r === "failure" && this.#continueOnError.has(id) ? "success" : r;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
