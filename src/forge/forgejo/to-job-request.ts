// A Forgejo task → a contract JobRequest. The single-job workflow payload is parsed by src/workflow
// into the job spec (on its parser thread, within the document limits), the task context becomes
// the github context (without any token), and the job token, the runtime token and the task's
// secrets are sealed. Never logs, never reads a clock or the environment.
import { createHash } from "node:crypto";
import { JobRequest } from "../../contract/job-request.js";
import { sealSecrets } from "../../contract/sealed-secrets.js";
import { toError } from "../../lifecycle/to-error.js";
import { boundedToJs, parseBoundedYaml } from "../../workflow/bounded-yaml.js";
import { DOCUMENT_LIMITS, nestsDeeperThan } from "../../workflow/document-limits.js";
import { WorkflowError } from "../../workflow/errors.js";
import type { PlannedJob } from "../../workflow/job-plan.js";
import { readSingleJobWorkflow } from "../../workflow/parse-thread.js";
import { planSingleJob, singleJobShouldRun } from "../../workflow/single-job.js";
import { type ForgejoTask, type JsonObject, taskNeeds, taskPayloadText } from "./client.js";
import { JobSkippedError, TaskRejectedError } from "./errors.js";
import { labelForJob, type RunnerLabel } from "./labels.js";

