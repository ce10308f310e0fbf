// One step, the way GitHub's runner does it: env (global, enclosing actions', the step's), name,
// condition with the status functions, timeout, cancellation (a running step whose condition
// still holds after a cancel keeps running), continue-on-error, the steps context. `run:` scripts
// are executed here; `uses:` goes to uses-step.ts.
import { randomUUID } from "node:crypto";
import { posix } from "node:path";
import type { StepSpec } from "../contract/job-request.js";
import { FileNotFoundError } from "../executor/executor.js";
import { withTimeout } from "../lifecycle/abort.js";
import {
  coerceString,
  evaluateBoolean,
  evaluateCondition,
  evaluateNumber,
  evaluateString,
  evaluateStringMap,
  evaluateToken,
  type Scope,
} from "../workflow/expressions.js";
import { createFileCommands, type FileCommandPaths, readFileCommands } from "./file-commands.js";
import { processEnv } from "./process-env.js";
import type { Conclusion, Frame, StepRecord } from "./runtime.js";
import { planShell, ShellError, shellArgv } from "./shell.js";
import { annotate, StepOutput } from "./step-output.js";
import { runUsesStep } from "./uses-step.js";

/** What running a step's body produced. */
export interface StepBody {
  readonly result: "success" | "failure" | "cancelled";
  readonly outputs: Readonly<Record<string, string>>;
}

