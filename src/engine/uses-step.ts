// `uses:` steps: actions/checkout natively, composite actions (their steps in a scope of their
// own, inputs and outputs), JavaScript actions with pre and post on the Node.js major they run on
// (the machine's own node or one delivered to it: action-node.ts), and a failing step with a
// reason for anything else (Docker, missing or invalid actions).
import type { StepSpec } from "../contract/job-request.js";
import type { ActionDefinition } from "../workflow/action-file.js";
import { evaluateCondition, evaluateString, evaluateStringMap } from "../workflow/expressions.js";
import { findNode, nodeMajorFor } from "./action-node.js";
import {
  type ActionReference,
  ActionUnavailableError,
  dockerUnsupported,
  fetchRemoteAction,
  loadAction,
  parseUses,
} from "./action-source.js";
import { isCheckout, runCheckout } from "./checkout.js";
import type { Conclusion, Frame } from "./runtime.js";
import { annotate } from "./step-output.js";
import {
  errorMessage,
  evaluateIn,
  resolvePath,
  runProcess,
  runSteps,
  type StepBody,
  type StepCall,
} from "./step-runner.js";

type UsesStep = Extract<StepSpec, { kind: "uses" }>;

/** A resolved action: where it is on the executor and what its metadata says. */
interface Resolved {
  readonly dir: string;
  readonly def: ActionDefinition;
  readonly repository: string;
  readonly ref: string;
}

async function resolve(frame: Frame, ref: ActionReference, uses: string, signal: AbortSignal): Promise<Resolved> {
  const job = frame.job;
  switch (ref.kind) {
    case "invalid":
      throw new ActionUnavailableError(ref.reason);
    case "docker":
      throw dockerUnsupported(uses);
    case "local": {
      const dir = resolvePath(job.paths.workspace, ref.path);
      const repository = String(job.contexts.github["repository"] ?? "");
      return { dir, def: await loadAction(job, dir, ref.path), repository, ref: "" };
    }
    case "remote": {
      const dir = await fetchRemoteAction(job, ref, signal, job.fetchedActions);
      return { dir, def: await loadAction(job, dir, uses), repository: `${ref.owner}/${ref.repo}`, ref: ref.ref };
    }
  }
}

/** The action's inputs: `with:` values, else evaluated defaults; unexpected ones are passed with a warning. */
async function inputsFor(call: StepCall, step: UsesStep, def: ActionDefinition): Promise<Record<string, string>> {
  const given = await evaluateIn(call.frame, call.env, (s) => evaluateStringMap(step.with, s), call.signal);
  const byLower = new Map(Object.entries(given).map(([k, v]) => [k.toLowerCase(), v]));
  const inputs: Record<string, string> = {};
  for (const input of def.inputs) {
    const v = byLower.get(input.id.toLowerCase());
    byLower.delete(input.id.toLowerCase());
    if (v !== undefined) inputs[input.id] = v;
    else if (input.default !== undefined) {
      const d = input.default;
      inputs[input.id] = await evaluateIn(call.frame, call.env, (s) => evaluateString(d, s), call.signal);
    } else inputs[input.id] = "";
  }
  if (byLower.size > 0) {
    const unexpected = [...byLower.keys()];
    annotate(
      call.frame,
      "warning",
      `Unexpected input(s) '${unexpected.join("', '")}', valid inputs are ['${def.inputs.map((i) => i.id).join("', '")}']`,
    );
    for (const [k, v] of Object.entries(given)) if (unexpected.includes(k.toLowerCase())) inputs[k] = v;
  }
  return inputs;
}

export async function runUsesStep(call: StepCall, step: UsesStep): Promise<StepBody> {
  const ref = parseUses(step.uses);
  if (ref.kind === "remote" && isCheckout(ref)) return await runCheckout(call, step);
  let resolved: Resolved;
  try {
    resolved = await resolve(call.frame, ref, step.uses, call.signal);
  } catch (err) {
    if (err instanceof ActionUnavailableError) {
      annotate(call.frame, "error", err.message);
      return { result: "failure", outputs: {} };
    }
    throw err;
  }
  const { def } = resolved;
  const inputs = await inputsFor(call, step, def);
  switch (def.runs.using) {
    case "docker":
      annotate(call.frame, "error", dockerUnsupported(step.uses).message);
      return { result: "failure", outputs: {} };
    case "composite":
      return await runComposite(call, step, resolved, inputs);
    default:
      return await runNodeMain(call, resolved, inputs);
  }
}

async function runComposite(
  call: StepCall,
  step: UsesStep,
  r: Resolved,
  inputs: Record<string, string>,
): Promise<StepBody> {
  if (r.def.runs.using !== "composite") throw new TypeError("not a composite action");
  if (call.frame.depth >= 9) {
    annotate(
      call.frame,
      "error",
      `${step.uses}: composite actions nest more than 9 deep; is an action calling itself?`,
    );
    return { result: "failure", outputs: {} };
  }
  const child = call.frame.child({
    inputs,
    envLayer: { ...call.frame.envLayer, ...call.stepEnv },
    action: { path: r.dir, repository: r.repository, ref: r.ref },
    actionName: step.id,
    signal: call.signal,
  });
  await runSteps(child, r.def.runs.steps, false);
  const outputs: Record<string, string> = {};
  for (const o of r.def.outputs) {
    if (o.value === undefined) continue;
    const v = o.value;
    try {
      outputs[o.id] = await evaluateIn(child, child.baseEnv(), (s) => evaluateString(v, s), call.signal);
    } catch (err) {
      annotate(
        call.frame,
        "error",
        `the output '${o.id}' of ${step.uses} could not be evaluated: ${errorMessage(err)}`,
      );
    }
  }
  const result = child.status === "success" ? "success" : child.status === "cancelled" ? "cancelled" : "failure";
  return { result, outputs };
}

