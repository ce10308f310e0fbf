// From a workflow job to the contract's JobSpecs: evaluates the parts that are decided before a job
// starts (strategy/matrix, runs-on, name, timeouts, continue-on-error) with the contexts a job has
// then (github, needs, vars, inputs, and per leg matrix and strategy). Pure.
import type { JobContexts, JobSpec } from "../contract/job-request.js";
import type { SerializedToken } from "../contract/template-token.js";
import { WorkflowError } from "./errors.js";
import {
  coerceString,
  evaluateBoolean,
  evaluateCondition,
  evaluateNumber,
  evaluateToken,
  type Json,
  type Scope,
  statusFunctions,
} from "./expressions.js";
import { expandMatrix, filterMatrix, type MatrixCombination } from "./matrix.js";
import type { Workflow, WorkflowJob } from "./workflow.js";

/** The contexts known when a job is planned: what the run has, plus the results of its needs. */
export interface PlanContexts {
  readonly github: Readonly<Record<string, unknown>>;
  readonly vars?: Readonly<Record<string, string>>;
  readonly inputs?: Readonly<Record<string, unknown>>;
  /** Direct needs: job id → { result, outputs }. */
  readonly needs?: Readonly<Record<string, NeedResult>>;
}

export interface NeedResult {
  readonly result: "success" | "failure" | "cancelled" | "skipped";
  readonly outputs: Readonly<Record<string, string>>;
}

/** One leg of a job, ready to run: its spec, the labels it asks for, and its initial contexts. */
export interface PlannedJob {
  readonly spec: JobSpec;
  /** The evaluated `runs-on` labels, in the order written. */
  readonly runsOn: readonly string[];
  readonly contexts: JobContexts;
}

export interface PlanOptions {
  /** Keep only matrix legs whose values match (as text), e.g. { node: "18" }. */
  readonly matrixFilter?: Readonly<Record<string, string>>;
}

const DEFAULT_TIMEOUT_MINUTES = 360;
const DEFAULT_CANCEL_TIMEOUT_MINUTES = 5;

function baseScope(ctx: PlanContexts): Scope {
  return {
    contexts: {
      github: ctx.github,
      vars: ctx.vars ?? {},
      inputs: ctx.inputs ?? {},
      needs: ctx.needs ?? {},
    },
  };
}

