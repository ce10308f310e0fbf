// A Forgejo task's `workflow_payload` (a single-job workflow the server already split, matrix
// reduced, runs-on evaluated) as the one job to run. Tolerates what Forgejo adds or leaves that is
// not GitHub syntax: bookkeeping keys, `needs:` (the results come with the task), null steps and
// strategy scalars written as strings. Pure.
import { parseDocument, stringify } from "yaml";
import { WorkflowError } from "./errors.js";
import { evaluateJobIf, type PlanContexts, type PlannedJob, planJob } from "./job-plan.js";
import { parseWorkflowFile, type Workflow, type WorkflowJob } from "./workflow.js";

const WORKFLOW_KEYS = new Set(["name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"]);
const JOB_KEYS = new Set([
  "name",
  "permissions",
  "runs-on",
  "environment",
  "concurrency",
  "outputs",
  "env",
  "defaults",
  "if",
  "steps",
  "timeout-minutes",
  "cancel-timeout-minutes",
  "strategy",
  "continue-on-error",
  "container",
  "services",
  "uses",
  "with",
  "secrets",
  "snapshot",
]);

export interface SingleJob {
  readonly workflow: Workflow;
  readonly job: WorkflowJob;
  /** Keys that were dropped because they are not GitHub syntax, as `jobs.<id>.<key>`. */
  readonly dropped: readonly string[];
}

/** Cleans the payload as described above and parses it; exactly one job is expected. */
export async function parseSingleJobWorkflow(yamlText: string, file = "workflow_payload"): Promise<SingleJob> {
  const doc = parseDocument(yamlText, { uniqueKeys: false });
  if (doc.errors.length > 0)
    throw new WorkflowError(
      doc.errors.map((e) => ({ file, line: e.linePos?.[0]?.line, col: e.linePos?.[0]?.col, message: e.message })),
    );
  const root: unknown = doc.toJS();
  if (!isRecord(root)) throw new WorkflowError([{ file, message: "the payload is not a YAML mapping" }]);
  const dropped: string[] = [];
  dropUnknown(root, WORKFLOW_KEYS, "", dropped);
  root["on"] ??= "push"; // the schema needs a trigger; the task's context says which event ran
  const jobs = root["jobs"];
  const entries = isRecord(jobs) ? Object.entries(jobs) : [];
  const [entry] = entries;
  if (!entry || entries.length !== 1)
    throw new WorkflowError([{ file, message: "the payload must hold exactly one job under `jobs:`" }]);
  const [jobId, job] = entry;
  if (!isRecord(job)) throw new WorkflowError([{ file, message: `jobs.${jobId} is not a mapping` }]);
  dropUnknown(job, JOB_KEYS, `jobs.${jobId}.`, dropped);
  if (Array.isArray(job["steps"])) job["steps"] = job["steps"].filter((s: unknown) => s !== null);
  const strategy = job["strategy"];
  if (isRecord(strategy)) {
    const ff = strategy["fail-fast"];
    if (ff === "true" || ff === "false") strategy["fail-fast"] = ff === "true";
    const mp = strategy["max-parallel"];
    if (typeof mp === "string" && /^\d+$/.test(mp)) strategy["max-parallel"] = Number(mp);
  }
  const workflow = await parseWorkflowFile(file, stringify(root, { lineWidth: 0 }));
  const parsed = workflow.jobs[0];
  if (!parsed) throw new WorkflowError([{ file, message: "the payload holds no job" }]);
  return { workflow, job: parsed, dropped };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Drops keys that are not GitHub syntax (and `needs:`, whose results come with the task). */
function dropUnknown(
  map: Record<string, unknown>,
  known: ReadonlySet<string>,
  prefix: string,
  dropped: string[],
): void {
  for (const key of Object.keys(map)) {
    if (known.has(key)) continue;
    delete map[key];
    dropped.push(`${prefix}${key}`);
  }
}

/** The job's spec and contexts for the task (its matrix is already one leg). */
export function planSingleJob(single: SingleJob, ctx: PlanContexts): PlannedJob {
  const legs = planJob(single.workflow, single.job, ctx);
  const [leg] = legs;
  if (!leg || legs.length !== 1)
    throw new WorkflowError([
      {
        file: single.workflow.file,
        message: `jobs.${single.job.id}: the payload's matrix has ${legs.length} combinations; Forgejo sends one per task`,
      },
    ]);
  return leg;
}

/**
 * The job's `if:` for the task (the runner decides it, not Forgejo): the status functions see the
 * results of the needed jobs the task lists, the only ones Forgejo sends.
 */
export function singleJobShouldRun(single: SingleJob, ctx: PlanContexts, cancelled = false): boolean {
  const upstream = Object.values(ctx.needs ?? {}).map((n) => n.result);
  return evaluateJobIf(single.workflow, single.job, ctx, { upstream, cancelled });
}