export interface ConversionContext {
  /** The instance URL (credentials `address`). */
  readonly instance: string;
  readonly runnerUuid: string;
  /** The event stream this runner instance consumes (JobRequest.replyTo). */
  readonly replyTo: string;
  readonly labels: readonly RunnerLabel[];
  readonly clusterKey: Buffer;
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

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

interface Payload {
  /** The payload's text; src/workflow undoes Forgejo's quirks. */
  readonly text: string;
  /** The workflow's file, as problems cite it. */
  readonly file: string;
  readonly jobKey: string;
  /** Non-null entries of the job's steps: Forgejo made one step row per entry. */
  readonly stepCount: number;
}

/**
 * The workflow's file as problems should cite it: its path in the repository from `workflow_ref`
 * (newer servers: `owner/repo/.forgejo/workflows/ci.yml@refs/heads/main`) where that agrees with
 * `workflow` (the file name), else that file name; `workflow_payload` when the task names neither.
 */
export function workflowFileOf(context: JsonObject): string {
  const name = str(context["workflow"]);
  const ref = str(context["workflow_ref"]);
  const repository = str(context["repository"]);
  if (ref && repository && ref.startsWith(`${repository}/`)) {
    const path = ref.slice(repository.length + 1).replace(/@[^@]*$/, "");
    if (/^\.(forgejo|gitea|github)\/workflows\/[^/]+$/.test(path) && (!name || path.endsWith(`/${name}`))) return path;
  }
  return name ?? "workflow_payload";
}

/** The payload, its one job's key and step count. */
export function readPayload(task: ForgejoTask): Payload {
  const text = taskPayloadText(task);
  if (text === undefined || text.trim() === "")
    throw new TaskRejectedError(
      `Forgejo sent task ${task.id} without a workflow; re-run the job, and report it to the Forgejo admin if it happens again.`,
    );
  const file = workflowFileOf(task.context ?? {});
  let doc: unknown;
  try {
    // Within the limits, so this costs what the text costs: nothing is expanded beyond them.
    doc = boundedToJs(parseBoundedYaml(file, text));
  } catch (err) {
    if (!(err instanceof WorkflowError)) throw err;
    throw new TaskRejectedError(`The workflow Forgejo sent for task ${task.id} cannot be read: ${err.message}`, {
      cause: err,
    });
  }
  const jobs = isRecord(doc) ? doc["jobs"] : undefined;
  const keys = isRecord(jobs) ? Object.keys(jobs) : [];
  if (!isRecord(jobs) || keys.length !== 1)
    throw new TaskRejectedError(
      `The workflow Forgejo sent for task ${task.id} does not hold exactly one job (found ${keys.length}).`,
    );
  const jobKey = keys[0]!;
  const job = jobs[jobKey];
  const steps: unknown = isRecord(job) ? job["steps"] : undefined;
  const stepCount = Array.isArray(steps) ? steps.filter((x) => x !== null && x !== undefined).length : 0;
  return { text, file, jobKey, stepCount };
}

/** The number of steps Forgejo created rows for (0 when the payload is unreadable). */
export function payloadStepCount(task: ForgejoTask): number {
  try {
    return readPayload(task).stepCount;
  } catch {
    return 0;
  }
}

/**
 * The secrets a task's job gets, sealed: the task's secrets, with GITHUB_TOKEN (and its aliases) set
 * to the job token, and the runtime and ID-token request tokens, which are credentials too.
 */
export function taskSecrets(task: ForgejoTask): Record<string, string> {
  const context: JsonObject = task.context ?? {};
  const jobToken = str(context["token"]) ?? task.secrets["GITHUB_TOKEN"] ?? task.secrets["FORGEJO_TOKEN"];
  const secrets: Record<string, string> = { ...task.secrets };
  if (jobToken) {
    secrets["GITHUB_TOKEN"] = jobToken;
    secrets["GITEA_TOKEN"] ??= jobToken;
    secrets["FORGEJO_TOKEN"] ??= jobToken;
  }
  // Not secrets to the workflow but credentials: sealed so that they never cross the queue in clear.
  const runtimeToken = compat(context, "runtime_token") ?? jobToken;
  if (runtimeToken) secrets["ACTIONS_RUNTIME_TOKEN"] = runtimeToken;
  const idToken = compat(context, "actions_id_token_request_token") ?? str(context["actions_id_token_request_token"]);
  if (idToken) secrets["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = idToken;
  return secrets;
}

/**
 * What the runner masks in everything it sends Forgejo about a task, whatever the orchestrator did:
 * every secret and token the job gets, and git's basic-auth form of the job token (checkout sends it
 * base64-encoded in a header).
 */
export function taskMaskValues(task: ForgejoTask): string[] {
  const secrets = taskSecrets(task);
  const values = new Set(Object.values(secrets));
  const jobToken = secrets["GITHUB_TOKEN"];
  if (jobToken) values.add(`x-access-token:${jobToken}`);
  return [...values];
}

export async function toJobRequest(task: ForgejoTask, cx: ConversionContext): Promise<JobRequest> {
  const payload = readPayload(task);
  const context: JsonObject = task.context ?? {};
  const maxDepth = DOCUMENT_LIMITS.maxDepth;
  // Forgejo builds the context, but the event payload in it carries what users sent (dispatch inputs …).
  if (nestsDeeperThan(context, maxDepth))
    throw new TaskRejectedError(
      `The context Forgejo sent for task ${task.id} (the github context with the event payload) nests more than ` +
        `${maxDepth} arrays and objects deep, over gnomon's limit of ${maxDepth} (maxDepth); gnomon does not run it. ` +
        "Trigger the workflow with a smaller event, or report it to the Forgejo admin.",
    );

  const actionsUrl = compat(context, "default_actions_url");
  if (!actionsUrl)
    throw new TaskRejectedError(
      "The task carries no default actions URL (forgejo_default_actions_url or gitea_default_actions_url), so `uses:` cannot be resolved; upgrade Forgejo.",
    );

  const github: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(context)) if (!isTokenKey(k)) github[k] = v;
  const event = isRecord(context["event"]) ? context["event"] : {};
  const inputs = context["event_name"] === "workflow_dispatch" && isRecord(event["inputs"]) ? event["inputs"] : {};
  const needs = taskNeeds(task);
  const planNeeds = Object.fromEntries(
    Object.entries(needs).map(
      ([k, n]) => [k, { result: n.result === "unspecified" ? "failure" : n.result, outputs: n.outputs }] as const,
    ),
  );

  let leg: PlannedJob;
  try {
    const single = await readSingleJobWorkflow(payload.text, payload.file);
    const planCtx = { github, vars: { ...task.vars }, inputs, needs: planNeeds };
    // Forgejo leaves the job's `if:` to the runner, as forgejo-runner evaluates it.
    if (!singleJobShouldRun(single, planCtx))
      throw new JobSkippedError(`The job was skipped: its condition (if:) is false for this run.`);
    leg = planSingleJob(single, planCtx);
  } catch (err) {
    if (err instanceof JobSkippedError) throw err;
    throw new TaskRejectedError(`The workflow of job "${payload.jobKey}" cannot be run: ${toError(err).message}`, {
      cause: err,
    });
  }

  if (leg.runsOn.length === 0) throw new TaskRejectedError(`Job "${payload.jobKey}" has no runs-on.`);
  const label = labelForJob(leg.runsOn, cx.labels);
  if (!label)
    throw new TaskRejectedError(
      `Job "${payload.jobKey}" runs on ${leg.runsOn.map((l) => JSON.stringify(l)).join(", ")}, which this runner no longer serves ` +
        `(its labels are ${cx.labels.map((l) => l.name).join(", ") || "none"}); restart gnomon so that it declares its labels again.`,
    );

  const secrets = taskSecrets(task);

  const id = jobIdForTask(cx.instance, task.id);
  const ref: Record<string, string | number> = { taskId: Number(task.id), job: payload.jobKey };
  for (const [k, name] of [
    ["run_id", "runId"],
    ["run_number", "runNumber"],
    ["run_attempt", "runAttempt"],
    ["repository", "repository"],
  ] as const) {
    const v = str(context[k]);
    if (v) ref[name] = v;
  }

  const request = JobRequest.safeParse({
    v: 1,
    id,
    source: { forge: "forgejo", instance: cx.instance, runner: cx.runnerUuid, ref },
    replyTo: cx.replyTo,
    runsOn: label.runsOn,
    spec: leg.spec,
    contexts: { ...leg.contexts, github: { ...github, job: payload.jobKey }, needs },
    secrets: sealSecrets(secrets, cx.clusterKey, id),
    actionsUrl,
    // Forgejo serves the artifacts API under /api/actions_pipeline/ (spec 8.5).
    runtime: {
      url: `${cx.instance.replace(/\/+$/, "")}/api/actions_pipeline/`,
      resultsUrl: cx.instance.replace(/\/+$/, ""),
    },
    queuedAt: new Date(cx.nowMs).toISOString(),
    startBy: new Date(cx.nowMs + (cx.startWithinMs ?? FORGEJO_ENDLESS_TASK_MS)).toISOString(),
  });
  if (!request.success) {
    const issue = request.error.issues[0];
    throw new TaskRejectedError(
      `Job "${payload.jobKey}" of task ${task.id} does not make a valid job request (${issue?.path.join(".")}: ${issue?.message}); this is a bug in gnomon, please report it with the workflow.`,
    );
  }
  return request.data;
}
