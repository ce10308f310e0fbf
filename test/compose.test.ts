// compose.yml cannot be started here (no Docker engine), so this checks what can drift: every
// variable it sets is one gnomon reads, every command exists, and the infrastructure has healthchecks.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { ENV_KEYS } from "../src/config/load.js";

interface Service {
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}

const compose = parse(readFileSync(new URL("../compose.yml", import.meta.url), "utf8"), { merge: true }) as {
  services: Record<string, Service>;
};

describe("compose.yml", () => {
  it("runs RabbitMQ, PostgreSQL, an orchestrator and both forge runners", () => {
    assert.deepEqual(Object.keys(compose.services).sort(), [
      "forgejo-runner",
      "github-runner",
      "orchestrator",
      "postgres",
      "rabbitmq",
    ]);
  });

  it("sets only variables gnomon reads", () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      if (name === "rabbitmq" || name === "postgres") continue;
      for (const key of Object.keys(svc.environment ?? {}))
        assert.ok(key in ENV_KEYS, `${name} sets ${key}, which gnomon does not read`);
    }
  });

  it("starts each gnomon service with a command the CLI has, after healthy infrastructure", async () => {
    const { main } = await import("../src/main.js");
    for (const name of ["orchestrator", "forgejo-runner", "github-runner"]) {
      const svc = compose.services[name]!;
      let out = "";
      const sink = {
        write(s: string) {
          out += s;
          return true;
        },
      } as unknown as NodeJS.WriteStream;
      const code = await main([...(svc.command ?? []), "--help"], {
        env: {},
        stopRequested: new Promise(() => {}),
        stdout: sink,
        stderr: sink,
      });
      assert.equal(code, 0, `${name}: ${out}`);
      assert.deepEqual(svc.depends_on, {
        rabbitmq: { condition: "service_healthy" },
        postgres: { condition: "service_healthy" },
      });
    }
  });

  it("gives RabbitMQ, PostgreSQL and the orchestrator healthchecks", () => {
    for (const name of ["rabbitmq", "postgres", "orchestrator"])
      assert.ok(compose.services[name]?.healthcheck?.test.length, name);
    assert.match(compose.services["orchestrator"]!.healthcheck!.test.join(" "), /\/healthz/);
  });
});
