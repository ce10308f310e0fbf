// The exit-code table: which errors end a command with 2 (a person must fix something) and which
// with 1, and that every code on the "fix it" list is one an error class of gnomon really carries.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EXIT, exitCodeOf, OPERATOR_ERROR_CODES } from "../../src/cli/exit-codes.js";
import { ConfigError } from "../../src/config/load.js";
import { HostKeyError } from "../../src/debug-ssh/host-key.js";
import { RunnerUnregisteredError } from "../../src/forge/forgejo/errors.js";
import { StoreUnavailableError } from "../../src/store/errors.js";

const SRC = new URL("../../src/", import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("exit codes", () => {
  it("ends with 2 for what a person must fix and with 1 for what may mend by itself", () => {
    assert.equal(exitCodeOf(new ConfigError([{ where: "X", problem: "p", fix: "f" }])), EXIT.usage);
    assert.equal(exitCodeOf(new RunnerUnregisteredError("https://f/", "r (u)", { name: "r", labels: ["l"] })), 2);
    assert.equal(exitCodeOf(new HostKeyError("/d/debug-ssh/host_ed25519_key", "garbage")), EXIT.usage);
    assert.equal(exitCodeOf(new StoreUnavailableError("postgres://db/", "Check it.")), EXIT.failed);
    assert.equal(exitCodeOf(new Error("a bug")), 1);
    assert.equal(exitCodeOf("a string"), 1);
    assert.equal(exitCodeOf(undefined), 1);
  });

  it("lists only codes that an error class of gnomon carries (a typo would silently mean 1)", () => {
    const text = sources(SRC)
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    for (const code of OPERATOR_ERROR_CODES)
      assert.ok(
        text.includes(`readonly code = "${code}"`) || text.includes(`readonly code: string = "${code}"`),
        `no error class has code "${code}"`,
      );
  });
});
