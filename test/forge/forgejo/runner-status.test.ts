// What a Forgejo runner says about itself (status()) and so what /healthz shows of it: ready while it
// polls, degraded while Forgejo does not answer (and ready again once it does), stopped with the
// "register again" sentence once Forgejo deleted it. /healthz is served by the real endpoint.
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { processHealth } from "../../../src/telemetry/health.js";
import { createMetrics } from "../../../src/telemetry/metrics.js";
import { MetricsServer } from "../../../src/telemetry/metrics-server.js";
import { until } from "../../support/qemu-processes.js";
import { type Harness, startHarness } from "./harness.js";

interface Answer {
  readonly status: number;
  readonly body: { ok: boolean; runners: { name: string; state: string; detail?: string }[] };
}

/** /healthz of a process running the harness's bus and runner. */
async function healthz(t: TestContext, h: Harness): Promise<() => Promise<Answer>> {
  const server = new MetricsServer({
    listen: "127.0.0.1:0",
    metrics: createMetrics({ defaultMetrics: false }),
    health: processHealth({ services: [h.bus], runners: [h.runner] }),
  });
  await server.start();
  t.after(() => server.stop());
  return async () => {
    const r = await fetch(`http://${server.address}/healthz`);
    return { status: r.status, body: (await r.json()) as Answer["body"] };
  };
}

describe("Forgejo runner status", () => {
  it("is ready while it polls, degraded with Forgejo's error while Forgejo does not answer, ready again after", async (t) => {
    const h = await startHarness(t);
    const health = await healthz(t, h);
    await h.forgejo.nextCall("FetchTask");
    const ready = await health();
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body.runners, [
      {
        name: h.runner.name,
        state: "ready",
        detail: `polling forgejo at ${h.creds.address}; 0 tasks running`,
      },
    ]);

    h.forgejo.failNext("FetchTask", 1_000_000, "before");
    const down = await until(
      async () => {
        const a = await health();
        return a.body.runners[0]?.state === "degraded" ? a : undefined;
      },
      "the runner degraded",
      10_000,
      20,
    );
    assert.equal(down.status, 503);
    assert.equal(down.body.ok, false);
    assert.match(
      down.body.runners[0]?.detail ?? "",
      /^cannot fetch tasks from forgejo at .+ since \d{4}-\d\d-\d\dT[\d:.]+Z: .*503/,
    );

    h.forgejo.failNext("FetchTask", 0, "before");
    await until(async () => (await health()).status === 200, "healthy again once Forgejo answers", 10_000, 20);
    assert.equal(h.runner.status().state, "ready");
  });

  it("is stopped, saying to register again, once Forgejo deleted it", async (t) => {
    const h = await startHarness(t);
    const health = await healthz(t, h);
    await h.forgejo.nextCall("FetchTask");
    h.forgejo.deleteRunner(h.creds.uuid);
    await h.runner.done;
    const gone = await health();
    assert.equal(gone.status, 503);
    assert.equal(gone.body.runners[0]?.state, "stopped");
    assert.match(gone.body.runners[0]?.detail ?? "", /register again in place of the old credentials/);
  });
});
