// Imports point downstream only: each stage under src/ may import only itself and the stages listed.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { describe, it } from "node:test";

const SRC = new URL("../src/", import.meta.url).pathname;

const mayImport: Record<string, readonly string[]> = {
  contract: [],
  lifecycle: [],
  telemetry: ["lifecycle"],
  config: [],
  gen: [],
  queue: ["contract", "lifecycle", "telemetry"],
  store: ["contract", "lifecycle", "telemetry"],
  workflow: ["contract"],
  executor: ["lifecycle", "telemetry"],
  engine: ["contract", "executor", "workflow"],
  vm: ["lifecycle", "telemetry"],
  egress: ["telemetry"],
  cache: ["lifecycle", "telemetry"],
  forge: ["contract", "queue", "gen", "lifecycle", "telemetry", "workflow"],
  orchestrator: [
    "contract",
    "queue",
    "vm",
    "executor",
    "engine",
    "store",
    "lifecycle",
    "telemetry",
    "workflow",
    "egress",
    "cache",
  ],
};
const WIRING = new Set(["cli", "main.ts", "bin.ts"]);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const stageOf = (file: string): string => relative(SRC, file).split(sep)[0]!;

describe("architecture", () => {
  it("every module's relative imports point to itself or a stage it may import", () => {
    const violations: string[] = [];
    for (const file of files(SRC)) {
      const stage = stageOf(file);
      if (WIRING.has(stage)) continue;
      const allowed = mayImport[stage];
      if (!allowed) {
        violations.push(
          `${relative(SRC, file)}: stage "${stage}" is not in the import table; add it to test/architecture.test.ts`,
        );
        continue;
      }
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const target = join(file, "..", m[1]!);
        const other = stageOf(target);
        if (other !== stage && !allowed.includes(other))
          violations.push(`${relative(SRC, file)} imports ${m[1]} (${other})`);
      }
    }
    assert.deepEqual(violations, []);
  });

  it("nothing imports the wiring (cli/, main.ts)", () => {
    const bad = files(SRC)
      .filter((f) => !WIRING.has(stageOf(f)))
      .filter((f) => /from\s+["'](\.\.\/)+(cli\/|main\.js)/.test(readFileSync(f, "utf8")));
    assert.deepEqual(bad, []);
  });

  it("no module uses a default export or an index.ts barrel", () => {
    const bad = files(SRC).filter(
      (f) =>
        !f.includes(`${sep}gen${sep}`) &&
        (/^export default /m.test(readFileSync(f, "utf8")) || f.endsWith(`${sep}index.ts`)),
    );
    assert.deepEqual(bad, []);
  });
});
