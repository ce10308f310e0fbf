// A job's whole journey through the real pieces: published to RabbitMQ, consumed by an
// orchestrator, run in a real VM of the test image, its events back on RabbitMQ in order.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { AmqpBus } from "../../src/queue/amqp.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { deleteTopology, RABBIT_URL, testPrefix } from "../support/rabbit.js";
import { testImage } from "../support/test-image.js";

const WORKFLOW = `
on: push
jobs:
  build:
    runs-on: test
    steps:
      - name: Where am I
        run: |
          echo "kernel: $(uname -s)"
          echo "user: $(id -un)"
          echo "os: $RUNNER_OS"
      - id: calc
        run: echo "sum=$((40 + 2))" >> "$GITHUB_OUTPUT"
      - run: echo "the sum was \${{ steps.calc.outputs.sum }}"
    outputs:
      sum: \${{ steps.calc.outputs.sum }}
`;

describe("orchestrator end to end (RabbitMQ, PostgreSQL, a real VM)", () => {
  let td: TestDatabase;
  before(async () => {
    await testImage(); // builds the offline test image once if this machine has none
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  it("runs a published job in a VM and streams every event back in order", async (t) => {
    const prefix = testPrefix("e2e-orch");
    const bus = new AmqpBus({ url: RABBIT_URL, prefix });
    await bus.start();
    t.after(async () => {
      await bus.stop(AbortSignal.timeout(5_000));
      await deleteTopology(prefix);
    });
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    await startOrchestrator(t, { bus, databaseUrl: td.location, labels: ["test"], maxVms: 1 });
    const req = await jobRequestFromYaml(WORKFLOW, { runsOn: "test", replyTo });
    await bus.publishJob(req);
    const got = await events.finished(req.id, 240_000);
    const lines = logText(got);
    const fin = resultOf(got);
    assert.equal(fin?.result, "success", lines.join("\n"));
    assert.deepEqual(fin?.outputs, { sum: "42" });
    assert.ok(lines.includes("kernel: Linux"), lines.join("\n"));
    assert.ok(lines.includes("user: runner"), lines.join("\n"));
    assert.ok(lines.includes("os: Linux"));
    assert.ok(lines.includes("the sum was 42"));
    const phases = got.flatMap((e) => (e.kind === "provisioning" ? [e.phase] : []));
    assert.equal(phases[0], "creating-disk");
    assert.equal(phases.at(-1), "ready");
    assert.ok(phases.includes("booting"));
    assert.deepEqual(
      got.map((e) => e.seq),
      got.map((_, i) => i),
    );
    assert.deepEqual(
      got.filter((e) => e.kind === "step-finished").map((e) => (e.kind === "step-finished" ? e.conclusion : "")),
      ["success", "success", "success"],
    );
  });
});
