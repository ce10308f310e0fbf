// Pure: which committed entry a lookup restores, as GitHub matches (docs: "Matching a cache key").
// Scope by scope in the job's read order (its own ref, a pull request's base, the default branch),
// key by key in the order given (the key, then the restore keys): an exact match first, then the
// newest entry whose key starts with it. Only entries of the same version match; keys compare
// without regard to case, as actions/cache compares them.

export interface Matchable {
  readonly id: number;
  readonly scope: string;
  readonly key: string;
  readonly version: string;
  readonly createdAt: number;
}

export function findMatch<E extends Matchable>(
  entries: Iterable<E>,
  readScopes: readonly string[],
  keys: readonly string[],
  version: string,
): E | undefined {
  const candidates = [...entries].filter((e) => e.version === version);
  for (const scope of readScopes) {
    const inScope = candidates.filter((e) => e.scope === scope);
    if (inScope.length === 0) continue;
    for (const key of keys) {
      const wanted = key.toLowerCase();
      const exact = newest(inScope.filter((e) => e.key.toLowerCase() === wanted));
      if (exact) return exact;
      const prefixed = newest(inScope.filter((e) => e.key.toLowerCase().startsWith(wanted)));
      if (prefixed) return prefixed;
    }
  }
  return undefined;
}

function newest<E extends Matchable>(list: readonly E[]): E | undefined {
  let best: E | undefined;
  for (const e of list)
    if (!best || e.createdAt > best.createdAt || (e.createdAt === best.createdAt && e.id > best.id)) best = e;
  return best;
}