function located(workflow: Workflow, job: WorkflowJob, what: string, err: unknown): WorkflowError {
  if (err instanceof WorkflowError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WorkflowError([{ file: workflow.file, message: `jobs.${job.id}.${what}: ${message}` }], { cause: err });
}

/** Expands a job into its legs (one without a matrix). Throws WorkflowError naming the field. */
export function planJob(workflow: Workflow, job: WorkflowJob, ctx: PlanContexts, opts: PlanOptions = {}): PlannedJob[] {
  if (job.uses !== undefined)
    throw new WorkflowError([
      {
        file: workflow.file,
        message: `jobs.${job.id} calls the reusable workflow ${job.uses}, which gnomon does not run yet; inline its jobs into this workflow`,
      },
    ]);
  const scope = baseScope(ctx);
  let strategy: Json = null;
  try {
    strategy = job.strategy === undefined ? null : evaluateToken(job.strategy, scope);
  } catch (err) {
    throw located(workflow, job, "strategy", err);
  }
  const strat = strategy !== null && typeof strategy === "object" && !Array.isArray(strategy) ? strategy : {};
  const matrixValue = strat["matrix"] ?? null;
  let legs: MatrixCombination[] = expandMatrix(matrixValue, { file: workflow.file, job: job.id });
  if (opts.matrixFilter && Object.keys(opts.matrixFilter).length > 0 && matrixValue !== null)
    legs = filterMatrix(legs, opts.matrixFilter);
  const hasMatrix = matrixValue !== null;
  const failFast =
    strat["fail-fast"] === undefined ? true : strat["fail-fast"] !== false && strat["fail-fast"] !== "false";
  const maxParallel = Number(strat["max-parallel"] ?? legs.length) || legs.length;

  return legs.map((matrix, index) => {
    const strategyContext = {
      "fail-fast": failFast,
      "job-index": index,
      "job-total": legs.length,
      "max-parallel": maxParallel,
    };
    const legScope: Scope = {
      contexts: { ...scope.contexts, matrix: hasMatrix ? matrix : {}, strategy: strategyContext },
    };
    const field = <T>(what: string, f: () => T): T => {
      try {
        return f();
      } catch (err) {
        throw located(workflow, job, what, err);
      }
    };
    const displayName = field("name", () =>
      job.name !== undefined
        ? coerceString(evaluateToken(job.name, legScope))
        : hasMatrix && Object.keys(matrix).length > 0
          ? `${job.id} (${Object.values(matrix).map(coerceString).join(", ")})`
          : job.id,
    );
    const runsOn = field("runs-on", () =>
      labelsOf(job.runsOn === undefined ? null : evaluateToken(job.runsOn, legScope)),
    );
    const timeoutMinutes = field("timeout-minutes", () =>
      job.timeoutMinutes === undefined
        ? DEFAULT_TIMEOUT_MINUTES
        : evaluateNumber(job.timeoutMinutes, legScope, "timeout-minutes"),
    );
    const cancelTimeoutMinutes = field("cancel-timeout-minutes", () =>
      job.cancelTimeoutMinutes === undefined
        ? DEFAULT_CANCEL_TIMEOUT_MINUTES
        : evaluateNumber(job.cancelTimeoutMinutes, legScope, "cancel-timeout-minutes"),
    );
    const continueOnError = field("continue-on-error", () =>
      job.continueOnError === undefined ? false : evaluateBoolean(job.continueOnError, legScope),
    );
    const defined = (t: SerializedToken | undefined): SerializedToken[] => (t === undefined ? [] : [t]);
    const spec: JobSpec = {
      workflow: { name: workflow.name, file: workflow.file },
      job: { id: job.id, name: displayName },
      env: [...defined(workflow.env), ...defined(job.env)],
      defaults: [...defined(workflow.defaults), ...defined(job.defaults)],
      steps: [...job.steps],
      outputs: job.outputs,
      timeoutMinutes: timeoutMinutes > 0 ? timeoutMinutes : DEFAULT_TIMEOUT_MINUTES,
      cancelTimeoutMinutes: cancelTimeoutMinutes > 0 ? cancelTimeoutMinutes : DEFAULT_CANCEL_TIMEOUT_MINUTES,
      continueOnError,
      container: job.container,
      services: job.services,
    };
    const contexts: JobContexts = {
      github: { ...ctx.github, job: job.id },
      vars: { ...(ctx.vars ?? {}) },
      matrix: hasMatrix ? matrix : null,
      strategy: strategyContext,
      needs: { ...(ctx.needs ?? {}) },
      inputs: { ...(ctx.inputs ?? {}) },
    };
    return { spec, runsOn, contexts };
  });
}

/** `runs-on` as labels: a string, a sequence of strings, or a mapping with `labels` (and `group`). */
export function labelsOf(v: Json): string[] {
  if (v === null) return [];
  if (typeof v === "string") return v.trim() === "" ? [] : [v.trim()];
  if (Array.isArray(v)) return v.flatMap(labelsOf);
  if (typeof v === "object") return labelsOf(v["labels"] ?? null);
  return [coerceString(v)];
}

/** The results a job's status functions see: its transitive needs. */
export interface JobStatusInput {
  /** Results of every job this one depends on, directly or through others. */
  readonly upstream: readonly NeedResult["result"][];
  /** The run as a whole was cancelled. */
  readonly cancelled: boolean;
}

/**
 * Evaluates a job's `if` (GitHub: a job runs by default only when every job it depends on,
 * directly or not, succeeded; `failure()` is true when one of them failed).
 */
export function evaluateJobIf(
  workflow: Workflow,
  job: WorkflowJob,
  ctx: PlanContexts,
  status: JobStatusInput,
): boolean {
  const allSucceeded = status.upstream.every((r) => r === "success");
  const anyFailed = status.upstream.some((r) => r === "failure");
  const scope: Scope = {
    ...baseScope(ctx),
    functions: statusFunctions({
      success: () => !status.cancelled && allSucceeded,
      failure: () => anyFailed,
      cancelled: () => status.cancelled,
    }),
  };
  try {
    return evaluateCondition(job.if, scope);
  } catch (err) {
    throw located(workflow, job, "if", err);
  }
}
