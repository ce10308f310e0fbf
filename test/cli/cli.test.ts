// The CLI frame through the shipped bundle: help, version, config errors and exit codes.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runGnomon } from "../support/cli.js";

const tmp = mkdtempSync(join(tmpdir(), "gnomon-cli-"));

describe("gnomon CLI", () => {
  it("--help lists every role and exits 0", async () => {
    const r = await runGnomon(["--help"]);
    assert.equal(r.code, 0);
    for (const role of [
      "up",
      "exec",
      "orchestrator",
      "forgejo register",
      "forgejo run",
      "github register",
      "github run",
      "images list",
      "debug-sessions",
      "version",
    ])
      assert.match(r.stdout, new RegExp(`^  ${role} `, "m"), `--help lists ${role}`);
  });

  it("no arguments prints the usage and exits 2", async () => {
    const r = await runGnomon([]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /Usage: gnomon <command>/);
  });

  it("version prints the package version", async () => {
    const r = await runGnomon(["version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^gnomon \d+\.\d+\.\d+ \(node 20\./);
  });

  it("an unknown command says how to list the commands and exits 2", async () => {
    const r = await runGnomon(["frobnicate"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "frobnicate".*gnomon --help/);
  });

  it("a group without its subcommand names the subcommands", async () => {
    const r = await runGnomon(["forgejo"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /needs a subcommand; one of: .*register.*run/);
  });

  it("an unknown flag is a usage error that points at --help", async () => {
    const r = await runGnomon(["version", "--bogus"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--bogus.*gnomon version --help/);
  });

  it("GNOMON_LOG_LEVEL=loud fails at start in at most three lines naming the key, the problem and the fix", async () => {
    const r = await runGnomon(["orchestrator"], { env: { GNOMON_LOG_LEVEL: "loud" } });
    assert.equal(r.code, 2);
    const lines = r.stderr.trimEnd().split("\n");
    assert.ok(lines.length <= 3, r.stderr);
    assert.match(r.stderr, /GNOMON_LOG_LEVEL/);
    assert.match(r.stderr, /"loud" is not one of/);
    assert.match(r.stderr, /use one of trace, debug, info/);
  });

  it("a wrong type in the config file names the key and the file, and exits 2", async () => {
    const file = join(tmp, "wrong-type.yaml");
    writeFileSync(file, "orchestrator:\n  maxVms: many\n");
    const r = await runGnomon(["orchestrator", "--config", file]);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.trimEnd().split("\n").length <= 3, r.stderr);
    assert.match(
      r.stderr,
      /orchestrator\.maxVms in .*wrong-type\.yaml: must be number, got "many"; write it as a number/,
    );
  });

  it("a misspelt key in the config file is refused, not ignored", async () => {
    const file = join(tmp, "typo.yaml");
    writeFileSync(file, "orchestrator:\n  maxVM: 2\n");
    const r = await runGnomon(["orchestrator", "--config", file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /orchestrator\.maxVM in .*typo\.yaml: is not a setting gnomon knows/);
  });

  it("a metrics address it cannot listen on fails before the database is opened, naming the setting, exit 2", async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as AddressInfo).port;
    try {
      // A database nothing answers at: opening it first would end otherwise, and later.
      const r = await runGnomon(["orchestrator", "--metrics-listen", `127.0.0.1:${port}`], {
        env: {
          DATABASE_URL: "postgres://gnomon@127.0.0.1:9/none",
          GNOMON_DATA_DIR: mkdtempSync(join(tmp, "data-")),
          GNOMON_LOG_LEVEL: "silent",
        },
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `orchestrator\\.metricsListen \\(GNOMON_METRICS_LISTEN, --metrics-listen\\) "127\\.0\\.0\\.1:${port}": cannot listen there \\(EADDRINUSE\\)`,
        ),
      );
      assert.doesNotMatch(r.stderr, /store|database/i);
    } finally {
      busy.close();
    }
  });

  it("a missing config file is named with the fix", async () => {
    const r = await runGnomon(["orchestrator", "--config", join(tmp, "absent.yaml")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /absent\.yaml: does not exist; pass an existing file/);
  });
});
