// `${{ }}` evaluation with @actions/expressions, and the template evaluation around it: strings,
// sequences (an expression item that yields an array is spliced in, as GitHub does), mappings
// (with `${{ insert }}` merging and expression keys). Pure: contexts in, JSON out.
import { data, Evaluator, Lexer, Parser } from "@actions/expressions";
import type { FunctionDefinition, FunctionInfo } from "@actions/expressions/funcs/info";
import { TokenType as LexTokenType, type Token } from "@actions/expressions/lexer";
import {
  BasicExpressionToken,
  BooleanToken,
  InsertExpressionToken,
  MappingToken,
  NullToken,
  NumberToken,
  SequenceToken,
  StringToken,
  type TemplateToken,
} from "@actions/workflow-parser/templates/tokens/index";
import type { SerializedToken } from "../contract/template-token.js";
import { ExpressionFailedError } from "./errors.js";
import { toTemplateToken } from "./tokens.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Context name → value (plain JSON, or expression data built once and reused). */
export type Contexts = Readonly<Record<string, unknown>>;
/** Extension functions by lower-case name (status functions, hashFiles …). */
export type Functions = ReadonlyMap<string, FunctionDefinition>;

export interface Scope {
  readonly contexts: Contexts;
  readonly functions?: Functions;
}

const converted = new WeakMap<object, data.ExpressionData>();

/** Plain JSON (or already-converted data) as expression data; objects are converted once. */
export function toData(v: unknown): data.ExpressionData {
  if (v === null || v === undefined) return new data.Null();
  if (isExpressionData(v)) return v;
  switch (typeof v) {
    case "string":
      return new data.StringData(v);
    case "number":
      return new data.NumberData(v);
    case "boolean":
      return new data.BooleanData(v);
    case "object": {
      const cached = converted.get(v);
      if (cached) return cached;
      const d = Array.isArray(v)
        ? new data.Array(...v.map(toData))
        : new data.Dictionary(...Object.entries(v).map(([key, value]) => ({ key, value: toData(value) })));
      converted.set(v, d);
      return d;
    }
    default:
      return new data.StringData(String(v));
  }
}

function isExpressionData(v: unknown): v is data.ExpressionData {
  return (
    v instanceof data.Null ||
    v instanceof data.StringData ||
    v instanceof data.NumberData ||
    v instanceof data.BooleanData ||
    v instanceof data.Array ||
    v instanceof data.Dictionary
  );
}

export function fromData(d: data.ExpressionData): Json {
  switch (d.kind) {
    case data.Kind.Null:
      return null;
    case data.Kind.Boolean:
      return (d as data.BooleanData).value;
    case data.Kind.Number:
      return (d as data.NumberData).value;
    case data.Kind.String:
      return (d as data.StringData).value;
    case data.Kind.Array:
      return (d as data.Array).values().map(fromData);
    default: {
      const out: Record<string, Json> = {};
      for (const p of (d as data.Dictionary).pairs()) out[p.key] = fromData(p.value);
      return out;
    }
  }
}

/** GitHub's truthiness: null, false, 0, NaN and "" are false; everything else is true. */
export function truthy(v: Json): boolean {
  if (v === null || v === false || v === "") return false;
  if (typeof v === "number") return v !== 0 && !Number.isNaN(v);
  return true;
}

/** A value in a string position: numbers as GitHub prints them, null as "", objects as JSON. */
export function coerceString(v: Json): string {
  if (v === null) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return toData(v).coerceString();
  return JSON.stringify(v, null, 2);
}

/** What the status functions answer at one point of a run. */
export interface Status {
  readonly success: () => boolean;
  readonly failure: () => boolean;
  readonly cancelled: () => boolean;
}

/** success(), failure(), cancelled() and always() for a Scope's functions. */
export function statusFunctions(status: Status): Map<string, FunctionDefinition> {
  const fn = (name: string, value: () => boolean): [string, FunctionDefinition] => [
    name,
    { name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(value()) },
  ];
  return new Map([
    fn("success", status.success),
    fn("failure", status.failure),
    fn("cancelled", status.cancelled),
    fn("always", () => true),
  ]);
}

/**
 * The expression's tokens. @actions/expressions 0.3.61 unescapes only the first doubled quote
 * of a string literal (String.replace with a string pattern), so later ones would stay doubled;
 * string values are recomputed from their lexemes with every doubled quote unescaped.
 */
