// What a secret looks like when a tool prints it, and one matcher that finds every such form of a
// job's secrets in a line. Shared by the engine's masker and the forges' final masking pass, so the
// two can never disagree on a form. Pure; never logs, and never keeps text it was asked to mask.
//
// The forms of a secret (and of each line of a multi-line secret, see secretParts):
// - the text itself;
// - JSON string escaping by any common encoder: JSON.stringify, Python's json.dumps (ensure_ascii:
//   `\u00e9`, astral characters as surrogate pairs), `\/`, `\u003c` (Go), hex digits in either case;
// - percent-encoding: encodeURIComponent, encodeURI, Python's quote (keeps `/`) and quote_plus
//   (space as `+`), jq's @uri, hex digits in either case;
// - shell quoting: bash's `set -x` and `${x@Q}` (`'\''`), Python's shlex.quote (`'"'"'`), `printf %q`
//   (backslashes) and the `$'…'` form (`\n`, `\E`, octal bytes in the C locale);
// - base64: the secret encoded alone (with padding) and at each byte alignment inside a longer text.
// A form is a sequence of units, one per character, each a few spellings of it. No spelling of a unit
// starts another spelling of it, so at most one spelling matches at a place and matching a form
// never backtracks. Forms nobody prints are left out on purpose (a letter as `%61`, base64url…):
// each form costs a little on every line, and a form that matches ordinary text wrecks logs.

/** Lines of a multi-line secret shorter than this are not masked alone (one `}` would mask every brace). */
const MIN_PART_LENGTH = 3;

export const MASK = "***";

/** One way to print one character. `hex`: its letters a–f are hex digits, matched in either case. */
interface Spelling {
  readonly text: string;
  readonly hex: boolean;
}

/** The spellings of one character in one form, with what matching needs of them computed once. */
interface Unit {
  readonly spellings: readonly Spelling[];
  readonly source: string;
  /** The shortest spelling's length. */
  readonly min: number;
  /** The one spelling, when there is one and it is matched as it is. */
  readonly literal: string | undefined;
}

const same = (text: string): Spelling => ({ text, hex: false });
const hexDigits = (text: string): Spelling => ({ text, hex: true });

function unit(spellings: readonly Spelling[]): Unit {
  const only = spellings.length === 1 && !spellings[0]!.hex ? spellings[0]!.text : undefined;
  // Longest first, although no spelling starts another: cheap insurance for the alternation.
  const sources = [...spellings].sort((a, b) => b.text.length - a.text.length).map(spellingSource);
  return {
    spellings,
    source: sources.length === 1 ? sources[0]! : `(?:${sources.join("|")})`,
    min: Math.min(...spellings.map((x) => x.text.length)),
    literal: only,
  };
}

/** A unit builder with the units of ASCII characters built once (secrets are mostly ASCII). */
function cached(spell: (ch: string) => readonly Spelling[]): (ch: string) => Unit {
  const ascii: (Unit | undefined)[] = [];
  return (ch) => {
    const code = ch.charCodeAt(0);
    if (code >= 0x80) return unit(spell(ch));
    ascii[code] ??= unit(spell(ch));
    return ascii[code];
  };
}

/** The texts masked for one secret: the trimmed value and each of its lines long enough to mask alone. */
function secretParts(secret: string): string[] {
  const value = secret.trim();
  if (value === "") return [];
  const parts = [value];
  for (const line of value.split(/\r?\n|\r/)) {
    const t = line.trim();
    if (t.length >= MIN_PART_LENGTH && !parts.includes(t)) parts.push(t);
  }
  return parts;
}

const isAlnum = (ch: string) => /^[A-Za-z0-9]$/.test(ch);
const u4 = (code: number) => `\\u${code.toString(16).padStart(4, "0")}`;
const utf8 = (ch: string) => [...Buffer.from(ch, "utf8")];

