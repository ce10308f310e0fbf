// Secret masking: every registered value, each line of a multi-line value, and the encodings a
// step is likely to print it in (base64 at any alignment, JSON and URL escaping) become `***`.
// Pure; applied to every line before it leaves the engine. Never log what it was given.
import { MASK_HINT_PREFIX } from "../contract/sealed-secrets.js";

/** Lines of a multi-line secret shorter than this are not masked alone (one `}` would mask every brace). */
export const MIN_PART_LENGTH = 3;

const MASK = "***";

function base64Variants(value: string): string[] {
  const bytes = Buffer.from(value, "utf8");
  const out: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    // The value preceded by `shift` other bytes: its encoding is stable after the first group
    // and up to the last complete group.
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes])
      .toString("base64")
      .replace(/=+$/, "");
    const total = shift + bytes.length;
    let s = shift > 0 ? encoded.slice(4) : encoded;
    if (total % 3 !== 0) s = s.slice(0, s.length - ((total % 3) + 1));
    if (s.length >= 4) out.push(s);
  }
  out.push(bytes.toString("base64")); // the whole value encoded alone, with its padding
  return out;
}

function encodings(value: string): string[] {
  const json = JSON.stringify(value).slice(1, -1);
  const uri = encodeURIComponent(value);
  return [json, uri, ...base64Variants(value)];
}

/** A job's opened secrets split into the `secrets` context and the regex mask hints. */
export function splitMaskHints(all: Readonly<Record<string, string>>): {
  secrets: Record<string, string>;
  patterns: string[];
} {
  const secrets: Record<string, string> = {};
  const patterns: string[] = [];
  for (const [k, v] of Object.entries(all)) {
    if (k.startsWith(MASK_HINT_PREFIX)) patterns.push(v);
    else secrets[k] = v;
  }
  return { secrets, patterns };
}

export class Masker {
  private readonly values = new Set<string>();
  private readonly regexes: RegExp[] = [];
  private pattern: RegExp | undefined;

  /**
   * Registers a regex whose matches are masked (a forge's mask hint). A pattern that does not
   * compile, or matches the empty string, is ignored: it would mask nothing or everything.
   */
  addPattern(source: string): boolean {
    let re: RegExp;
    try {
      re = new RegExp(source, "g");
    } catch {
      return false;
    }
    if (re.test("")) return false;
    this.regexes.push(re);
    return true;
  }

  /** Registers a secret: the value, its lines (trimmed, when long enough) and their encodings. */
  add(secret: string): void {
    const value = secret.trim();
    if (value === "") return;
    const parts = [value];
    for (const line of value.split(/\r?\n|\r/)) {
      const t = line.trim();
      if (t.length >= MIN_PART_LENGTH && t !== value) parts.push(t);
    }
    const before = this.values.size;
    for (const p of parts) {
      this.values.add(p);
      for (const e of encodings(p)) if (e.length >= Math.min(p.length, MIN_PART_LENGTH)) this.values.add(e);
    }
    if (this.values.size !== before) this.pattern = undefined;
  }

  /** The text with every registered value replaced by `***`. */
  mask(text: string): string {
    if (text === "") return text;
    for (const re of this.regexes) text = text.replace(re, MASK);
    if (this.values.size === 0) return text;
    this.pattern ??= new RegExp(
      [...this.values]
        .sort((a, b) => b.length - a.length)
        .map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
        .join("|"),
      "g",
    );
    return text.replace(this.pattern, MASK);
  }

  /** True when the text contains a registered value. */
  reveals(text: string): boolean {
    return this.mask(text) !== text;
  }
}
