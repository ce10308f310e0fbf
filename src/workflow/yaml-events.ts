// A checked YAML document (bounded-yaml.ts) as the event stream @actions/workflow-parser's template
// reader consumes, in place of the parser's own YamlObjectReader. That reader walks aliases without
// any budget (an 8-level alias bomb of 429 bytes took minutes) and searches the whole document for
// every alias; this one looks aliases up in the checked document's table, so reading costs at most
// the limits bounded-yaml.ts enforced. Tokens are made as YamlObjectReader makes them, except that a
// multi-line string carries no raw source: the template reader would build its expressions from
// that source (indentation, folding, CR LF and all) instead of the value, which breaks `run: |`.
import type { ObjectReader } from "@actions/workflow-parser/templates/object-reader";
import {
  BooleanToken,
  type LiteralToken,
  MappingToken,
  NullToken,
  NumberToken,
  SequenceToken,
  StringToken,
} from "@actions/workflow-parser/templates/tokens/index";
import type { TokenRange } from "@actions/workflow-parser/templates/tokens/token-range";
import { isAlias, isMap, isScalar, isSeq, type ParsedNode, type Scalar } from "yaml";
import type { BoundedYaml } from "./bounded-yaml.js";

type Event =
  | { readonly kind: "literal"; readonly token: LiteralToken }
  | { readonly kind: "sequence-start"; readonly token: SequenceToken }
  | { readonly kind: "mapping-start"; readonly token: MappingToken }
  | { readonly kind: "sequence-end" | "mapping-end" | "document-start" | "document-end" };

export class YamlEventReader implements ObjectReader {
  readonly #events: Event[] = [];
  #next = 0;

  constructor(
    private readonly yaml: BoundedYaml,
    private readonly fileId: number | undefined,
  ) {
    this.#events.push({ kind: "document-start" });
    if (yaml.doc.contents) this.#emit(yaml.doc.contents);
    this.#events.push({ kind: "document-end" });
  }

  #range(node: ParsedNode): TokenRange | undefined {
    const r = node.range;
    if (!r) return undefined;
    const start = this.yaml.lineCounter.linePos(r[0]);
    const end = this.yaml.lineCounter.linePos(r[1]);
    return { start: { line: start.line, column: start.col }, end: { line: end.line, column: end.col } };
  }

  /** Recursion is as deep as the document nests through aliases: within maxDepth, checked. */
  #emit(node: ParsedNode | null): void {
    if (node === null) {
      this.#events.push({ kind: "literal", token: new NullToken(this.fileId, undefined, undefined) });
      return;
    }
    if (isAlias(node)) {
      const target = this.yaml.aliases.get(node);
      if (!target) throw new TypeError(`the alias *${node.source} was not checked`);
      this.#emit(target);
      return;
    }
    if (isScalar(node)) {
      this.#events.push({ kind: "literal", token: this.#literal(node) });
      return;
    }
    const range = this.#range(node);
    if (isSeq(node)) {
      this.#events.push({ kind: "sequence-start", token: new SequenceToken(this.fileId, range, undefined) });
      for (const item of node.items) this.#emit(item);
      this.#events.push({ kind: "sequence-end" });
    } else if (isMap(node)) {
      this.#events.push({ kind: "mapping-start", token: new MappingToken(this.fileId, range, undefined) });
      for (const { key, value } of node.items) {
        // bounded-yaml.ts refused keys that are not scalars.
        const k = key as Scalar.Parsed;
        const text = k.value === null || k.value === undefined ? "" : String(k.value);
        this.#events.push({ kind: "literal", token: new StringToken(this.fileId, this.#range(k), text, undefined) });
        this.#emit(value);
      }
      this.#events.push({ kind: "mapping-end" });
    }
  }

  #literal(node: Scalar.Parsed): LiteralToken {
    const range = this.#range(node);
    const v: unknown = node.value;
    if (v === null || v === undefined) return new NullToken(this.fileId, range, undefined);
    if (typeof v === "number") return new NumberToken(this.fileId, range, v, undefined);
    if (typeof v === "boolean") return new BooleanToken(this.fileId, range, v, undefined);
    const value = typeof v === "string" ? v : String(v);
    const src = node.srcToken;
    const header =
      src?.type === "block-scalar"
        ? (src.props.find((p) => p.type === "block-scalar-header") as { readonly source: string } | undefined)?.source
        : undefined;
    const singleLine = range !== undefined && range.start.line === range.end.line;
    const source = singleLine && src && "source" in src ? (src as { readonly source: string }).source : undefined;
    return new StringToken(this.fileId, range, value, undefined, source, header);
  }

  #take<K extends Event["kind"]>(kind: K): Extract<Event, { kind: K }> | undefined {
    const e = this.#events[this.#next];
    if (e?.kind !== kind) return undefined;
    this.#next += 1;
    return e as Extract<Event, { kind: K }>;
  }

  allowLiteral(): LiteralToken | undefined {
    return this.#take("literal")?.token;
  }

  allowSequenceStart(): SequenceToken | undefined {
    return this.#take("sequence-start")?.token;
  }

  allowSequenceEnd(): boolean {
    return this.#take("sequence-end") !== undefined;
  }

  allowMappingStart(): MappingToken | undefined {
    return this.#take("mapping-start")?.token;
  }

  allowMappingEnd(): boolean {
    return this.#take("mapping-end") !== undefined;
  }

  validateStart(): void {
    if (!this.#take("document-start")) throw new Error("Expected start of reader");
  }

  validateEnd(): void {
    if (!this.#take("document-end")) throw new Error("Expected end of reader");
  }
}