const JSON_SHORT: Readonly<Record<string, string>> = {
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

function jsonSpellings(ch: string): readonly Spelling[] {
  const code = ch.codePointAt(0)!;
  if (ch === '"') return [same('\\"'), hexDigits(u4(0x22))];
  if (ch === "\\") return [same("\\\\"), hexDigits(u4(0x5c))];
  if (ch === "/") return [same("/"), same("\\/"), hexDigits(u4(0x2f))];
  const short = JSON_SHORT[ch];
  if (short) return [same(short), hexDigits(u4(code))];
  if (code < 0x20) return [hexDigits(u4(code))];
  if (isAlnum(ch)) return [same(ch)];
  // Astral characters as their UTF-16 surrogate pair, as json.dumps and JSON.stringify write them.
  const escaped = ch.length === 2 ? u4(ch.charCodeAt(0)) + u4(ch.charCodeAt(1)) : u4(code);
  return [same(ch), hexDigits(escaped)];
}

function percentSpellings(ch: string): readonly Spelling[] {
  if (/^[A-Za-z0-9\-._~]$/.test(ch)) return [same(ch)];
  const encoded = hexDigits(
    utf8(ch)
      .map((b) => `%${b.toString(16).padStart(2, "0")}`)
      .join(""),
  );
  if (ch === " ") return [encoded, same("+")];
  const code = ch.codePointAt(0)!;
  // Some encoders leave reserved characters (`/`, `:`, `'`…) as they are; none leaves `%`, a
  // control character or a non-ASCII one.
  if (ch === "%" || code < 0x20 || code >= 0x7f) return [encoded];
  return [same(ch), encoded];
}

/** Inside '…': bash closes, escapes and reopens (`'\''`); Python's shlex.quote uses `'"'"'`. */
function singleQuotedSpellings(ch: string): readonly Spelling[] {
  return ch === "'" ? [same("'\\''"), same(`'"'"'`)] : [same(ch)];
}

/** Characters `printf %q` escapes with a backslash anywhere; `#` and `~` only at a word's start. */
const BACKSLASHED = new Set(" !\"$&'()*,;<>?[\\]^`{|}");

function backslashSpellings(ch: string): readonly Spelling[] {
  if (BACKSLASHED.has(ch)) return [same(`\\${ch}`)];
  if (ch === "#" || ch === "~") return [same(ch), same(`\\${ch}`)];
  return [same(ch)];
}

const ANSI_C: Readonly<Record<string, readonly string[]>> = {
  "\x07": ["\\a"],
  "\b": ["\\b"],
  "\t": ["\\t"],
  "\n": ["\\n"],
  "\v": ["\\v"],
  "\f": ["\\f"],
  "\r": ["\\r"],
  "\x1b": ["\\E", "\\e"],
  "'": ["\\'"],
  "\\": ["\\\\"],
};

const octal = (ch: string) =>
  utf8(ch)
    .map((b) => `\\${b.toString(8).padStart(3, "0")}`)
    .join("");

/** Inside $'…' (printf %q, ${x@Q} and set -x for text with control characters, or any non-ASCII in the C locale). */
function ansiCSpellings(ch: string): readonly Spelling[] {
  const named = ANSI_C[ch];
  if (named) return named.map(same);
  const code = ch.codePointAt(0)!;
  if (code < 0x20 || code === 0x7f) return [same(octal(ch))];
  if (code > 0x7f) return [same(ch), same(octal(ch))];
  return [same(ch)];
}

/** The base64 text that depends only on `value`'s bytes when it sits at byte offset 0, 1 or 2 of a stream. */
function base64Forms(value: string): string[] {
  const bytes = Buffer.from(value, "utf8");
  const out: string[] = [];
  for (const shift of [0, 1, 2]) {
    const enc = Buffer.concat([Buffer.alloc(shift), bytes]).toString("base64");
    // The first group mixes in the bytes before the value, the last one those after it.
    const start = shift === 0 ? 0 : 4;
    const end = Math.floor((shift + bytes.length) / 3) * 4;
    const core = enc.slice(start, end);
    if (core.length >= 4) out.push(core);
  }
  out.push(bytes.toString("base64")); // the value encoded on its own, with its padding
  return out;
}

const plainUnit = cached((ch) => [same(ch)]);
const jsonUnit = cached(jsonSpellings);
const percentUnit = cached(percentSpellings);
const singleQuotedUnit = cached(singleQuotedSpellings);
const backslashUnit = cached(backslashSpellings);
const ansiCUnit = cached(ansiCSpellings);

/** Every form of one part, as units (a literal is a form whose units have one spelling each). */
function partForms(part: string): Unit[][] {
  const chars = [...part];
  const forms = [plainUnit, jsonUnit, percentUnit, singleQuotedUnit];
  // printf %q writes text with a control character in the $'…' form instead.
  if (!/[\x00-\x1f\x7f]/.test(part)) forms.push(backslashUnit);
  forms.push(ansiCUnit);
  return [...forms.map((f) => chars.map(f)), ...base64Forms(part).map((b) => [...b].map(plainUnit))];
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

function spellingSource(s: Spelling): string {
  const e = escapeRegex(s.text);
  return s.hex ? e.replace(/[a-fA-F]/g, (c) => `[${c.toLowerCase()}${c.toUpperCase()}]`) : e;
}

/** Each spelling of a hex one in both cases of its letters (a handful: escapes have at most four letters). */
function caseVariants(s: Spelling): string[] {
  if (!s.hex) return [s.text];
  let out = [""];
  for (const c of s.text)
    out = /[a-fA-F]/.test(c) ? out.flatMap((p) => [p + c.toLowerCase(), p + c.toUpperCase()]) : out.map((p) => p + c);
  return out;
}

/** A form ready to match: a literal, or a sticky regex when a unit has more than one spelling. */
interface Form {
  readonly literal: string | undefined;
  readonly re: RegExp | undefined;
}

function lengthAt(f: Form, text: string, i: number): number {
  if (f.literal !== undefined) return text.startsWith(f.literal, i) ? f.literal.length : 0;
  const re = f.re!;
  re.lastIndex = i;
  return re.test(text) ? re.lastIndex - i : 0;
}

/** Matches are looked up by their first PREFIX code units; forms that can be shorter are tried everywhere. */
const PREFIX = 3;

/**
 * Every form of a job's secrets in one index, built as secrets are added. `mask` walks a line once:
 * at each position a hash of the next three characters is checked in a bit set, and only where it
 * hits are the forms with that beginning tried, the longest match winning. The cost per line does
 * not grow with the number of secrets.
 */
export class SecretMatcher {
  readonly #keys = new Set<string>();
  readonly #byPrefix = new Map<string, Form[]>();
  readonly #short: Form[] = [];
  #bits = new Int32Array(1 << 7);
  #shift = 32 - 12;

  /** Adds every form of every part of `secret` (one the matcher already has changes nothing). */
  add(secret: string): void {
    for (const part of secretParts(secret)) for (const units of partForms(part)) this.#addForm(units);
  }

  #addForm(units: readonly Unit[]): void {
    let literal: string | undefined = "";
    let minLength = 0;
    for (const u of units) {
      if (literal !== undefined) literal = u.literal === undefined ? undefined : literal + u.literal;
      minLength += u.min;
    }
    // A literal is known by its text; a form with choices by its regex.
    const source = literal === undefined ? units.map((u) => u.source).join("") : undefined;
    const key = source === undefined ? `=${literal}` : `~${source}`;
    if (minLength === 0 || this.#keys.has(key)) return;
    this.#keys.add(key);
    const form: Form = { literal, re: source === undefined ? undefined : new RegExp(source, "y") };
    if (minLength < PREFIX) {
      this.#short.push(form);
      return;
    }
    for (const p of prefixes(units)) {
      const list = this.#byPrefix.get(p);
      if (list) list.push(form);
      else {
        this.#byPrefix.set(p, [form]);
        this.#setBit(p);
      }
    }
  }

  #setBit(prefix: string): void {
    // Keep the set at most 1/32 full, so a line position rarely hits by chance.
    if (this.#byPrefix.size > this.#bits.length && this.#shift > 32 - 22) {
      this.#bits = new Int32Array(this.#bits.length * 2);
      this.#shift -= 1;
      for (const p of this.#byPrefix.keys()) this.#set(hash(p, 0, this.#shift));
    } else this.#set(hash(prefix, 0, this.#shift));
  }

  #set(h: number): void {
    this.#bits[h >>> 5]! |= 1 << (h & 31);
  }

  /** The text with every form of every secret replaced by `***`, the longest match first at each position. */
  mask(text: string): string {
    if (this.#keys.size === 0) return text;
    const bits = this.#bits;
    const shift = this.#shift;
    const short = this.#short;
    let out = "";
    let copied = 0;
    let changed = false;
    for (let i = 0; i < text.length; ) {
      let best = 0;
      if (i + PREFIX <= text.length) {
        const h = hash(text, i, shift);
        if ((bits[h >>> 5]! & (1 << (h & 31))) !== 0) {
          const forms = this.#byPrefix.get(text.slice(i, i + PREFIX));
          if (forms) for (const f of forms) best = Math.max(best, lengthAt(f, text, i));
        }
      }
      if (short.length > 0) for (const f of short) best = Math.max(best, lengthAt(f, text, i));
      if (best === 0) {
        i += 1;
        continue;
      }
      out += text.slice(copied, i) + MASK;
      i += best;
      copied = i;
      changed = true;
    }
    return changed ? out + text.slice(copied) : text;
  }
}

/** A `32 - shift`-bit hash of the PREFIX code units of `s` at `i`. */
function hash(s: string, i: number, shift: number): number {
  let h =
    Math.imul(s.charCodeAt(i), 0x9e3779b1) ^
    Math.imul(s.charCodeAt(i + 1), 0x85ebca77) ^
    Math.imul(s.charCodeAt(i + 2), 0xc2b2ae3d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return h >>> shift;
}

/** Every text of PREFIX code units that a match of the form can start with. */
function prefixes(units: readonly Unit[]): Set<string> {
  const out = new Set<string>();
  const walk = (k: number, acc: string) => {
    if (acc.length >= PREFIX || k === units.length) {
      out.add(acc.slice(0, PREFIX));
      return;
    }
    for (const s of units[k]!.spellings) for (const v of caseVariants(s)) walk(k + 1, acc + v);
  };
  walk(0, "");
  return out;
}
