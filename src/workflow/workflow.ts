// A workflow file as plain data: its triggers, workflow-level env/defaults and its jobs with their
// steps as contract StepSpecs, everything else still as serialized tokens to evaluate per run.
// Pure: text in, Workflow out; invalid files throw WorkflowError with every located problem.
import { convertWorkflowTemplate, ErrorPolicy } from "@actions/workflow-parser/model/convert";
import { isMapping, isString } from "@actions/workflow-parser/templates/tokens/type-guards";
import type { StepSpec } from "../contract/job-request.js";
import type { SerializedToken } from "../contract/template-token.js";
import { type BoundedYaml, parseBoundedYaml } from "./bounded-yaml.js";
import { mappingValue, toStepSpecs } from "./steps.js";
import { readTemplateYaml, throwIfProblems } from "./template-file.js";
import { toSerializedToken } from "./tokens.js";

export interface WorkflowJob {
  /** The job's key in `jobs:`. */
  readonly id: string;
  readonly name?: SerializedToken;
  readonly needs: readonly string[];
  /** The job's condition as expression text, status function explicit (`success()` by default). */
  readonly if: string;
  readonly runsOn?: SerializedToken;
  readonly strategy?: SerializedToken;
  readonly env?: SerializedToken;
  readonly defaults?: SerializedToken;
  readonly outputs?: SerializedToken;
  readonly timeoutMinutes?: SerializedToken;
  readonly cancelTimeoutMinutes?: SerializedToken;
  readonly continueOnError?: SerializedToken;
  readonly container?: SerializedToken;
  readonly services?: SerializedToken;
  readonly steps: readonly StepSpec[];
  /** Set for a job that calls a reusable workflow (`jobs.<id>.uses`). */
  readonly uses?: string;
}

export interface Workflow {
  /** The file as the user named it; used in every error and log line. */
  readonly file: string;
  /** `name:`, or the file name. */
  readonly name: string;
  /** Event names under `on:`. */
  readonly events: readonly string[];
  readonly env?: SerializedToken;
  readonly defaults?: SerializedToken;
  /** In file order. */
  readonly jobs: readonly WorkflowJob[];
}

/** Parses and validates a workflow file (within DOCUMENT_LIMITS). */
export async function parseWorkflowFile(file: string, content: string): Promise<Workflow> {
  return await parseWorkflowYaml(parseBoundedYaml(file, content));
}

/** As parseWorkflowFile(), for YAML already read within the limits. */
export async function parseWorkflowYaml(yaml: BoundedYaml): Promise<Workflow> {
  const file = yaml.file;
  const { context, root } = readTemplateYaml("workflow", yaml);
  const template = await convertWorkflowTemplate(context, root, undefined, { errorPolicy: ErrorPolicy.TryConversion });
  throwIfProblems(context, file);

  const rawJobs = mappingValue(root, "jobs");
  const jobs: WorkflowJob[] = template.jobs.map((job) => {
    const raw = mappingValue(rawJobs, job.id.value);
    const s = (key: string) => {
      const v = mappingValue(raw, key);
      return v === undefined ? undefined : toSerializedToken(v);
    };
    const base = {
      id: job.id.value,
      name: s("name"),
      needs: (job.needs ?? []).map((n) => n.value),
      if: job.if.expression,
      strategy: s("strategy"),
      outputs: s("outputs"),
      timeoutMinutes: s("timeout-minutes"),
      cancelTimeoutMinutes: s("cancel-timeout-minutes"),
      continueOnError: s("continue-on-error"),
    };
    if (job.type === "reusableWorkflowJob") return { ...base, steps: [], uses: job.ref.value };
    return {
      ...base,
      runsOn: s("runs-on"),
      env: s("env"),
      defaults: s("defaults"),
      container: s("container"),
      services: s("services"),
      steps: toStepSpecs(mappingValue(raw, "steps"), job.steps),
    };
  });

  const nameToken = mappingValue(root, "name");
  const envToken = mappingValue(root, "env");
  const defaultsToken = mappingValue(root, "defaults");
  return {
    file,
    name: nameToken && isString(nameToken) && nameToken.value !== "" ? nameToken.value : file,
    events: Object.keys(template.events ?? {}),
    env: envToken && isMapping(envToken) ? toSerializedToken(envToken) : undefined,
    defaults: defaultsToken ? toSerializedToken(defaultsToken) : undefined,
    jobs,
  };
}