function lex(expr: string): Token[] {
  const tokens = new Lexer(expr).lex().tokens;
  for (const t of tokens)
    if (t.type === LexTokenType.STRING && t.lexeme.length >= 2) t.value = t.lexeme.slice(1, -1).replaceAll("''", "'");
  return tokens;
}

/** Evaluates expression text (without `${{ }}`); throws ExpressionFailedError with the reason. */
export function evaluateExpression(expr: string, scope: Scope): Json {
  try {
    const infos: FunctionInfo[] = [...(scope.functions?.values() ?? [])];
    const tree = new Parser(lex(expr), Object.keys(scope.contexts), infos).parse();
    const ctx = new data.Dictionary(
      ...Object.entries(scope.contexts).map(([key, value]) => ({ key, value: toData(value) })),
    );
    const fns = scope.functions ? new Map(scope.functions) : undefined;
    return fromData(new Evaluator(tree, ctx, fns).evaluate());
  } catch (err) {
    if (err instanceof ExpressionFailedError) throw err;
    throw new ExpressionFailedError(expr, err instanceof Error ? err.message : String(err), { cause: err });
  }
}

/** A condition (`if:`): its expression text, truthy or not. */
export function evaluateCondition(expr: string, scope: Scope): boolean {
  return truthy(evaluateExpression(expr, scope));
}

export type TokenLike = TemplateToken | SerializedToken;

function asToken(t: TokenLike): TemplateToken {
  return typeof t === "object" && t !== null && "templateTokenType" in t ? t : toTemplateToken(t as SerializedToken);
}

/** Evaluates a template token (or its serialized form) to JSON. */
export function evaluateToken(token: TokenLike, scope: Scope): Json {
  const t = asToken(token);
  if (t instanceof StringToken) return t.value;
  if (t instanceof NumberToken) return t.value;
  if (t instanceof BooleanToken) return t.value;
  if (t instanceof NullToken) return null;
  if (t instanceof BasicExpressionToken) return evaluateExpression(t.expression, scope);
  if (t instanceof SequenceToken) {
    const out: Json[] = [];
    for (const item of t) {
      const v = evaluateToken(item, scope);
      if (item instanceof BasicExpressionToken && Array.isArray(v)) out.push(...v);
      else out.push(v);
    }
    return out;
  }
  if (t instanceof MappingToken) {
    const out: Record<string, Json> = {};
    for (const { key, value } of t) {
      if (key instanceof InsertExpressionToken) {
        const inserted = evaluateToken(value, scope);
        if (inserted === null || typeof inserted !== "object" || Array.isArray(inserted))
          throw new ExpressionFailedError("insert", "the value of an insert directive key must be a mapping");
        Object.assign(out, inserted);
        continue;
      }
      out[coerceString(evaluateToken(key, scope))] = evaluateToken(value, scope);
    }
    return out;
  }
  throw new TypeError(`cannot evaluate a template token of type ${t.typeName()}`);
}

export function evaluateString(token: TokenLike, scope: Scope): string {
  return coerceString(evaluateToken(token, scope));
}

export function evaluateBoolean(token: TokenLike, scope: Scope): boolean {
  return truthy(evaluateToken(token, scope));
}

/** A number field (timeout-minutes …); a string holding a number is accepted, as GitHub does. */
export function evaluateNumber(token: TokenLike, scope: Scope, what: string): number {
  const v = evaluateToken(token, scope);
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : Number.NaN;
  if (!Number.isFinite(n))
    throw new ExpressionFailedError(expressionText(token), `${what} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

/** A mapping of strings (env, with, outputs): keys kept as written, values coerced to strings. */
export function evaluateStringMap(token: TokenLike | undefined, scope: Scope): Record<string, string> {
  if (token === undefined) return {};
  const v = evaluateToken(token, scope);
  if (v === null) return {};
  if (typeof v !== "object" || Array.isArray(v))
    throw new ExpressionFailedError(expressionText(token), `expected a mapping, got ${JSON.stringify(v)}`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) out[k] = coerceString(val);
  return out;
}

function expressionText(token: TokenLike): string {
  const t = asToken(token);
  return t instanceof BasicExpressionToken ? t.expression : t.toString();
}