function inputEnv(inputs: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.replace(/ /g, "_").toUpperCase()}`] = v;
  return env;
}

function stateEnv(state: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(state)) env[`STATE_${k}`] = v;
  return env;
}

/** Runs one entry point of a JavaScript action with the node of the major it runs on. */
async function runNodeEntry(
  call: StepCall,
  r: Resolved,
  entry: string,
  inputs: Readonly<Record<string, string>>,
  state: Readonly<Record<string, string>>,
  onState: (s: Readonly<Record<string, string>>) => void,
): Promise<StepBody> {
  const job = call.frame.job;
  const runs = r.def.runs;
  if (runs.using === "composite" || runs.using === "docker") throw new TypeError("not a JavaScript action");
  const choice = nodeMajorFor(runs.using, call.env);
  if (choice.warning && call.frame.stage !== "post")
    annotate(call.frame, "warning", `${r.repository || "The action"}: ${choice.warning}`);
  const node = await findNode(job, choice.major, call.signal);
  if (!node.found) {
    annotate(
      call.frame,
      "error",
      `${r.repository || "the action"} is a JavaScript action (${runs.using}) and needs Node.js ${choice.major}, which this machine does not have: ${node.reason}`,
    );
    return { result: "failure", outputs: {} };
  }
  if (job.debug) call.frame.line(`##[debug]Node.js ${choice.major}: ${node.describe}`);
  return await runProcess(call, [node.path, `${r.dir}/${entry}`], job.paths.workspace, call.frame.actionName ?? "", {
    extraEnv: { ...job.runtimeEnv, ...inputEnv(inputs), ...stateEnv(state) },
    onState,
  });
}

async function runNodeMain(call: StepCall, r: Resolved, inputs: Record<string, string>): Promise<StepBody> {
  const runs = r.def.runs;
  if (runs.using === "composite" || runs.using === "docker") throw new TypeError("not a JavaScript action");
  const job = call.frame.job;
  let state: Record<string, string> = { ...(job.preState.get(call.frame.index) ?? {}) };
  const body = await runNodeEntry(call, r, runs.main, inputs, state, (s) => {
    state = { ...state, ...s };
  });
  if (runs.post) {
    const post = runs.post;
    const frame = call.frame;
    job.posts.push({
      index: frame.index,
      name: `Post ${call.name}`,
      condition: runs.postIf ?? "always()",
      frame,
      run: async (postFrame, signal): Promise<Conclusion> => {
        const postCall: StepCall = { ...call, frame: postFrame, signal };
        return (await runNodeEntry(postCall, r, post, inputs, state, () => {})).result;
      },
    });
  }
  return body;
}

/**
 * Pre stages of the job's JavaScript actions that have one (remote actions only: local ones are
 * not checked out yet, as on GitHub). Fetching happens here, at job start, as GitHub does;
 * a fetch that fails is reported when its step runs.
 */
export async function runPreSteps(frame: Frame, steps: readonly StepSpec[]): Promise<void> {
  const job = frame.job;
  for (const [index, step] of steps.entries()) {
    if (step.kind !== "uses") continue;
    const ref = parseUses(step.uses);
    if (ref.kind !== "remote" || isCheckout(ref)) continue;
    let r: Resolved;
    try {
      r = await resolve(frame, ref, step.uses, job.signal);
    } catch {
      continue;
    }
    const runs = r.def.runs;
    if (runs.using === "composite" || runs.using === "docker" || !runs.pre) continue;
    const pre = runs.pre;
    frame.index = index;
    frame.stage = "pre";
    await runPre(frame, step, r, pre, runs.preIf ?? "always()");
  }
  frame.stage = "main";
}

async function runPre(frame: Frame, step: UsesStep, r: Resolved, entry: string, condition: string): Promise<void> {
  const job = frame.job;
  const name = `Pre Run ${step.uses}`;
  job.log.event({ kind: "step-started", step: frame.index, stage: "pre", name });
  const env = frame.baseEnv();
  let result: Conclusion = "skipped";
  try {
    const stepEnv = await evaluateIn(frame, env, (s) => evaluateStringMap(step.env, s), job.signal);
    const fullEnv = { ...env, ...stepEnv };
    const run = await evaluateIn(frame, fullEnv, (s) => evaluateCondition(condition, s), job.signal);
    if (run) {
      const call: StepCall = { frame, env: fullEnv, stepEnv, name, signal: job.signal };
      const inputs = await inputsFor(call, step, r.def);
      const index = frame.index;
      result = (
        await runNodeEntry(call, r, entry, inputs, {}, (s) =>
          job.preState.set(index, { ...(job.preState.get(index) ?? {}), ...s }),
        )
      ).result;
    }
  } catch (err) {
    annotate(frame, "error", errorMessage(err));
    result = "failure";
  }
  if (result === "failure") frame.fail();
  job.log.event({
    kind: "step-finished",
    step: frame.index,
    stage: "pre",
    outcome: result,
    conclusion: result,
    outputs: {},
  });
}
