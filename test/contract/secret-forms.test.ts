// Every form a secret is commonly printed in is masked, by the engine's masker and by the forges'
// final pass alike (both use src/contract/secret-forms.ts): each form as real tools on this host
// print it (python3, node, jq, bash, dash, base64), alone on a line and inside other text.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SecretMatcher } from "../../src/contract/secret-forms.js";
import { Masker } from "../../src/engine/masker.js";
import { LogMasker } from "../../src/forge/log-masker.js";
import { maskedLine, printedForms } from "../support/secret-prints.js";

/** Secrets whose forms differ from the plain text in every way the encoders differ. */
const SECRETS = [
  "it's a/b+c é😀", // quote, space, slash, plus, non-ASCII, astral (a surrogate pair in JSON)
  'p@ss"wo\\rd~#x', // double quote, backslash, characters URL-encoders and printf %q treat apart
  "tab\there<&>?", // a control character ($'…' in shell, \t in JSON, %09) and HTML-ish characters
];

type Mask = (text: string) => string;

/** The engine's masker and the forge's final pass, each holding only `secret`. */
function maskers(secret: string): [string, Mask][] {
  const engine = new Masker();
  engine.add(secret);
  const final = new LogMasker([secret]);
  return [
    ["engine", (t) => engine.mask(t)],
    ["final pass", (t) => final.mask(t)],
  ];
}

describe("secret forms", () => {
  for (const secret of SECRETS)
    it(`masks ${JSON.stringify(secret)} in every form tools print it in, alone and inside other text`, () => {
      const forms = printedForms(secret);
      assert.ok(forms.length >= 20, `the tools printed ${forms.length} forms`);
      for (const [who, mask] of maskers(secret))
        for (const f of forms) {
          const what = `${who}: ${f.name} (${f.printed})`;
          assert.equal(mask(f.printed), maskedLine(f), what);
          assert.equal(mask(`${f.name}: ${f.printed}`), maskedLine(f, `${f.name}: `), what);
          assert.equal(mask(`a=${f.printed}&more=1`), maskedLine(f, "a=", "&more=1"), what);
          assert.equal(mask(`${f.printed},${f.printed}`), `${maskedLine(f)},${maskedLine(f)}`, what);
        }
    });

  it("masks the one-line encodings of a multi-line secret whole, and each long enough line alone", () => {
    const secret = "-----BEGIN KEY-----\nline'two é\n}";
    for (const [who, mask] of maskers(secret)) {
      for (const encoded of [
        JSON.stringify(secret).slice(1, -1),
        "-----BEGIN KEY-----\\nline'two \\u00e9\\n}", // json.dumps
        encodeURIComponent(secret),
        "-----BEGIN%20KEY-----%0aline%27two%20%c3%a9%0a%7d", // quote, lower-case hex
        "-----BEGIN+KEY-----%0Aline%27two+%C3%A9%0A%7D", // quote_plus
        "-----BEGIN KEY-----\\nline\\'two é\\n}", // $'…' (printf %q, ${x@Q})
        Buffer.from(secret).toString("base64"),
      ])
        assert.equal(mask(`v=${encoded};`), "v=***;", `${who}: ${encoded}`);
      assert.equal(mask("+ : '-----BEGIN KEY-----"), "+ : '***", `${who}: set -x, first line`);
      assert.equal(mask("line'\\''two é"), "***", `${who}: set -x, a middle line`);
      assert.equal(mask("}'"), "}'", `${who}: a one-character line is not masked alone`);
    }
  });

  it("matches hex escapes in either case, mixed too, and Go's and PHP's JSON escapes", () => {
    const secret = "<é/&>";
    for (const [who, mask] of maskers(secret))
      for (const encoded of [
        "%3C%C3%A9/%26%3E",
        "%3c%c3%a9%2f%26%3e",
        "%3C%c3%A9%2F%26%3e",
        "<\\u00e9/&>",
        "<\\u00E9\\/&>",
        "\\u003c\\u00e9/\\u0026\\u003e", // Go's encoding/json
        "<\\u00e9\\/&>", // PHP's json_encode
      ])
        assert.equal(mask(`[${encoded}]`), "[***]", `${who}: ${encoded}`);
  });

  it("masks base64 at every byte alignment inside a longer encoded text, leaving only the edge groups", () => {
    const secret = 'p@ss"word/with spaces';
    for (const [who, mask] of maskers(secret))
      for (const prefix of ["", "x", "xy", "x-access-token:"])
        for (const suffix of ["", "!", "!?"]) {
          const masked = mask(Buffer.from(prefix + secret + suffix).toString("base64"));
          assert.match(masked, /\*\*\*/, `${who}: prefix ${JSON.stringify(prefix)}, suffix ${JSON.stringify(suffix)}`);
          const edges = masked.replace("***", "").length;
          assert.ok(
            edges <= Math.ceil(prefix.length / 3) * 4 + 8,
            `${who}: only the groups at the edges stay: ${masked}`,
          );
        }
  });

  it("leaves text alone that is no form of a secret", () => {
    const secret = "it's a/b+c é😀";
    for (const [who, mask] of maskers(secret))
      for (const text of ["it's a/b+c e", "it%27s a", "its a/b+c é😀", "%69t's a/b+c é😀", "", "it"])
        assert.equal(mask(text), text, `${who}: ${text}`);
  });

  it("masks the longest form at a position, so no part of a longer secret survives a shorter one", () => {
    const m = new SecretMatcher();
    m.add("abc");
    m.add("abc def");
    assert.equal(m.mask("abc def abc abc+def abc%20def"), "*** *** *** ***");
  });

  it("masks a one- or two-character secret in its forms as well as plainly", () => {
    const m = new SecretMatcher();
    m.add("é");
    m.add("a'");
    assert.equal(m.mask("café %C3%A9 \\u00e9 a'\\'' xa"), "caf*** *** *** *** xa");
  });

  it("does not stall on a line built to make a backtracking matcher explode", () => {
    const m = new SecretMatcher();
    m.add(`${"'".repeat(40)}x`);
    m.add(`${'"'.repeat(40)}x`);
    const line = `${"'\\''".repeat(5_000)} ${'\\"'.repeat(5_000)}`;
    // No time limit here (figures belong in bench/): a stalling matcher would hang the test run.
    assert.equal(m.mask(line), line);
    assert.equal(m.mask(`${"'\\''".repeat(40)}x`), "***");
  });
});
