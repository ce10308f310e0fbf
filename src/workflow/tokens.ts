// Template tokens to and from the contract's serialized form (GitHub's wire format), so steps can
// travel the queue with their `${{ }}` unevaluated and become workflow-parser tokens again.
import {
  BasicExpressionToken,
  BooleanToken,
  InsertExpressionToken,
  MappingToken,
  NullToken,
  NumberToken,
  type ScalarToken,
  SequenceToken,
  StringToken,
  type TemplateToken,
} from "@actions/workflow-parser/templates/tokens/index";
import { TokenType } from "@actions/workflow-parser/templates/tokens/types";
import type { SerializedToken } from "../contract/template-token.js";

/** A serialized token back as a TemplateToken (no file positions: they do not travel). */
export function toTemplateToken(s: SerializedToken): TemplateToken {
  if (s === null) return new NullToken(undefined, undefined, undefined);
  switch (typeof s) {
    case "string":
      return new StringToken(undefined, undefined, s, undefined);
    case "number":
      return new NumberToken(undefined, undefined, s, undefined);
    case "boolean":
      return new BooleanToken(undefined, undefined, s, undefined);
  }
  switch (s.type) {
    case 0:
      return new StringToken(undefined, undefined, s.lit, undefined);
    case 1: {
      const seq = new SequenceToken(undefined, undefined, undefined);
      for (const item of s.seq) seq.add(toTemplateToken(item));
      return seq;
    }
    case 2: {
      const map = new MappingToken(undefined, undefined, undefined);
      for (const { Key, Value } of s.map) map.add(toScalarKey(Key), toTemplateToken(Value));
      return map;
    }
    case 3:
      return new BasicExpressionToken(undefined, undefined, s.expr, undefined, undefined, undefined);
    case 4:
      return new InsertExpressionToken(undefined, undefined, undefined);
    case 5:
      return new BooleanToken(undefined, undefined, s.bool, undefined);
    case 6:
      return new NumberToken(undefined, undefined, s.num, undefined);
    case 7:
      return new NullToken(undefined, undefined, undefined);
  }
}

function toScalarKey(s: SerializedToken): ScalarToken {
  const t = toTemplateToken(s);
  if (!t.isScalar) throw new TypeError("a mapping key must be a scalar token");
  return t as ScalarToken;
}

/** A TemplateToken in the contract's serialized form (plain data, JSON-safe). */
export function toSerializedToken(t: TemplateToken): SerializedToken {
  if (t instanceof StringToken) return t.value;
  if (t instanceof NumberToken) return t.value;
  if (t instanceof BooleanToken) return t.value;
  if (t instanceof NullToken) return null;
  if (t instanceof BasicExpressionToken) return { type: 3, expr: t.expression };
  if (t instanceof InsertExpressionToken) return { type: 4, expr: "insert" };
  if (t instanceof SequenceToken) return { type: 1, seq: [...t].map(toSerializedToken) };
  if (t instanceof MappingToken)
    return {
      type: 2,
      map: [...t].map((kv) => ({ Key: toSerializedToken(kv.key), Value: toSerializedToken(kv.value) })),
    };
  throw new TypeError(
    `cannot serialize a template token of type ${TokenType[t.templateTokenType] ?? t.templateTokenType}`,
  );
}
