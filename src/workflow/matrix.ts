// `strategy.matrix` expansion as GitHub documents it: the cross product of the vectors, minus
// `exclude` (partial matches), plus `include` (added to every combination whose original values
// it does not overwrite, else a combination of its own). Pure.
import { WorkflowError } from "./errors.js";
import type { Json } from "./expressions.js";

export type MatrixCombination = Readonly<Record<string, Json>>;

/** GitHub's limit on the number of jobs a matrix may generate per workflow run. */
export const MAX_MATRIX_COMBINATIONS = 256;

const isObject = (v: Json): v is { [k: string]: Json } => typeof v === "object" && v !== null && !Array.isArray(v);

export function jsonEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i] ?? null));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && jsonEqual(a[k] ?? null, b[k] ?? null));
  }
  return false;
}

/**
 * The combinations of an evaluated matrix value; `at` names the file and job for errors. An
 * absent matrix (null) is one empty combination: the job runs once without a matrix.
 */
export function expandMatrix(matrix: Json, at: { file: string; job: string }): MatrixCombination[] {
  if (matrix === null) return [{}];
  const fail = (message: string): never => {
    throw new WorkflowError([{ file: at.file, message: `jobs.${at.job}.strategy.matrix: ${message}` }]);
  };
  if (!isObject(matrix)) return fail(`strategy.matrix must be a mapping, got ${JSON.stringify(matrix)}`);

  const vectors: [string, Json[]][] = [];
  for (const [key, value] of Object.entries(matrix)) {
    if (key === "include" || key === "exclude") continue;
    if (!Array.isArray(value)) return fail(`matrix vector '${key}' must be a sequence, got ${JSON.stringify(value)}`);
    if (value.length === 0) return fail(`matrix vector '${key}' does not contain any values`);
    vectors.push([key, value]);
  }
  const list = (key: "include" | "exclude"): { [k: string]: Json }[] => {
    const v = matrix[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every(isObject)) return fail(`matrix '${key}' must be a sequence of mappings`);
    return v;
  };
  const include = list("include");
  const exclude = list("exclude");

  let combos: Record<string, Json>[] = vectors.length > 0 ? [{}] : [];
  for (const [key, values] of vectors) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));

  combos = combos.filter(
    (c) => !exclude.some((ex) => Object.entries(ex).every(([k, v]) => k in c && jsonEqual(c[k] ?? null, v))),
  );

  const original = new Set(vectors.map(([k]) => k));
  const extras: Record<string, Json>[] = [];
  const originalOf = combos.map((c) => ({ ...c }));
  for (const inc of include) {
    let added = false;
    combos.forEach((c, i) => {
      const base = originalOf[i] ?? {};
      const overwrites = Object.entries(inc).some(([k, v]) => original.has(k) && !jsonEqual(base[k] ?? null, v));
      if (overwrites) return;
      Object.assign(c, inc);
      added = true;
    });
    if (!added) extras.push({ ...inc });
  }
  const all = [...combos, ...extras];
  if (all.length === 0) return fail("the matrix produces no job: every combination is excluded");
  if (all.length > MAX_MATRIX_COMBINATIONS)
    return fail(`the matrix produces ${all.length} jobs; at most ${MAX_MATRIX_COMBINATIONS} are allowed`);
  return all;
}

/** Keeps the combinations where every `filter` key has the given value (as text), e.g. node=18. */
export function filterMatrix(
  combos: readonly MatrixCombination[],
  filter: Readonly<Record<string, string>>,
): MatrixCombination[] {
  return combos.filter((c) =>
    Object.entries(filter).every(([k, v]) => {
      const have = c[k];
      return have !== undefined && (typeof have === "string" ? have : JSON.stringify(have)) === v;
    }),
  );
}
