// Reads a workflow or action file into template tokens with @actions/workflow-parser's schema, so
// users see the official validation errors with file, line and column. Pure: text in, tokens out.
import { getActionSchema } from "@actions/workflow-parser/actions/action-schema";
import type { ObjectReader } from "@actions/workflow-parser/templates/object-reader";
import { TemplateContext, TemplateValidationErrors } from "@actions/workflow-parser/templates/template-context";
import { readTemplate } from "@actions/workflow-parser/templates/template-reader";
import { type LiteralToken, StringToken, type TemplateToken } from "@actions/workflow-parser/templates/tokens/index";
import { NoOperationTraceWriter } from "@actions/workflow-parser/templates/trace-writer";
import { getWorkflowSchema } from "@actions/workflow-parser/workflows/workflow-schema";
import { YamlObjectReader } from "@actions/workflow-parser/workflows/yaml-object-reader";
import { type Problem, WorkflowError } from "./errors.js";

export type TemplateKind = "workflow" | "action";

const ROOT: Record<TemplateKind, string> = { workflow: "workflow-root-strict", action: "action-root-strict" };

export interface TemplateFile {
  readonly context: TemplateContext;
  readonly root: TemplateToken;
}

/**
 * The template reader builds expressions of multi-line strings from the raw YAML source (with its
 * indentation, folding and CR LF line ends) instead of the scalar's value, which breaks `run: |`
 * blocks. Dropping the source of multi-line strings makes it use the value, as single-line ones do.
 */
class ValueOnlyReader implements ObjectReader {
  constructor(private readonly inner: YamlObjectReader) {}
  allowLiteral(): LiteralToken | undefined {
    const t = this.inner.allowLiteral();
    if (t instanceof StringToken && t.source !== undefined && t.range && t.range.start.line !== t.range.end.line)
      return new StringToken(t.file, t.range, t.value, t.definitionInfo, undefined, t.blockScalarHeader);
    return t;
  }
  allowSequenceStart() {
    return this.inner.allowSequenceStart();
  }
  allowSequenceEnd() {
    return this.inner.allowSequenceEnd();
  }
  allowMappingStart() {
    return this.inner.allowMappingStart();
  }
  allowMappingEnd() {
    return this.inner.allowMappingEnd();
  }
  validateStart() {
    this.inner.validateStart();
  }
  validateEnd() {
    this.inner.validateEnd();
  }
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
 * Parses `content` against the workflow or action schema. Bad YAML throws WorkflowError at once;
 * schema problems stay in `context.errors` so that the model conversion can add its own (needs,
 * ids …) before the caller reports them all with throwIfProblems().
 */
export function readTemplateFile(kind: TemplateKind, file: string, content: string): TemplateFile {
  const schema = kind === "workflow" ? getWorkflowSchema() : getActionSchema();
  const context = new TemplateContext(new TemplateValidationErrors(), schema, new NoOperationTraceWriter());
  const fileId = context.getFileId(file);
  const yaml = new YamlObjectReader(fileId, content);
  if (yaml.errors.length > 0)
    throw new WorkflowError(
      yaml.errors.map((e) => ({ file, line: e.range?.start.line, col: e.range?.start.column, message: e.message })),
    );
  const root = readTemplate(context, ROOT[kind], new ValueOnlyReader(yaml), fileId);
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
