import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { CONFIG_EXAMPLE } from "../../src/config/example.js";
import { ConfigError, ENV_KEYS, loadConfig } from "../../src/config/load.js";
import { Config } from "../../src/config/schema.js";

const tmp = mkdtempSync(join(tmpdir(), "gnomon-config-"));

describe("configuration", () => {
  it("defaults come from the schema when nothing is set", () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.logLevel, "info");
    assert.equal(c.amqpUrl, undefined);
    assert.equal(c.orchestrator.leaseTtl, 30_000);
    assert.equal(c.shutdownTimeout, 600_000);
  });

  it("flags override the environment, which overrides the file", () => {
    const file = join(tmp, "layers.yaml");
    writeFileSync(file, "logLevel: warn\ndataDir: /from/file\norchestrator:\n  maxVms: 3\n");
    const c = loadConfig({
      file,
      env: { GNOMON_LOG_LEVEL: "debug", GNOMON_MAX_VMS: "5" },
      flags: [{ path: "logLevel", flag: "--log-level", value: "error" }],
    });
    assert.equal(c.logLevel, "error");
    assert.equal(c.orchestrator.maxVms, 5);
    assert.equal(c.dataDir, "/from/file");
  });

  it("reads the conventional AMQP_URL and DATABASE_URL", () => {
    const c = loadConfig({
      env: { AMQP_URL: "amqp://guest:guest@127.0.0.1:5672", DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test" },
    });
    assert.equal(c.amqpUrl, "amqp://guest:guest@127.0.0.1:5672");
    assert.equal(c.databaseUrl, "postgres://postgres@127.0.0.1:5432/test");
  });

  it("parses durations into milliseconds and refuses a unitless one with the expected form", () => {
    assert.equal(loadConfig({ env: { GNOMON_LEASE_TTL: "2m" } }).orchestrator.leaseTtl, 120_000);
    assert.throws(
      () => loadConfig({ env: { GNOMON_LEASE_TTL: "30" } }),
      (e: unknown) =>
        e instanceof ConfigError && /GNOMON_LEASE_TTL: "30" must be a number with ms, s, m or h/.test(e.message),
    );
  });

  it("reports an environment value of the wrong kind by its variable name", () => {
    assert.throws(
      () => loadConfig({ env: { GNOMON_ALLOW_HOST_LABELS: "perhaps" } }),
      (e: unknown) =>
        e instanceof ConfigError && /GNOMON_ALLOW_HOST_LABELS: "perhaps" is not true or false/.test(e.message),
    );
  });

  it("reports invalid YAML with file, line and column", () => {
    const file = join(tmp, "broken.yaml");
    writeFileSync(file, "logLevel: [unclosed\n");
    assert.throws(
      () => loadConfig({ file, env: {} }),
      (e: unknown) => e instanceof ConfigError && /broken\.yaml:\d+:\d+: is not valid YAML/.test(e.message),
    );
  });

  it("every environment variable maps to a real setting", () => {
    for (const [name, [path]] of Object.entries(ENV_KEYS)) {
      const sample = path.endsWith("Url") ? "amqp://x" : "1";
      let err: unknown;
      try {
        loadConfig({ env: { [name]: sample } });
      } catch (e) {
        err = e;
      }
      // A value may be invalid for the setting, but the key must never be unknown to the schema.
      assert.ok(!(err instanceof ConfigError && /not a setting gnomon knows/.test(err.message)), `${name} → ${path}`);
    }
  });

  it("refuses a heartbeat interval or orchestrator silence below its minimum, saying the minimum", () => {
    assert.equal(loadConfig({ env: {} }).orchestratorSilence, 50_000);
    assert.equal(loadConfig({ env: {} }).orchestrator.heartbeatInterval, 10_000);
    assert.equal(loadConfig({ env: { GNOMON_HEARTBEAT_INTERVAL: "250ms" } }).orchestrator.heartbeatInterval, 250);
    assert.throws(
      () => loadConfig({ env: { GNOMON_HEARTBEAT_INTERVAL: "50ms" } }),
      (e: unknown) =>
        e instanceof ConfigError && /GNOMON_HEARTBEAT_INTERVAL: "50ms" must be at least 100ms/.test(e.message),
    );
    assert.throws(
      () => loadConfig({ env: { GNOMON_ORCHESTRATOR_SILENCE: "900ms" } }),
      (e: unknown) =>
        e instanceof ConfigError && /GNOMON_ORCHESTRATOR_SILENCE: "900ms" must be at least 1s/.test(e.message),
    );
  });

  it("the annotated example names every setting", () => {
    const leaves = (o: Record<string, unknown>, prefix = ""): string[] =>
      Object.entries(o).flatMap(([k, v]) =>
        v !== null && typeof v === "object" && !Array.isArray(v)
          ? leaves(v as Record<string, unknown>, `${prefix}${k}.`)
          : [`${prefix}${k}`],
      );
    const optional = ["amqpUrl", "databaseUrl", "clusterKey"]; // no default: absent from the parsed value
    for (const path of [...leaves(Config.parse({})), ...optional]) {
      const key = path.split(".").at(-1) ?? path;
      assert.match(CONFIG_EXAMPLE, new RegExp(`^#\\s+${key}:`, "m"), `${path} is missing from the example`);
    }
  });

  it("the annotated example, uncommented, is a valid configuration", () => {
    const uncommented = CONFIG_EXAMPLE.split("\n")
      .filter((l) => /^# ?[a-zA-Z ]/.test(l) && /^#( {0,3})[a-zA-Z]+:/.test(l))
      .map((l) => l.replace(/^# ?/, "").replace(/\s+# .*$/, ""))
      .join("\n");
    const doc = parse(uncommented) as Record<string, unknown>;
    assert.ok(Object.keys(doc).length >= 10, uncommented);
    const parsed = Config.safeParse(doc);
    assert.ok(parsed.success, parsed.success ? "" : JSON.stringify(parsed.error.issues));
  });
});
