// Reads a workflow or action file into template tokens with @actions/workflow-parser's schema, so
// users see the official validation errors with file, line and column. The YAML is read within
// DOCUMENT_LIMITS (bounded-yaml.ts) before the schema sees it. Pure: text in, tokens out.
import { getActionSchema } from "@actions/workflow-parser/actions/action-schema";
import { TemplateContext, TemplateValidationErrors } from "@actions/workflow-parser/templates/template-context";
import { readTemplate } from "@actions/workflow-parser/templates/template-reader";
import type { TemplateToken } from "@actions/workflow-parser/templates/tokens/index";
import { NoOperationTraceWriter } from "@actions/workflow-parser/templates/trace-writer";
import { getWorkflowSchema } from "@actions/workflow-parser/workflows/workflow-schema";
import { type BoundedYaml, parseBoundedYaml } from "./bounded-yaml.js";
import { type Problem, WorkflowError } from "./errors.js";
import { YamlEventReader } from "./yaml-events.js";

export type TemplateKind = "workflow" | "action";

const ROOT: Record<TemplateKind, string> = { workflow: "workflow-root-strict", action: "action-root-strict" };

export interface TemplateFile {
  readonly context: TemplateContext;
  readonly root: TemplateToken;
}

/** Problems collected in a template context, located by the parser's ranges. */
export function problemsOf(context: TemplateContext, file: string): Problem[] {
  return context.errors.getErrors().map((e) => {
    const at = e.range?.start ?? parsePrefix(e.prefix);
    return { file, line: at?.line, col: at?.column, message: e.rawMessage };
  });
}

function parsePrefix(prefix: string | undefined): { line: number; column: number } | undefined {
  const m = prefix ? /\(Line: (\d+), Col: (\d+)\)/.exec(prefix) : null;
  return m ? { line: Number(m[1]), column: Number(m[2]) } : undefined;
}

/**
 * The action schema is the Marketplace's: it requires `name` and `description`, which the runner
 * does not need to run an action (local actions often have neither), so their absence is no error.
 */
function runnable(kind: TemplateKind, message: string): boolean {
  return !(kind === "action" && /^Required property is missing: (name|description)$/.test(message));
}

/**
 * Parses `content` against the workflow or action schema. Bad YAML throws WorkflowError at once, a
 * document over a limit WorkflowLimitError; schema problems stay in `context.errors` so that the model conversion can add its own (needs,
 * ids …) before the caller reports them all with throwIfProblems().
 */
export function readTemplateFile(kind: TemplateKind, file: string, content: string): TemplateFile {
  return readTemplateYaml(kind, parseBoundedYaml(file, content));
}

/** As readTemplateFile(), for YAML already read within the limits (and possibly cleaned). */
export function readTemplateYaml(kind: TemplateKind, yaml: BoundedYaml): TemplateFile {
  const file = yaml.file;
  const schema = kind === "workflow" ? getWorkflowSchema() : getActionSchema();
  const context = new TemplateContext(new TemplateValidationErrors(), schema, new NoOperationTraceWriter());
  const fileId = context.getFileId(file);
  const root = readTemplate(context, ROOT[kind], new YamlEventReader(yaml, fileId), fileId);
  const errors = context.errors.getErrors();
  context.errors.clear();
  context.errors.add(errors.filter((e) => runnable(kind, e.rawMessage)));
  if (!root) throw new WorkflowError(problemsOf(context, file));
  return { context, root };
}

/** Throws WorkflowError with every problem collected in the context, if there is one. */
export function throwIfProblems(context: TemplateContext, file: string): void {
  if (context.errors.count > 0) throw new WorkflowError(problemsOf(context, file));
}
