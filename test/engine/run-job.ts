// Runs a workflow job from YAML text through the engine on a real host executor and collects its
// events, for the engine's tests.
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import type { JobEventBody } from "../../src/contract/job-event.js";
import type { JobSpec } from "../../src/contract/job-request.js";
import { type EngineOptions, executeJob, type JobOutcome } from "../../src/engine/engine.js";
import { createHostExecutor, type HostExecutor, type HostExecutorOptions } from "../../src/executor/host.js";
import { type NeedResult, planJob } from "../../src/workflow/job-plan.js";
import { parseWorkflowFile } from "../../src/workflow/workflow.js";

export interface JobRun {
  readonly outcome: JobOutcome;
  readonly events: readonly JobEventBody[];
  /** Every log line's text, in order. */
  readonly lines: readonly string[];
  /** Log lines of one step (main stage unless given). */
  stepLines(step: number, stage?: "pre" | "main" | "post"): string[];
  /** step index → conclusion (main stage). */
  readonly conclusions: readonly string[];
  finished(step: number, stage?: "pre" | "main" | "post"): Extract<JobEventBody, { kind: "step-finished" }>;
  readonly executor: HostExecutor;
}

export interface RunJobOptions extends Partial<Omit<EngineOptions, "executor" | "emit">> {
  readonly job?: string;
  readonly secrets?: Record<string, string>;
  readonly github?: Record<string, unknown>;
  readonly vars?: Record<string, string>;
  readonly needs?: Readonly<Record<string, NeedResult>>;
  readonly actionsUrl?: string;
  readonly runtime?: { url?: string; resultsUrl?: string; cacheUrl?: string; cacheServiceV2?: boolean };
  /** Change the planned spec before it runs (to test what a forge could send). */
  readonly editSpec?: (spec: JobSpec) => JobSpec;
  /** Called with the executor before the job starts (to put files in place). */
  readonly before?: (executor: HostExecutor) => Promise<void>;
  readonly executorOptions?: HostExecutorOptions;
  /** Called with every event as it is emitted. */
  readonly onEvent?: (event: JobEventBody) => void;
}

export const GITHUB = {
  repository: "octo/repo",
  repository_owner: "octo",
  event_name: "push",
  sha: "0123456789abcdef0123456789abcdef01234567",
  ref: "refs/heads/main",
  actor: "mona",
  run_id: "42",
  server_url: "https://github.com",
};

export async function runJob(t: TestContext, yaml: string, opts: RunJobOptions = {}): Promise<JobRun> {
  const workflow = await parseWorkflowFile("test.yml", yaml);
  const job = opts.job ? workflow.jobs.find((j) => j.id === opts.job) : workflow.jobs[0];
  assert.ok(job, "the workflow has the job");
  const [leg] = planJob(workflow, job, { github: { ...GITHUB, ...opts.github }, vars: opts.vars, needs: opts.needs });
  assert.ok(leg, "the job has a leg");
  const executor = await createHostExecutor({ killGraceMs: 500, ...opts.executorOptions });
  t.after(() => executor.close());
  await opts.before?.(executor);
  const events: JobEventBody[] = [];
  const outcome = await executeJob(
    {
      spec: opts.editSpec ? opts.editSpec(leg.spec) : leg.spec,
      contexts: leg.contexts,
      secrets: opts.secrets ?? {},
      actionsUrl: opts.actionsUrl ?? "https://github.com",
      runtime: opts.runtime,
    },
    {
      executor,
      emit: (e) => {
        events.push(e);
        opts.onEvent?.(e);
      },
      signal: opts.signal ?? new AbortController().signal,
      checkout: opts.checkout,
      baseEnv: opts.baseEnv,
      jobContainer: opts.jobContainer,
      hostGit: opts.hostGit,
      actionCache: opts.actionCache,
      machineUrl: opts.machineUrl,
      node: opts.node,
      runnerName: opts.runnerName,
    },
  );
  const logs = events.filter((e): e is Extract<JobEventBody, { kind: "log" }> => e.kind === "log");
  const finishedEvents = events.filter(
    (e): e is Extract<JobEventBody, { kind: "step-finished" }> => e.kind === "step-finished",
  );
  return {
    outcome,
    events,
    executor,
    lines: logs.flatMap((e) => e.lines.map((l) => l.text)),
    stepLines: (step, stage = "main") =>
      logs.filter((e) => e.step === step && e.stage === stage).flatMap((e) => e.lines.map((l) => l.text)),
    conclusions: finishedEvents.filter((e) => e.stage === "main").map((e) => e.conclusion),
    finished: (step, stage = "main") => {
      const f = finishedEvents.find((e) => e.step === step && e.stage === stage);
      assert.ok(f, `step ${step} (${stage}) finished`);
      return f;
    },
  };
}

/** Lines a step printed itself (without the engine's `##[...]` lines and the step header). */
export function printed(lines: readonly string[]): string[] {
  const out: string[] = [];
  let depth = 0;
  for (const l of lines) {
    if (l.startsWith("##[group]")) depth++;
    else if (l === "##[endgroup]") depth--;
    else if (depth === 0 && !l.startsWith("##[")) out.push(l);
  }
  return out;
}
