// Errors of the Actions language: a workflow or action file the schema refuses (each problem with
// file, line and column, as @actions/workflow-parser words it), a document over one of gnomon's
// reading limits, and an expression that cannot be evaluated. All mean "fix the YAML"; none is
// worth a retry.
import type { DocumentLimits } from "./document-limits.js";

/** One problem in a workflow or action file, located where the parser located it. */
export interface Problem {
  readonly file: string;
  readonly line?: number;
  readonly col?: number;
  readonly message: string;
}

export function formatProblem(p: Problem): string {
  const at = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.col ?? 1}`;
  return `${at}: ${p.message}`;
}

/** A workflow or action file that is not valid: bad YAML, or something the schema does not allow. */
export class WorkflowError extends Error {
  override readonly name: string = "WorkflowError";
  readonly code: string = "workflow.invalid";
  constructor(
    readonly problems: readonly Problem[],
    options?: ErrorOptions,
  ) {
    super(
      problems.length === 1 && problems[0]
        ? formatProblem(problems[0])
        : `${problems.length} problems:\n${problems.map((p) => `  ${formatProblem(p)}`).join("\n")}`,
      options,
    );
  }
}

/**
 * A document over one of DOCUMENT_LIMITS, refused before it was expanded: `limit` names which
 * one, `max` its value. One problem, located where the limit was crossed when that is known.
 */
export class WorkflowLimitError extends WorkflowError {
  override readonly name: string = "WorkflowLimitError";
  override readonly code: string = "workflow.limit";
  constructor(
    readonly limit: keyof DocumentLimits,
    readonly max: number,
    problem: Problem,
    options?: ErrorOptions,
  ) {
    super([problem], options);
  }
}

/** An expression that could not be parsed or evaluated at run time (e.g. an unknown function). */
export class ExpressionFailedError extends Error {
  override readonly name = "ExpressionFailedError";
  readonly code = "workflow.expression";
  constructor(
    readonly expression: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`the expression \${{ ${expression} }} failed: ${reason}`, options);
  }
}
