// JobRequests from workflow text, as a forge runner would make them: parsed and planned by
// src/workflow, secrets sealed with the samples' cluster key.
import { randomUUID } from "node:crypto";
import { JobRequest } from "../../src/contract/job-request.js";
import { sealSecrets } from "../../src/contract/sealed-secrets.js";
import { planJob } from "../../src/workflow/job-plan.js";
import { parseWorkflowFile } from "../../src/workflow/workflow.js";
import { SAMPLE_CLUSTER_KEY } from "./samples.js";

export interface FromYamlOptions {
  readonly runsOn: string;
  readonly replyTo: string;
  readonly secrets?: Record<string, string>;
  readonly job?: string;
  readonly id?: string;
  readonly forge?: "forgejo" | "github" | "local";
}

export async function jobRequestFromYaml(yaml: string, opts: FromYamlOptions): Promise<JobRequest> {
  const wf = await parseWorkflowFile(".github/workflows/test.yml", yaml);
  const job = opts.job ? wf.jobs.find((j) => j.id === opts.job) : wf.jobs[0];
  if (!job) throw new Error(`no job ${opts.job} in the workflow`);
  const github = {
    repository: "gnomon/test",
    event_name: "push",
    ref: "refs/heads/main",
    sha: "0".repeat(40),
    server_url: "https://forge.invalid",
    workspace: "",
  };
  const [planned] = planJob(wf, job, { github, vars: {}, inputs: {}, needs: {} });
  if (!planned) throw new Error("the job planned to no legs");
  const id = opts.id ?? randomUUID();
  return JobRequest.parse({
    v: 1,
    id,
    source: {
      forge: opts.forge ?? "local",
      instance: opts.forge && opts.forge !== "local" ? "https://forge.invalid" : "local",
      runner: "test",
    },
    replyTo: opts.replyTo,
    runsOn: opts.runsOn,
    spec: planned.spec,
    contexts: planned.contexts,
    secrets: sealSecrets(opts.secrets ?? {}, SAMPLE_CLUSTER_KEY, id),
    queuedAt: new Date().toISOString(),
  });
}
