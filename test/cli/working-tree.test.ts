import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gitIgnoredPaths } from "../../src/cli/working-tree.js";

describe("the working tree gnomon exec copies", () => {
  it("is what git sees: tracked and untracked-unignored files, .git, not what .gitignore names", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gnomon-tree-"));
    execFileSync("git", ["init", "-q", dir]);
    mkdirSync(join(dir, "node_modules", "x"), { recursive: true });
    mkdirSync(join(dir, "src"));
    writeFileSync(join(dir, ".gitignore"), "node_modules/\n*.log\n");
    writeFileSync(join(dir, "node_modules", "x", "i.js"), "");
    writeFileSync(join(dir, "src", "a.ts"), "");
    writeFileSync(join(dir, "src", "debug.log"), "");
    writeFileSync(join(dir, "new.txt"), "");
    execFileSync("git", ["-C", dir, "add", "src/a.ts", ".gitignore"]);
    const skip = await gitIgnoredPaths(dir);
    assert.ok(skip);
    for (const kept of ["src", "src/a.ts", ".gitignore", "new.txt", ".git", ".git/HEAD"])
      assert.equal(skip(kept), false, kept);
    for (const left of ["node_modules", "src/debug.log"]) assert.equal(skip(left), true, left);
  });

  it("is everything when the folder is not a git checkout", async () => {
    assert.equal(await gitIgnoredPaths(mkdtempSync(join(tmpdir(), "gnomon-plain-"))), undefined);
  });
});
