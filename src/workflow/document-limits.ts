// How much of a document gnomon reads from a job or a forge (a workflow, an action.yml, a Forgejo
// task's payload and context, a GitHub job message's template tokens and contexts): the one place
// the limits are named. The size limits are checked before anything is expanded, so a hostile
// document (an alias bomb, a nesting bomb) is refused in milliseconds instead of blocking the
// process for minutes; the schema's checks, slow on some shapes within them, run on a worker thread
// within maxParseMs. Each is far above what real workflows need. docs/faq.md lists them.

export interface DocumentLimits {
  /** The size of the text, in UTF-8 bytes. Large real workflows are a few hundred KiB. */
  readonly maxBytes: number;
  /** How many mappings and sequences may nest, counted through aliases. Real files nest ~10. */
  readonly maxDepth: number;
  /**
   * How many values (keys, scalars, mappings, sequences) a document holds once every alias is
   * expanded: an alias counts as the whole node it repeats. A 1 MiB real workflow has ~70,000.
   */
  readonly maxNodes: number;
  /**
   * The UTF-8 bytes of all keys and scalars once every alias is expanded: an alias of a long
   * string repeats the string. Four times maxBytes, so a file of the largest size may reuse a lot.
   */
  readonly maxExpandedBytes: number;
  /**
   * How long reading one workflow or action file may take on the parser's worker thread. Within the
   * other limits the schema's checks still grow with the square of some shapes (thousands of jobs,
   * a long script full of expressions: seconds at 1 MiB); a 1 MiB real workflow takes under 1 s.
   */
  readonly maxParseMs: number;
}

export const DOCUMENT_LIMITS: DocumentLimits = Object.freeze({
  maxBytes: 1024 * 1024,
  maxDepth: 100,
  maxNodes: 250_000,
  maxExpandedBytes: 4 * 1024 * 1024,
  maxParseMs: 10_000,
});

/**
 * Whether plain data (parsed JSON: a task's context, an event payload) nests arrays and objects
 * deeper than `maxDepth`. Iterative, so data of any depth is measured without exhausting the stack.
 */
export function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [v, depth] = next;
    if (v === null || typeof v !== "object") continue;
    if (depth > maxDepth) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}
