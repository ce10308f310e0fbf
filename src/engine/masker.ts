// Secret masking in the engine: every registered secret, in every form src/contract/secret-forms.ts
// knows (each line of a multi-line one, JSON, URL and shell escaping, base64), and the matches of
// the forge's regex mask hints become `***`. Pure; applied to every line before it leaves the
// engine. Never log what it was given.
import { MASK_HINT_PREFIX } from "../contract/sealed-secrets.js";
import { MASK, SecretMatcher } from "../contract/secret-forms.js";

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
  readonly #secrets = new SecretMatcher();
  readonly #regexes: RegExp[] = [];

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
    this.#regexes.push(re);
    return true;
  }

  /** Registers a secret: the value, its lines (trimmed, when long enough) and their encodings. */
  add(secret: string): void {
    this.#secrets.add(secret);
  }

  /** The text with every registered value replaced by `***`. */
  mask(text: string): string {
    if (text === "") return text;
    // Secrets first: a hint matching part of a secret must not leave the rest of it to be seen.
    let out = this.#secrets.mask(text);
    for (const re of this.#regexes) out = out.replace(re, MASK);
    return out;
  }

  /** True when the text contains a registered value. */
  reveals(text: string): boolean {
    return this.mask(text) !== text;
  }
}
