// An action's metadata file (action.yml) as plain data, validated by workflow-parser's action
// schema: inputs, outputs and how it runs (composite steps, a Node.js entry point, or Docker).
// Pure: text in, ActionDefinition out; an invalid file throws WorkflowError with located problems.
import { convertActionTemplate } from "@actions/workflow-parser/actions/action-template";
import { ErrorPolicy } from "@actions/workflow-parser/model/convert";
import type { StepSpec } from "../contract/job-request.js";
import type { SerializedToken } from "../contract/template-token.js";
import { WorkflowError } from "./errors.js";
import { mappingValue, toStepSpecs } from "./steps.js";
import { readTemplateFile, throwIfProblems } from "./template-file.js";
import { toSerializedToken } from "./tokens.js";

export interface ActionInput {
  readonly id: string;
  readonly required: boolean;
  readonly default?: SerializedToken;
  readonly deprecationMessage?: string;
}

export interface ActionOutput {
  readonly id: string;
  readonly value?: SerializedToken;
}

export type NodeVersion = "node12" | "node16" | "node20" | "node24";

export type ActionRuns =
  | { readonly using: "composite"; readonly steps: readonly StepSpec[] }
  | {
      readonly using: NodeVersion;
      readonly main: string;
      readonly pre?: string;
      readonly preIf?: string;
      readonly post?: string;
      readonly postIf?: string;
    }
  | { readonly using: "docker"; readonly image: string };

export interface ActionDefinition {
  readonly file: string;
  readonly name: string;
  readonly inputs: readonly ActionInput[];
  readonly outputs: readonly ActionOutput[];
  readonly runs: ActionRuns;
}

export function parseActionFile(file: string, content: string): ActionDefinition {
  const { context, root } = readTemplateFile("action", file, content);
  const template = convertActionTemplate(context, root, { errorPolicy: ErrorPolicy.TryConversion });
  throwIfProblems(context, file);
  const runs = template.runs;
  let parsedRuns: ActionRuns;
  if (runs.using === "composite") {
    const steps = toStepSpecs(mappingValue(mappingValue(root, "runs"), "steps"), runs.steps);
    if (steps.length === 0)
      throw new WorkflowError([{ file, message: "a composite action needs `runs.steps` with at least one step" }]);
    parsedRuns = { using: "composite", steps };
  } else if (runs.using === "docker") parsedRuns = { using: "docker", image: runs.image };
  else
    parsedRuns = {
      using: runs.using,
      main: runs.main,
      pre: runs.pre,
      preIf: runs.preIf,
      post: runs.post,
      postIf: runs.postIf,
    };
  return {
    file,
    name: template.name ?? file,
    inputs: (template.inputs ?? []).map((i) => ({
      id: i.id,
      required: i.required ?? false,
      default: i.default === undefined ? undefined : toSerializedToken(i.default),
      deprecationMessage: i.deprecationMessage,
    })),
    outputs: (template.outputs ?? []).map((o) => ({
      id: o.id,
      value: o.value === undefined ? undefined : toSerializedToken(o.value),
    })),
    runs: parsedRuns,
  };
}
