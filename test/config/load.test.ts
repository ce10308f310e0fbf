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

  it("refuses a lease TTL shorter than 5 s (renewed every third of it), naming the setting", () => {
    for (const ttl of ["0ms", "1ms", "4999ms", "1s"])
      assert.throws(
        () => loadConfig({ env: { GNOMON_LEASE_TTL: ttl } }),
        (e: unknown) =>
          e instanceof ConfigError &&
          new RegExp(`^GNOMON_LEASE_TTL: "${ttl}" is shorter than 5s.*; set it to 5s or more$`).test(e.message),
        ttl,
      );
    assert.equal(loadConfig({ env: { GNOMON_LEASE_TTL: "5s" } }).orchestrator.leaseTtl, 5_000);
    const file = join(tmp, "short-lease.yaml");
    writeFileSync(file, "orchestrator:\n  leaseTtl: 10ms\n");
    assert.throws(
      () => loadConfig({ file, env: {} }),
      (e: unknown) =>
        e instanceof ConfigError && /orchestrator\.leaseTtl in .*short-lease\.yaml: "10ms" is shorter/.test(e.message),
    );
  });

  it("refuses a label list with an empty entry instead of serving every label", () => {
    for (const [name, text] of [
      ["GNOMON_LABELS", ",,,"],
      ["GNOMON_LABELS", "debian-12,,omnios"],
      ["GNOMON_LABELS", "debian-12,"],
      ["GNOMON_FORGEJO_LABELS", " , "],
    ] as const)
      assert.throws(
        () => loadConfig({ env: { [name]: text } }),
        (e: unknown) =>
          e instanceof ConfigError && e.message.startsWith(`${name}: ${JSON.stringify(text)} has an empty entry`),
        `${name}=${text}`,
      );
    assert.deepEqual(loadConfig({ env: { GNOMON_LABELS: "debian-12, omnios" } }).orchestrator.labels, [
      "debian-12",
      "omnios",
    ]);
    assert.throws(
      () => loadConfig({ env: {}, flags: [{ path: "orchestrator.labels", flag: "--labels", value: ["", ""] }] }),
      (e: unknown) => e instanceof ConfigError && /^--labels: .* has an empty entry/.test(e.message),
    );
    const file = join(tmp, "empty-label.yaml");
    writeFileSync(file, 'forgejo:\n  labels: ["linux", ""]\n');
    assert.throws(
      () => loadConfig({ file, env: {} }),
      (e: unknown) =>
        e instanceof ConfigError && /^forgejo\.labels in .*empty-label\.yaml: .* has an empty entry/.test(e.message),
    );
  });

  it("refuses a metrics listen address that is not host:port when it loads, naming the setting", () => {
    for (const bad of ["nonsense", "9464", "127.0.0.1:99999", "999.0.0.1:9464", "[::1:9464", "host name:9464"])
      assert.throws(
        () => loadConfig({ env: { GNOMON_METRICS_LISTEN: bad } }),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.message.startsWith(`GNOMON_METRICS_LISTEN: ${JSON.stringify(bad)} is not host:port; write it as host:port`),
        bad,
      );
    for (const good of ["127.0.0.1:9464", "[::1]:9464", ":9464", "localhost:0", "metrics.example.org:80", ""])
      assert.equal(
        loadConfig({ env: {}, flags: [{ path: "orchestrator.metricsListen", flag: "--metrics-listen", value: good }] })
          .orchestrator.metricsListen,
        good,
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
        e instanceof ConfigError &&
        /GNOMON_HEARTBEAT_INTERVAL: "50ms" is shorter than 100ms, the least that works .*; set it to 100ms or more/.test(
          e.message,
        ),
    );
    assert.throws(
      () => loadConfig({ env: { GNOMON_ORCHESTRATOR_SILENCE: "900ms" } }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /GNOMON_ORCHESTRATOR_SILENCE: "900ms" is shorter than 1s, the least that works .*; set it to 1s or more/.test(
          e.message,
        ),
    );
  });

  it("keeps debug SSH off by default, and refuses a default window longer than the maximum, naming both", () => {
    const off = loadConfig({ env: {} }).orchestrator.debugSsh;
    assert.deepEqual(off, {
      enabled: false,
      listen: ":2222",
      host: "",
      window: 30 * 60_000,
      maxWindow: 2 * 3_600_000,
      mode: "on-failure",
      onDebugLogging: true,
    });
    const on = loadConfig({
      env: { GNOMON_DEBUG_SSH_ENABLED: "true", GNOMON_DEBUG_SSH_WINDOW: "45m", GNOMON_DEBUG_SSH_MODE: "always" },
    }).orchestrator.debugSsh;
    assert.deepEqual([on.enabled, on.window, on.mode], [true, 45 * 60_000, "always"]);
    assert.throws(
      () => loadConfig({ env: { GNOMON_DEBUG_SSH_WINDOW: "3h" } }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message ===
          "GNOMON_DEBUG_SSH_WINDOW: is longer than maxWindow (120 minutes), the longest a window may be; make window at most maxWindow, or raise maxWindow",
    );
    assert.throws(
      () => loadConfig({ env: { GNOMON_DEBUG_SSH_LISTEN: "2222" } }),
      (e: unknown) => e instanceof ConfigError && /^GNOMON_DEBUG_SSH_LISTEN: "2222" is not host:port/.test(e.message),
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
      .filter((l) => /^# ?[a-zA-Z ]/.test(l) && /^#( {0,5})[a-zA-Z]+:/.test(l))
      .map((l) => l.replace(/^# ?/, "").replace(/\s+# .*$/, ""))
      .join("\n");
    const doc = parse(uncommented) as Record<string, unknown>;
    assert.ok(Object.keys(doc).length >= 10, uncommented);
    const parsed = Config.safeParse(doc);
    assert.ok(parsed.success, parsed.success ? "" : JSON.stringify(parsed.error.issues));
  });
});
