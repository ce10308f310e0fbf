// `gnomon up` through the shipped program: it refuses at start a forge runner whose labels no image
// of this host serves (their jobs would wait for ever), saying what to do, with exit code 2.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runGnomon } from "../support/cli.js";

describe("gnomon up", () => {
  it("refuses a Forgejo registration whose label no image serves, and exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gnomon-up-"));
    writeFileSync(
      join(dir, ".runner"),
      JSON.stringify({
        id: 1,
        uuid: "u-1",
        name: "r",
        token: "t",
        address: "http://127.0.0.1:9/",
        labels: ["solaris-10"],
      }),
      { mode: 0o600 },
    );
    const r = await runGnomon(["up"], { cwd: dir, env: { GNOMON_DATA_DIR: join(dir, "data") }, timeoutMs: 120_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /declares "solaris-10", which no image of this host serves .*register it with labels of the image catalog/,
    );
  });
});
