// Pure: a Forgejo task → a contract JobRequest. The single-job workflow payload becomes the job
// spec, the task context the github context (without any token), and the job token, the runtime
// token and the task's secrets are sealed. Never logs, never reads a clock or the environment.
import { createHash } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { type JobContexts, JobRequest, type JobSpec } from "../../contract/job-request.js";
import { sealSecrets } from "../../contract/sealed-secrets.js";
import { type ForgejoTask, type JsonObject, taskNeeds, taskPayloadText } from "./client.js";
import { TaskRejectedError } from "./errors.js";
import { labelForJob, type RunnerLabel } from "./labels.js";

/** Turns the payload (YAML of a workflow with exactly one job) into the job spec; throws with a sentence. */
export type ParseJob = (payloadYaml: string, options: { readonly fileName: string }) => JobSpec;

export interface ConversionContext {
  /** The instance URL (credentials `address`). */
  readonly instance: string;
  readonly runnerUuid: string;
  /** The event stream this runner instance consumes (JobRequest.replyTo). */
  readonly replyTo: string;
  readonly labels: readonly RunnerLabel[];
  readonly clusterKey: Buffer;
  readonly parseJob: ParseJob;
  readonly nowMs: number;
  /** How long the job may wait in the queue; Forgejo fails tasks running longer than 3 h. */
  readonly startWithinMs?: number;
}

/** Forgejo's ENDLESS_TASK_TIMEOUT default: a task running longer is failed by the server. */
export const FORGEJO_ENDLESS_TASK_MS = 3 * 3_600_000;

