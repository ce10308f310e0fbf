// The last masking pass before text leaves the daemon for GitHub: the job's secrets, its tokens and
// their base64 forms (at every byte alignment, so a secret inside a longer base64 blob such as
// `x-access-token:<token>` is caught too), plus the message's regex mask hints. The engine masks
// first; this pass guards every line, name and annotation the reporter sends.

const MASK = "***";

/** The base64 text that depends only on `value`'s bytes when it sits at byte offset 0, 1 or 2 of a stream. */
export function base64Forms(value: string): string[] {
  const bytes = Buffer.from(value, "utf8");
  const out: string[] = [];
  for (const shift of [0, 1, 2]) {
    const enc = Buffer.concat([Buffer.alloc(shift), bytes]).toString("base64");
    const start = shift === 0 ? 0 : 4;
    const end = Math.floor((shift + bytes.length) / 3) * 4;
    const core = enc.slice(start, end);
    if (core.length >= 4) out.push(core);
  }
  // The whole value encoded on its own, with its padding.
  out.push(bytes.toString("base64"));
  return out;
}

export class LogMasker {
  readonly #needles: readonly string[];
  readonly #patterns: readonly RegExp[];

  constructor(values: readonly string[], patterns: readonly string[] = []) {
    const needles = new Set<string>();
    for (const v of values) {
      if (v === "") continue;
      needles.add(v);
      const json = JSON.stringify(v).slice(1, -1);
      if (json !== v) needles.add(json);
      if (v.length >= 3) for (const f of base64Forms(v)) needles.add(f);
    }
    const compiled: RegExp[] = [];
    for (const p of patterns) {
      try {
        const re = new RegExp(p, "g");
        if (!re.test("")) compiled.push(re); // a pattern matching the empty string would mask nothing useful
      } catch {
        if (p !== "") needles.add(p); // not a JavaScript regex: mask the text itself
      }
    }
    this.#needles = [...needles].sort((a, b) => b.length - a.length);
    this.#patterns = compiled;
  }

  mask(text: string): string {
    let out = text;
    for (const n of this.#needles) if (out.includes(n)) out = out.split(n).join(MASK);
    for (const re of this.#patterns) out = out.replace(re, MASK);
    return out;
  }
}
