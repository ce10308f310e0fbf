// A secret as real tools print it: a bash script (python3's urllib.parse and json, node, jq, bash's
// own quoting in both locales, base64) that prints `$S` once per form, one `name: printed` line each,
// used as a job step by the end-to-end tests and run here for the unit tests. Each printed form is
// split into the tool's own delimiters (quotes, `$'`, xtrace's `+ : `) and the encoded secret between
// them, which is what masking must replace.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Prints `$S` in every form, one `name: printed` line each (bash; needs python3, node, jq, dash, base64). */
export const PRINT_SECRET_FORMS = readFileSync(new URL("./print-secret-forms.sh", import.meta.url), "utf8");

export interface PrintedForm {
  /** Which tool printed it, e.g. "python quote_plus". */
  readonly name: string;
  /** The whole printed text (after `name: `). */
  readonly printed: string;
  /** What the tool wraps the encoded secret in: `'`, `"`, `$'`, xtrace's `+ : `. */
  readonly open: string;
  readonly close: string;
  /** The encoded secret: printed = open + encoded + close. */
  readonly encoded: string;
}

/** The forms of `secret` as the tools on this host print them (secret: one line, no quote at either end). */
export function printedForms(secret: string): PrintedForm[] {
  const out = execFileSync("bash", ["-c", PRINT_SECRET_FORMS], {
    env: { ...process.env, S: secret },
    encoding: "utf8",
  });
  return out
    .replace(/\n$/, "")
    .split("\n")
    .map((line) => {
      const at = line.indexOf(": ");
      return splitPrinted(line.slice(0, at), line.slice(at + 2));
    });
}

function splitPrinted(name: string, printed: string): PrintedForm {
  let open = printed.startsWith("+ : ") ? "+ : " : "";
  let rest = printed.slice(open.length);
  let close = "";
  for (const [o, c] of [
    ["$'", "'"],
    ["'", "'"],
    ['"', '"'],
  ] as const)
    if (rest.length >= o.length + c.length && rest.startsWith(o) && rest.endsWith(c)) {
      open += o;
      close = c;
      rest = rest.slice(o.length, rest.length - c.length);
      break;
    }
  return { name, printed, open, close, encoded: rest };
}

/** A line with the printed form in it, as the log must show it: only the tool's delimiters left. */
export const maskedLine = (f: PrintedForm, before = "", after = ""): string =>
  `${before}${f.open}***${f.close}${after}`;
