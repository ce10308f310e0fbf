// The shape of a workflow run: which jobs to run and in what order (`needs` first, file order
// otherwise), what each job's status functions see, and one result per job from its matrix legs.
// Pure; the caller runs the jobs.
import type { NeedResult } from "./job-plan.js";
import type { Workflow, WorkflowJob } from "./workflow.js";

export type JobResultName = NeedResult["result"];

/** Every job `id` depends on, directly or through other jobs. */
export function transitiveNeeds(workflow: Workflow, id: string): string[] {
  const byId = new Map(workflow.jobs.map((j) => [j.id, j]));
  const seen = new Set<string>();
  const visit = (jobId: string) => {
    for (const n of byId.get(jobId)?.needs ?? []) {
      if (seen.has(n)) continue;
      seen.add(n);
      visit(n);
    }
  };
  visit(id);
  return workflow.jobs.map((j) => j.id).filter((j) => seen.has(j));
}

/**
 * The jobs to run, in an order where every job comes after the jobs it needs: all of them, or
 * `only` and what it depends on. Returns undefined when `only` is not a job of the workflow.
 */
export function jobsInOrder(workflow: Workflow, only?: string): WorkflowJob[] | undefined {
  let wanted: Set<string>;
  if (only === undefined) wanted = new Set(workflow.jobs.map((j) => j.id));
  else {
    if (!workflow.jobs.some((j) => j.id === only)) return undefined;
    wanted = new Set([only, ...transitiveNeeds(workflow, only)]);
  }
  const done = new Set<string>();
  const ordered: WorkflowJob[] = [];
  const pending = workflow.jobs.filter((j) => wanted.has(j.id));
  // The parser rejected cycles and unknown needs, so every pass places at least one job.
  while (pending.length > 0) {
    const i = pending.findIndex((j) => j.needs.every((n) => done.has(n) || !wanted.has(n)));
    const [next] = pending.splice(Math.max(i, 0), 1);
    if (!next) break;
    ordered.push(next);
    done.add(next.id);
  }
  return ordered;
}

/**
 * One result for a job from its legs: failure if a leg failed, else cancelled if one was
 * cancelled, skipped if all were skipped, success otherwise. Outputs of later legs win.
 */
export function combineLegs(legs: readonly NeedResult[]): NeedResult {
  const results = legs.map((l) => l.result);
  const result: JobResultName = results.includes("failure")
    ? "failure"
    : results.includes("cancelled")
      ? "cancelled"
      : results.length > 0 && results.every((r) => r === "skipped")
        ? "skipped"
        : "success";
  const outputs: Record<string, string> = {};
  for (const leg of legs)
    for (const [k, v] of Object.entries(leg.outputs)) if (v !== "" || !(k in outputs)) outputs[k] = v;
  return { result, outputs };
}
