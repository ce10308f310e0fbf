// Reads YAML from a job or a forge within DOCUMENT_LIMITS, before anything is expanded: the size
// of the text first, the nesting while the parser builds its syntax tree (the `yaml` parser slows
// down with depth and its composer recurses per level), then, on the composed document, how deep
// and how many values it is with every alias expanded. Each alias is resolved once, in document
// order; a node's size is computed once however many aliases repeat it, so an alias bomb costs
// what its text costs. Pure: text in, a checked document out; never expands anything itself.
import {
  type Alias,
  Composer,
  type CST,
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  type ParsedNode,
  Parser,
} from "yaml";
import { DOCUMENT_LIMITS, type DocumentLimits } from "./document-limits.js";
import { type Problem, WorkflowError, WorkflowLimitError } from "./errors.js";

export interface BoundedYaml {
  readonly file: string;
  readonly doc: Document.Parsed;
  readonly lineCounter: LineCounter;
  /** Every alias of the document and the node it repeats (each checked against the limits). */
  readonly aliases: ReadonlyMap<Alias, ParsedNode>;
  /** Values once every alias is expanded (within `maxNodes`). */
  readonly nodes: number;
  /** UTF-8 bytes of the keys and scalars once every alias is expanded (within `maxExpandedBytes`). */
  readonly expandedBytes: number;
}

/** "1 MiB", "312.5 KiB": sizes as people read them. */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${+(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

/**
 * Parses one YAML document and checks it against `limits`. Bad YAML throws WorkflowError with every
 * located problem; a limit throws WorkflowLimitError naming the limit, its value and the fix.
 */
export function parseBoundedYaml(file: string, text: string, limits: DocumentLimits = DOCUMENT_LIMITS): BoundedYaml {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > limits.maxBytes)
    throw new WorkflowLimitError("maxBytes", limits.maxBytes, {
      file,
      message:
        `the file is ${formatBytes(bytes)} (${bytes} bytes), over gnomon's limit of ${formatBytes(limits.maxBytes)} ` +
        "for a workflow or action file (maxBytes); make it smaller, e.g. move long scripts into files of the " +
        "repository or repeated steps into a composite action",
    });
  const lineCounter = new LineCounter();
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, col: p.col };
  };
  const tokens = syntaxTree(file, text, lineCounter, limits, at);
  const composer = new Composer({ keepSourceTokens: true, uniqueKeys: false });
  let doc: Document.Parsed | undefined;
  const problems: Problem[] = [];
  for (const d of composer.compose(tokens, true, text.length)) {
    if (!doc) {
      doc = d;
      continue;
    }
    problems.push({
      file,
      ...at(d.range[0]),
      message: "a second YAML document (after ---): a workflow or action file holds exactly one",
    });
    break;
  }
  if (!doc) throw new WorkflowError([{ file, message: "the file holds no YAML document" }]);
  for (const e of doc.errors) problems.unshift({ file, ...at(e.pos[0]), message: e.message });
  if (problems.length > 0) throw new WorkflowError(problems);
  const measured = new Measure(file, limits, at).document(doc);
  return { file, doc, lineCounter, ...measured };
}

/**
 * The parser's syntax tree, lexed and parsed token by token so that nesting beyond `maxDepth` stops
 * it at once: the parser's stack holds the document, one entry per open collection and the value
 * being read, so a longer stack means collections nested beyond the limit.
 */
function syntaxTree(
  file: string,
  text: string,
  lineCounter: LineCounter,
  limits: DocumentLimits,
  at: (offset: number) => { line: number; col: number },
): CST.Token[] {
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  const tokens: CST.Token[] = [];
  for (const lexeme of new Lexer().lex(text)) {
    for (const t of parser.next(lexeme)) tokens.push(t);
    if (parser.stack.length > limits.maxDepth + 2) throw depthError(file, limits, at(parser.offset));
  }
  for (const t of parser.end()) tokens.push(t);
  return tokens;
}

function depthError(
  file: string,
  limits: DocumentLimits,
  where: { line?: number; col?: number },
  alias?: string,
): WorkflowLimitError {
  return new WorkflowLimitError("maxDepth", limits.maxDepth, {
    file,
    ...where,
    message:
      `mappings and sequences nest more than ${limits.maxDepth} deep here${alias ? ` (through the alias *${alias})` : ""}, ` +
      `over gnomon's limit of ${limits.maxDepth} levels for a workflow or action file (maxDepth); flatten the YAML`,
  });
}

interface Size {
  /** Values in the node with its aliases expanded, the node included. */
  readonly nodes: number;
  /** UTF-8 bytes of its keys and scalars with its aliases expanded. */
  readonly bytes: number;
  /** Levels of mappings and sequences, the node included (0 for a scalar). */
  readonly height: number;
}

/**
 * One walk over the document in document order (the order in which YAML resolves an alias to the
 * last anchor of its name before it). Recursion is bounded: a collection deeper than maxDepth stops
 * the walk, and an alias is never walked into, only looked up.
 */
class Measure {
  readonly #anchors = new Map<string, ParsedNode>();
  readonly #sizes = new Map<ParsedNode, Size>();
  readonly #open = new Set<ParsedNode>();
  readonly #aliases = new Map<Alias, ParsedNode>();

