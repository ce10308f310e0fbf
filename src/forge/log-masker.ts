// The last masking pass before text leaves the daemon for a forge, in both forge runners: the job's
// secrets and tokens, as the forge runner knows them, in every form src/contract/secret-forms.ts
// knows (the same ones the engine masks), plus the job's regex mask hints. The engine masks first;
// this pass guards every line, name, annotation and output a reporter sends, whatever the
// orchestrator that ran the job did.
import { MASK, SecretMatcher } from "../contract/secret-forms.js";

export class LogMasker {
  readonly #secrets = new SecretMatcher();
  readonly #patterns: readonly RegExp[];

  constructor(values: readonly string[], patterns: readonly string[] = []) {
    for (const v of values) this.#secrets.add(v);
    const compiled: RegExp[] = [];
    for (const p of patterns) {
      try {
        const re = new RegExp(p, "g");
        if (!re.test("")) compiled.push(re); // a pattern matching the empty string would mask nothing useful
      } catch {
        this.#secrets.add(p); // not a JavaScript regex: mask the text itself
      }
    }
    this.#patterns = compiled;
  }

  mask(text: string): string {
    let out = this.#secrets.mask(text);
    for (const re of this.#patterns) out = out.replace(re, MASK);
    return out;
  }
}
