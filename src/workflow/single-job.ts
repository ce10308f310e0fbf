// A Forgejo task's `workflow_payload` (a single-job workflow the server already split, matrix
// reduced, runs-on evaluated) as the one job to run. Tolerates what Forgejo adds or leaves that is
// not GitHub syntax: bookkeeping keys, `needs:` (the results come with the task), null steps and
// scalars written as strings (strategy, timeouts). The payload is read within DOCUMENT_LIMITS and
// cleaned in place, as a YAML document, so nothing is expanded and lines stay the payload's. Pure.
import { isAlias, isMap, isScalar, isSeq, Pair, type ParsedNode, Scalar, type YAMLMap } from "yaml";
import { parseBoundedYaml } from "./bounded-yaml.js";
import { WorkflowError } from "./errors.js";
import { evaluateJobIf, type PlanContexts, type PlannedJob, planJob } from "./job-plan.js";
import { parseWorkflowYaml, type Workflow, type WorkflowJob } from "./workflow.js";

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

/**
 * Cleans the payload as described above and parses it; exactly one job is expected. Every problem,
 * a limit included, throws WorkflowError citing `file`.
 */
export async function parseSingleJobWorkflow(yamlText: string, file = "workflow_payload"): Promise<SingleJob> {
  const yaml = parseBoundedYaml(file, yamlText);
  const resolve = (n: ParsedNode | null | undefined): ParsedNode | undefined =>
    n && isAlias(n) ? yaml.aliases.get(n) : (n ?? undefined);
  const root = resolve(yaml.doc.contents);
  if (!root || !isMap(root)) throw new WorkflowError([{ file, message: "the payload is not a YAML mapping" }]);
  const dropped: string[] = [];
  dropUnknown(root, WORKFLOW_KEYS, "", dropped);
  // The schema needs a trigger; the task's context says which event ran.
  const on = root.items.find((p) => keyOf(p) === "on");
  if (!on) root.items.push(new Pair(new Scalar("on"), new Scalar("push")) as YAMLMap.Parsed["items"][number]);
  else if (isNull(resolve(on.value))) on.value = new Scalar("push") as Scalar.Parsed;
  const jobs = resolve(valueAt(root, "jobs"));
  const entries = jobs && isMap(jobs) ? jobs.items : [];
  const [entry] = entries;
  if (!entry || entries.length !== 1)
    throw new WorkflowError([{ file, message: "the payload must hold exactly one job under `jobs:`" }]);
  const jobId = keyOf(entry);
  const job = resolve(entry.value);
  if (!job || !isMap(job)) throw new WorkflowError([{ file, message: `jobs.${jobId} is not a mapping` }]);
  dropUnknown(job, JOB_KEYS, `jobs.${jobId}.`, dropped);
  const steps = resolve(valueAt(job, "steps"));
  if (steps && isSeq(steps)) steps.items = steps.items.filter((s) => !isNull(resolve(s)));
  const strategy = resolve(valueAt(job, "strategy"));
  if (strategy && isMap(strategy)) {
    const ff = resolve(valueAt(strategy, "fail-fast"));
    if (isScalar(ff) && (ff.value === "true" || ff.value === "false")) ff.value = ff.value === "true";
    numberFromString(resolve(valueAt(strategy, "max-parallel")));
  }
  // forgejo-runner ≥ 8.0.1 tolerates these as strings ("30"), which the schema does not.
  for (const k of ["timeout-minutes", "cancel-timeout-minutes"]) numberFromString(resolve(valueAt(job, k)));
  const workflow = await parseWorkflowYaml(yaml);
  const parsed = workflow.jobs[0];
  if (!parsed) throw new WorkflowError([{ file, message: "the payload holds no job" }]);
  return { workflow, job: parsed, dropped };
}

/** A key as text (bounded-yaml.ts admits only scalar keys). */
function keyOf(pair: { readonly key: unknown }): string {
  return isScalar(pair.key) ? String(pair.key.value) : "";
}

function valueAt(map: YAMLMap.Parsed, key: string): ParsedNode | null | undefined {
  return map.items.find((p) => keyOf(p) === key)?.value;
}

function isNull(n: ParsedNode | undefined): boolean {
  return n === undefined || (isScalar(n) && (n.value === null || n.value === undefined));
}

/** A scalar string of digits ("30") becomes the number, in place. */
function numberFromString(n: ParsedNode | undefined): void {
  if (isScalar(n) && typeof n.value === "string" && /^\d+$/.test(n.value.trim())) n.value = Number(n.value);
}

/** Drops keys that are not GitHub syntax (and `needs:`, whose results come with the task). */
function dropUnknown(map: YAMLMap.Parsed, known: ReadonlySet<string>, prefix: string, dropped: string[]): void {
  map.items = map.items.filter((p) => {
    const key = keyOf(p);
    if (known.has(key)) return true;
    dropped.push(`${prefix}${key}`);
    return false;
  });
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
