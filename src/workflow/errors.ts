// Errors of the Actions language: a workflow or action file the schema refuses (each problem with
// file, line and column, as @actions/workflow-parser words it), and an expression that cannot be
// evaluated. Both mean "fix the YAML"; neither is worth a retry.

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
  override readonly name = "WorkflowError";
  readonly code = "workflow.invalid";
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
