// Steps of a workflow job or of a composite action, from the parser's tokens to the contract's
// StepSpec (tokens serialized, `if` as expression text with its status function made explicit).
import type { Step } from "@actions/workflow-parser/model/workflow-template";
import type { TemplateToken } from "@actions/workflow-parser/templates/tokens/index";
import { isMapping, isSequence, isString } from "@actions/workflow-parser/templates/tokens/type-guards";
import type { StepSpec } from "../contract/job-request.js";
import type { SerializedToken } from "../contract/template-token.js";
import { toSerializedToken } from "./tokens.js";

/** The value of `key` in a mapping token, if present. */
export function mappingValue(token: TemplateToken | undefined, key: string): TemplateToken | undefined {
  if (!token || !isMapping(token)) return undefined;
  for (const { key: k, value } of token) if (isString(k) && k.value === key) return value;
  return undefined;
}

const serialized = (t: TemplateToken | undefined): SerializedToken | undefined =>
  t === undefined ? undefined : toSerializedToken(t);

/**
 * Pairs the raw step mappings (all of their keys) with the converter's steps (ids generated the
 * way GitHub generates them, conditions normalized) and builds StepSpecs.
 */
export function toStepSpecs(raw: TemplateToken | undefined, converted: readonly Step[]): StepSpec[] {
  const items = raw && isSequence(raw) ? [...raw].filter(isMapping) : [];
  const specs: StepSpec[] = [];
  let generated = 0;
  items.forEach((item, i) => {
    const conv = converted[i];
    const run = mappingValue(item, "run");
    const uses = mappingValue(item, "uses");
    const id = conv?.id || `__step${++generated}`;
    const cond = conv && "if" in conv && conv.if ? conv.if.expression : "success()";
    const common = {
      id,
      name: serialized(mappingValue(item, "name")),
      if: cond,
      continueOnError: serialized(mappingValue(item, "continue-on-error")),
      timeoutMinutes: serialized(mappingValue(item, "timeout-minutes")),
      env: serialized(mappingValue(item, "env")),
    };
    if (run !== undefined)
      specs.push({
        ...common,
        kind: "run",
        run: toSerializedToken(run),
        shell: serialized(mappingValue(item, "shell")),
        workingDirectory: serialized(mappingValue(item, "working-directory")),
      });
    else if (uses !== undefined && isString(uses))
      specs.push({ ...common, kind: "uses", uses: uses.value, with: serialized(mappingValue(item, "with")) });
  });
  return specs;
}