/** Context keys Forgejo renamed from gitea_* to forgejo_*: read the new one first. */
function compat(ctx: JsonObject, key: string): string | undefined {
  for (const k of [`forgejo_${key}`, `gitea_${key}`]) {
    const v = ctx[k];
    if (typeof v === "string" && v !== "") return v;
  }
  return undefined;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** Context keys holding credentials: `token`, `*_runtime_token`, `*_id_token_request_token` … */
const isTokenKey = (k: string) => /(^|_)token$/.test(k);

/** The JobRequest id: stable for one task of one instance, so a re-delivered task is the same job. */
export function jobIdForTask(instance: string, taskId: bigint): string {
  const h = createHash("sha256")
    .update(`forgejo\n${instance.replace(/\/+$/, "")}\n${taskId}`)
    .digest();
  h[6] = (h[6]! & 0x0f) | 0x80; // version 8: name-based, custom hash
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

interface PayloadJob {
  readonly key: string;
  readonly body: Record<string, unknown>;
  readonly workflowName: string | undefined;
}

function payloadJob(task: ForgejoTask): { text: string; job: PayloadJob } {
  const text = taskPayloadText(task);
  if (text === undefined || text.trim() === "")
    throw new TaskRejectedError(
      `Forgejo sent task ${task.id} without a workflow; re-run the job, and report it to the Forgejo admin if it happens again.`,
    );
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new TaskRejectedError(
      `The workflow Forgejo sent for task ${task.id} is not valid YAML: ${(err as Error).message.split("\n")[0]}.`,
    );
  }
  const jobs = isRecord(doc) ? doc["jobs"] : undefined;
  const keys = isRecord(jobs) ? Object.keys(jobs) : [];
  if (!isRecord(doc) || !isRecord(jobs) || keys.length !== 1)
    throw new TaskRejectedError(
      `The workflow Forgejo sent for task ${task.id} does not hold exactly one job (found ${keys.length}).`,
    );
  const key = keys[0]!;
  const body = jobs[key];
  if (!isRecord(body)) throw new TaskRejectedError(`Job "${key}" of task ${task.id} is not a mapping.`);
  return { text, job: { key, body, workflowName: str(doc["name"]) } };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `runs-on` as the server evaluated it: a string, a list, or a mapping with `labels`. */
export function runsOnList(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  if (isRecord(value)) return runsOnList(value["labels"]);
  return [];
}

/** The job's one matrix combination: Forgejo stores each dimension as a one-element list. */
export function matrixOf(job: Record<string, unknown>): Record<string, unknown> | null {
  const strategy = job["strategy"];
  const matrix = isRecord(strategy) ? strategy["matrix"] : undefined;
  if (!isRecord(matrix)) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(matrix)) {
    if (k === "include" || k === "exclude") continue;
    out[k] = Array.isArray(v) && v.length === 1 ? v[0] : v;
  }
  return Object.keys(out).length > 0 ? out : null;
}

function strategyOf(job: Record<string, unknown>): Record<string, unknown> {
  const s = isRecord(job["strategy"]) ? job["strategy"] : {};
  // Forgejo serialises these scalars as strings ("true", "5").
  const failFast = s["fail-fast"];
  const maxParallel = Number(s["max-parallel"]);
  return {
    "fail-fast": !(failFast === false || failFast === "false"),
    "job-index": 0,
    "job-total": 1,
    "max-parallel": Number.isInteger(maxParallel) && maxParallel > 0 ? maxParallel : 1,
  };
}

export function toJobRequest(task: ForgejoTask, cx: ConversionContext): JobRequest {
  const { text, job } = payloadJob(task);
  const context: JsonObject = task.context ?? {};

  const runsOn = runsOnList(job.body["runs-on"]);
  if (runsOn.length === 0) throw new TaskRejectedError(`Job "${job.key}" has no runs-on.`);
  const label = labelForJob(runsOn, cx.labels);
  if (!label)
    throw new TaskRejectedError(
      `Job "${job.key}" runs on ${runsOn.map((l) => JSON.stringify(l)).join(", ")}, which this runner no longer serves ` +
        `(its labels are ${cx.labels.map((l) => l.name).join(", ") || "none"}); restart gnomon so that it declares its labels again.`,
    );

  const actionsUrl = compat(context, "default_actions_url");
  if (!actionsUrl)
    throw new TaskRejectedError(
      "The task carries no default actions URL (forgejo_default_actions_url or gitea_default_actions_url), so `uses:` cannot be resolved; upgrade Forgejo.",
    );

  const fileName = str(context["workflow"]) ?? `${job.key}.yml`;
  let spec: JobSpec;
  try {
    spec = cx.parseJob(text, { fileName });
  } catch (err) {
    throw new TaskRejectedError(`The workflow of job "${job.key}" cannot be run: ${(err as Error).message}`, {
      cause: err,
    });
  }

  const github: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(context)) if (!isTokenKey(k)) github[k] = v;

  const jobToken = str(context["token"]) ?? task.secrets["GITHUB_TOKEN"] ?? task.secrets["FORGEJO_TOKEN"];
  const secrets: Record<string, string> = { ...task.secrets };
  if (jobToken) {
    secrets["GITHUB_TOKEN"] = jobToken;
    secrets["GITEA_TOKEN"] ??= jobToken;
    secrets["FORGEJO_TOKEN"] ??= jobToken;
  }
  // Not secrets to the workflow, but credentials: sealed so they never cross the queue in clear.
  const runtimeToken = compat(context, "runtime_token") ?? jobToken;
  if (runtimeToken) secrets["ACTIONS_RUNTIME_TOKEN"] = runtimeToken;
  const idToken = compat(context, "actions_id_token_request_token") ?? str(context["actions_id_token_request_token"]);
  if (idToken) secrets["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = idToken;

  const event = isRecord(context["event"]) ? context["event"] : {};
  const inputs = context["event_name"] === "workflow_dispatch" && isRecord(event["inputs"]) ? event["inputs"] : {};

  const contexts: JobContexts = {
    github,
    vars: { ...task.vars },
    matrix: matrixOf(job.body),
    strategy: strategyOf(job.body),
    needs: taskNeeds(task),
    inputs,
  };

  const id = jobIdForTask(cx.instance, task.id);
  const queuedAt = new Date(cx.nowMs);
  const ref: Record<string, string | number> = { taskId: Number(task.id), job: job.key };
  for (const k of ["run_id", "run_number", "run_attempt", "repository"] as const) {
    const v = str(context[k]);
    if (v) ref[k.replace(/_(\w)/g, (_, c: string) => c.toUpperCase())] = v;
  }

  const request = JobRequest.safeParse({
    v: 1,
    id,
    source: { forge: "forgejo", instance: cx.instance, runner: cx.runnerUuid, ref },
    replyTo: cx.replyTo,
    runsOn: label.runsOn,
    spec,
    contexts,
    secrets: sealSecrets(secrets, cx.clusterKey, id),
    actionsUrl,
    queuedAt: queuedAt.toISOString(),
    startBy: new Date(cx.nowMs + (cx.startWithinMs ?? FORGEJO_ENDLESS_TASK_MS)).toISOString(),
  });
  if (!request.success) {
    const issue = request.error.issues[0];
    throw new TaskRejectedError(
      `Job "${job.key}" of task ${task.id} does not make a valid job request (${issue?.path.join(".")}: ${issue?.message}); this is a bug in gnomon, please report it with the workflow.`,
    );
  }
  return request.data;
}

/** The number of steps Forgejo created rows for: the payload job's non-null `steps` entries. */
export function payloadStepCount(task: ForgejoTask): number {
  try {
    const steps = payloadJob(task).job.body["steps"];
    return Array.isArray(steps) ? steps.filter((s) => s !== null && s !== undefined).length : 0;
  } catch {
    return 0;
  }
}
