// The serialized form of an Actions template token, as GitHub's job messages carry it and as
// @actions/workflow-parser's TemplateToken.toJSON() writes it. Steps travel in this form with
// their `${{ }}` unevaluated; only the engine turns them back into tokens and evaluates them.
import { z } from "zod";

/** Token type numbers of the Actions template serialization (TokenType in workflow-parser). */
export const TokenType = {
  String: 0,
  Sequence: 1,
  Mapping: 2,
  BasicExpression: 3,
  InsertExpression: 4,
  Boolean: 5,
  Number: 6,
  Null: 7,
} as const;

export type SerializedToken =
  | string
  | number
  | boolean
  | null
  | { type: 1; seq: SerializedToken[] }
  | { type: 2; map: { Key: SerializedToken; Value: SerializedToken }[] }
  | { type: 3 | 4; expr: string }
  | { type: 0; lit: string }
  | { type: 5; bool: boolean }
  | { type: 6; num: number }
  | { type: 7 };

// Position fields (file, line, col) may appear on the wire; they are accepted and dropped.
const pos = { file: z.number().optional(), line: z.number().optional(), col: z.number().optional() };

export const SerializedToken: z.ZodType<SerializedToken> = z.lazy(() =>
  z.union([
    z.string(),
    z.number(),
    z.boolean(),
    z.null(),
    z
      .object({ type: z.literal(1), seq: z.array(SerializedToken), ...pos })
      .transform(({ type, seq }) => ({ type, seq })),
    z
      .object({
        type: z.literal(2),
        map: z.array(z.object({ Key: SerializedToken, Value: SerializedToken })),
        ...pos,
      })
      .transform(({ type, map }) => ({ type, map })),
    z
      .object({ type: z.union([z.literal(3), z.literal(4)]), expr: z.string(), ...pos })
      .transform(({ type, expr }) => ({ type, expr })),
    z.object({ type: z.literal(0), lit: z.string(), ...pos }).transform(({ type, lit }) => ({ type, lit })),
    z.object({ type: z.literal(5), bool: z.boolean(), ...pos }).transform(({ type, bool }) => ({ type, bool })),
    z.object({ type: z.literal(6), num: z.number(), ...pos }).transform(({ type, num }) => ({ type, num })),
    z.object({ type: z.literal(7), ...pos }).transform(({ type }) => ({ type })),
  ]),
) as z.ZodType<SerializedToken>;