/** What a step body needs besides its spec. */
export interface StepCall {
  readonly frame: Frame;
  /** The step's env context (global, enclosing actions', its own). */
  readonly env: Readonly<Record<string, string>>;
  /** The step's own evaluated env (for `uses:` steps, passed down to the action). */
  readonly stepEnv: Readonly<Record<string, string>>;
  readonly name: string;
  readonly signal: AbortSignal;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Evaluates with the frame's contexts and functions, hashFiles() included. */
export async function evaluateIn<T>(
  frame: Frame,
  env: Readonly<Record<string, string>>,
  f: (scope: Scope) => T,
  signal: AbortSignal,
): Promise<T> {
  return frame.job.hashFiles.withHashFiles((fns) => f(frame.scope(env, fns)), signal);
}

function defaultName(step: StepSpec, frame: Frame, env: Readonly<Record<string, string>>): string {
  if (step.kind === "uses") return `Run ${step.uses}`;
  let text: string;
  try {
    text = evaluateString(step.run, frame.scope(env));
  } catch {
    text = typeof step.run === "string" ? step.run : "";
  }
  const first = text.split("\n").find((l) => l.trim() !== "") ?? "";
  return `Run ${first.trim()}`;
}

/** Runs the steps of a scope in order; each decides for itself whether it runs. */
export async function runSteps(frame: Frame, steps: readonly StepSpec[], top: boolean): Promise<void> {
  for (const [i, step] of steps.entries()) {
    if (top) frame.index = i;
    await runStep(frame, step, top);
  }
}

/** One step; emits step-started/step-finished when it is a job step (top), group lines otherwise. */
export async function runStep(frame: Frame, step: StepSpec, top: boolean): Promise<StepRecord> {
  const job = frame.job;
  const index = frame.index;
  // hashFiles() may list and read a large workspace: GitHub allows it 120 s too.
  const setupSignal = withTimeout(120_000, job.signal);

  let env: Record<string, string> = frame.baseEnv();
  let stepEnv: Record<string, string> = {};
  let setupError: string | undefined;
  try {
    stepEnv = await evaluateIn(frame, env, (s) => evaluateStringMap(step.env, s), setupSignal);
    env = { ...env, ...stepEnv };
  } catch (err) {
    setupError = `the step's env could not be evaluated: ${errorMessage(err)}`;
  }

  let name = defaultName(step, frame, env);
  if (step.name !== undefined)
    try {
      const n = coerceString(evaluateToken(step.name, frame.scope(env)));
      if (n.trim() !== "") name = n;
    } catch {
      // the display name is best effort, as on GitHub
    }

  if (top) job.log.event({ kind: "step-started", step: index, stage: frame.stage, name });
  else frame.line(`##[group]${name}`);

  const finish = (
    outcome: Conclusion,
    conclusion: Conclusion,
    outputs: Readonly<Record<string, string>>,
  ): StepRecord => {
    const record: StepRecord = { outputs, outcome, conclusion };
    frame.steps.set(step.id, record);
    if (conclusion === "failure") {
      frame.fail();
      if (top) job.firstFailure ??= name;
    }
    if (top)
      job.log.event({
        kind: "step-finished",
        step: index,
        stage: frame.stage,
        outcome,
        conclusion,
        outputs: { ...outputs },
      });
    else frame.line("##[endgroup]");
    job.hashFiles.reset();
    return record;
  };

  if (setupError) {
    annotate(frame, "error", setupError);
    return finish("failure", "failure", {});
  }

  let run: boolean;
  try {
    run = await evaluateIn(frame, env, (s) => evaluateCondition(step.if, s), setupSignal);
  } catch (err) {
    annotate(frame, "error", `the step's condition \`if: ${step.if}\` could not be evaluated: ${errorMessage(err)}`);
    return finish("failure", "failure", {});
  }
  if (!run) return finish("skipped", "skipped", {});

  let timeoutMinutes = 0;
  if (step.timeoutMinutes !== undefined)
    try {
      timeoutMinutes = await evaluateIn(
        frame,
        env,
        (s) => evaluateNumber(step.timeoutMinutes ?? 0, s, "timeout-minutes"),
        setupSignal,
      );
    } catch (err) {
      annotate(frame, "error", `An error occurred when attempting to determine the step timeout: ${errorMessage(err)}`);
    }

  const stop = stepSignal(frame, step, env, timeoutMinutes);
  let body: StepBody;
  try {
    const call: StepCall = { frame, env, stepEnv, name, signal: stop.signal };
    body = step.kind === "run" ? await runScript(call, step, top) : await runUsesStep(call, step);
  } catch (err) {
    annotate(frame, "error", errorMessage(err));
    body = { result: "failure", outputs: {} };
  } finally {
    stop.dispose();
  }
  if (stop.timedOut()) {
    annotate(frame, "error", `The action '${name}' has timed out after ${timeoutMinutes} minutes.`);
    body = { ...body, result: "failure" };
  } else if (stop.signal.aborted && body.result !== "success") body = { ...body, result: "cancelled" };

  let conclusion: Conclusion = body.result;
  if (body.result === "failure" && step.continueOnError !== undefined)
    try {
      if (evaluateBoolean(step.continueOnError, frame.scope(env))) conclusion = "success";
    } catch (err) {
      annotate(frame, "error", `continue-on-error could not be evaluated: ${errorMessage(err)}`);
    }
  return finish(body.result, conclusion, body.outputs);
}

/**
 * The signal a step runs under: its timeout, the enclosing `uses:` step's signal, and the job's
 * cancellation, unless its condition still holds once the job is cancelled (then it gets the
 * cancel timeout instead, as on GitHub).
 */
function stepSignal(frame: Frame, step: StepSpec, env: Readonly<Record<string, string>>, timeoutMinutes: number) {
  const job = frame.job;
  const controller = new AbortController();
  const timeout = timeoutMinutes > 0 ? AbortSignal.timeout(timeoutMinutes * 60_000) : undefined;
  const onTimeout = () => controller.abort(new Error("step timeout"));
  const onCancel = () => {
    let stillRuns = false;
    try {
      stillRuns = evaluateCondition(step.if, frame.scope(env));
    } catch {
      stillRuns = false;
    }
    if (!stillRuns) controller.abort(job.signal.reason);
    else AbortSignal.timeout(job.cancelTimeoutMs).addEventListener("abort", () => controller.abort(job.signal.reason));
  };
  const outer = frame.signal;
  const onOuter = () => controller.abort(outer?.reason);
  timeout?.addEventListener("abort", onTimeout, { once: true });
  if (job.signal.aborted) onCancel();
  else job.signal.addEventListener("abort", onCancel, { once: true });
  if (outer?.aborted) onOuter();
  else outer?.addEventListener("abort", onOuter, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timeout?.aborted === true,
    dispose: () => {
      job.signal.removeEventListener("abort", onCancel);
      outer?.removeEventListener("abort", onOuter);
      timeout?.removeEventListener("abort", onTimeout);
    },
  };
}

/** Runs a `run:` step's script with its shell, then reads its file commands. */
async function runScript(call: StepCall, step: Extract<StepSpec, { kind: "run" }>, top: boolean): Promise<StepBody> {
  const { frame, env, signal } = call;
  const job = frame.job;
  const scope = frame.scope(env);
  const script = await evaluateIn(frame, env, (s) => evaluateString(step.run, s), signal);
  // defaults.run applies to the job's own steps, not to the steps of composite actions.
  const shell = step.shell !== undefined ? evaluateString(step.shell, scope) : top ? job.defaultShell : undefined;
  const wd =
    step.workingDirectory !== undefined
      ? evaluateString(step.workingDirectory, scope)
      : top
        ? job.defaultWorkingDirectory
        : undefined;
  const cwd = resolvePath(job.paths.workspace, wd);

  let plan: ReturnType<typeof planShell>;
  try {
    plan = planShell(shell, script, job.facts);
  } catch (err) {
    if (err instanceof ShellError) {
      annotate(frame, "error", err.message);
      return { result: "failure", outputs: {} };
    }
    throw err;
  }
  frame.line(`##[group]${call.name}`);
  for (const l of script.replace(/\n$/, "").split("\n")) frame.line(l);
  frame.line(`shell: ${plan.display}`);
  const shownEnv = Object.entries(call.stepEnv);
  if (shownEnv.length > 0) {
    frame.line("env:");
    for (const [k, v] of shownEnv) frame.line(`  ${k}: ${v}`);
  }
  frame.line("##[endgroup]");

  const path = `${job.paths.temp}/${randomUUID()}${plan.extension}`;
  await job.executor.writeFile(path, plan.script);
  return await runProcess(call, shellArgv(plan, path), cwd, step.id);
}

/** A path relative to the workspace (or absolute), normalized, on the executor (POSIX). */
export function resolvePath(workspace: string, p: string | undefined): string {
  if (p === undefined || p.trim() === "") return workspace;
  const full = posix.normalize(p.startsWith("/") ? p : `${workspace}/${p}`);
  return full.length > 1 ? full.replace(/\/+$/, "") : full;
}

export interface ProcessOptions {
  /** Extra variables for the process (INPUT_*, STATE_*). */
  readonly extraEnv?: Readonly<Record<string, string>>;
  /** Receives the state saved with GITHUB_STATE / save-state. */
  readonly onState?: (state: Readonly<Record<string, string>>) => void;
}

/**
 * Runs one process of a step with its file commands: workflow commands from its output, then
 * GITHUB_ENV, GITHUB_PATH, GITHUB_OUTPUT, GITHUB_STATE and the step summary.
 */
export async function runProcess(
  call: StepCall,
  argv: readonly string[],
  cwd: string,
  action: string,
  opts: ProcessOptions = {},
): Promise<StepBody> {
  const { frame, env, signal } = call;
  const job = frame.job;
  const files: FileCommandPaths = await createFileCommands(job);
  const out = new StepOutput(frame, env);
  let exitCode: number | null;
  try {
    const r = await job.executor.run({
      argv,
      env: { ...processEnv(frame, env, files, action), ...opts.extraEnv },
      cwd,
      signal,
      onLine: out.onLine,
    });
    exitCode = r.exitCode;
  } catch (err) {
    if (err instanceof FileNotFoundError) {
      annotate(
        frame,
        "error",
        `An error occurred trying to start process '${argv[0]}' with working directory '${cwd}'. No such file or directory`,
      );
      return { result: "failure", outputs: {} };
    }
    throw err;
  }
  const results = await readFileCommands(job, files);
  for (const e of results.errors) annotate(frame, "error", e);
  for (const [k, v] of results.env) {
    if (k.toUpperCase() === "NODE_OPTIONS") {
      annotate(frame, "error", "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.");
      continue;
    }
    job.env = { ...job.env, [k]: v };
  }
  for (const p of results.path) job.prependPath = [p, ...job.prependPath.filter((x) => x !== p)];
  const outputs: Record<string, string> = { ...out.outputs };
  for (const [k, v] of results.output) outputs[k] = v;
  const state: Record<string, string> = { ...out.state };
  for (const [k, v] of results.state) state[k] = v;
  if (Object.keys(state).length > 0) opts.onState?.(state);
  if (results.summaryError) annotate(frame, "error", results.summaryError);
  if (results.summary.trim() !== "") {
    frame.line("##[group]Step summary");
    for (const l of results.summary.replace(/\n$/, "").split("\n")) frame.line(l);
    frame.line("##[endgroup]");
  }
  if (signal.aborted) return { result: "cancelled", outputs };
  if (exitCode !== 0) {
    annotate(frame, "error", `Process completed with exit code ${exitCode ?? "(killed by a signal)"}.`);
    return { result: "failure", outputs };
  }
  if (out.failed || results.errors.length > 0) return { result: "failure", outputs };
  return { result: "success", outputs };
}