  constructor(
    private readonly file: string,
    private readonly limits: DocumentLimits,
    private readonly at: (offset: number) => { line: number; col: number },
  ) {}

  document(doc: Document.Parsed): { aliases: ReadonlyMap<Alias, ParsedNode>; nodes: number; expandedBytes: number } {
    const size = doc.contents ? this.#node(doc.contents, 1) : { nodes: 0, bytes: 0, height: 0 };
    return { aliases: this.#aliases, nodes: size.nodes, expandedBytes: size.bytes };
  }

  #where(node: ParsedNode | Alias) {
    return node.range ? this.at(node.range[0]) : {};
  }

  #problem(node: ParsedNode | Alias, message: string): WorkflowError {
    return new WorkflowError([{ file: this.file, ...this.#where(node), message }]);
  }

  /** `depth`: the nesting level a collection at this place has (the root collection is 1). */
  #node(node: ParsedNode, depth: number): Size {
    if (isAlias(node)) return this.#alias(node, depth);
    if (node.anchor) {
      this.#anchors.set(node.anchor, node);
      this.#open.add(node);
    }
    let size: Size;
    if (isScalar(node)) size = { nodes: 1, bytes: scalarBytes(node.value), height: 0 };
    else {
      if (depth > this.limits.maxDepth) throw depthError(this.file, this.limits, this.#where(node));
      let nodes = 1;
      let bytes = 0;
      let height = 0;
      const add = (child: ParsedNode | null) => {
        if (child === null) return;
        const s = this.#node(child, depth + 1);
        nodes += s.nodes;
        bytes += s.bytes;
        height = Math.max(height, s.height);
        if (nodes > this.limits.maxNodes) throw this.#tooMany(child, s);
        if (bytes > this.limits.maxExpandedBytes) throw this.#tooLong(child, s);
      };
      if (isMap(node))
        for (const pair of node.items) {
          if (!isPair(pair) || !isScalar(pair.key))
            throw this.#problem(
              (isPair(pair) && pair.key) || node,
              "a mapping key must be a plain value, not a mapping, a sequence or an alias",
            );
          add(pair.key);
          add(pair.value);
        }
      else if (isSeq(node)) for (const item of node.items) add(item);
      size = { nodes, bytes, height: height + 1 };
    }
    if (node.anchor) {
      this.#sizes.set(node, size);
      this.#open.delete(node);
    }
    return size;
  }

  #alias(alias: Alias, depth: number): Size {
    const target = this.#anchors.get(alias.source);
    if (!target) throw this.#problem(alias, `the alias *${alias.source} has no anchor &${alias.source} before it`);
    const size = this.#sizes.get(target);
    if (!size || this.#open.has(target))
      throw this.#problem(alias, `the alias *${alias.source} is inside the node it repeats, so it never ends`);
    if (depth - 1 + size.height > this.limits.maxDepth)
      throw depthError(this.file, this.limits, this.#where(alias), alias.source);
    this.#aliases.set(alias, target);
    return size;
  }

  #tooMany(child: ParsedNode, size: Size): WorkflowLimitError {
    const max = this.limits.maxNodes;
    const via = isAlias(child) ? ` (the alias *${child.source} here repeats ${size.nodes} of them)` : "";
    return new WorkflowLimitError("maxNodes", max, {
      file: this.file,
      ...this.#where(child),
      message:
        `the YAML holds more than ${max} values once its aliases are expanded${via}, over gnomon's limit of ${max} ` +
        "for a workflow or action file (maxNodes); an alias of a node that holds aliases multiplies them " +
        '(an "alias bomb"): write the repeated parts out, or nest fewer aliases',
    });
  }

  #tooLong(child: ParsedNode, size: Size): WorkflowLimitError {
    const max = this.limits.maxExpandedBytes;
    const via = isAlias(child) ? ` (the alias *${child.source} here repeats ${formatBytes(size.bytes)})` : "";
    return new WorkflowLimitError("maxExpandedBytes", max, {
      file: this.file,
      ...this.#where(child),
      message:
        `the YAML's values add up to more than ${formatBytes(max)} once its aliases are expanded${via}, over gnomon's ` +
        `limit of ${formatBytes(max)} (${max} bytes) for a workflow or action file (maxExpandedBytes); repeat long ` +
        "values less often, e.g. keep a long script in a file of the repository",
    });
  }
}

function scalarBytes(v: unknown): number {
  if (typeof v === "string") return Buffer.byteLength(v, "utf8");
  return v === null || v === undefined ? 0 : String(v).length;
}

/** The document as plain JavaScript (aliases expanded), after parseBoundedYaml() checked it. */
export function boundedToJs(yaml: BoundedYaml): unknown {
  try {
    // The walk has bounded the expansion, and yaml's own alias budget (maxAliasCount) would refuse
    // ordinary documents that reuse an anchor a hundred times.
    return yaml.doc.toJS({ maxAliasCount: -1 });
  } catch (err) {
    throw new WorkflowError([{ file: yaml.file, message: err instanceof Error ? err.message : String(err) }], {
      cause: err,
    });
  }
}
