// A job's whole journey through the real pieces: published to RabbitMQ, consumed by an
// orchestrator, run in a real VM of the test image, its events back on RabbitMQ in order.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Orchestrator } from "../../src/orchestrator/orchestrator.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { isAlive, qemuPids, until } from "../support/qemu-processes.js";
import { startTestBus } from "../support/rabbit.js";
import { testImage } from "../support/test-image.js";
import { aliasBombAction } from "../support/yaml-bombs.js";

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
    const { bus } = await startTestBus(t, "e2e-orch");
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

  it("a local action that is an alias bomb fails only its step, and the orchestrator runs the next job", async (t) => {
    const { bus } = await startTestBus(t, "e2e-bomb");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const { store } = await startOrchestrator(t, { bus, databaseUrl: td.location, labels: ["test"], maxVms: 1 });
    // A step writes the bomb (8 levels of aliases, ~500 bytes) into the workspace; the next uses it.
    const b64 = Buffer.from(aliasBombAction(8)).toString("base64");
    const bomb = await jobRequestFromYaml(
      `on: push
jobs:
  bomb:
    runs-on: test
    steps:
      - run: mkdir -p that && echo ${b64} | base64 -d > that/action.yml && wc -c that/action.yml
      - uses: ./that
      - if: always()
        run: echo "still here after the bomb"
`,
      { runsOn: "test", replyTo },
    );
    const next = await jobRequestFromYaml(WORKFLOW, { runsOn: "test", replyTo });
    await bus.publishJob(bomb);
    await bus.publishJob(next);
    const got = await events.finished(bomb.id, 240_000);
    const lines = logText(got);
    assert.deepEqual(
      got.flatMap((e) => (e.kind === "step-finished" && e.stage === "main" ? [e.conclusion] : [])),
      ["success", "failure", "success"],
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) =>
        /^##\[error\]the action \.\/that is invalid: \.\/that\/action\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded .*\(maxNodes\)/.test(
          l,
        ),
      ),
      lines.join("\n"),
    );
    assert.ok(lines.includes("still here after the bomb"), lines.join("\n"));
    assert.equal(resultOf(got)?.result, "failure");
    assert.equal(resultOf(await events.finished(next.id, 240_000))?.result, "success", "the next job ran to its end");
    assert.equal((await store.jobs.get(next.id))?.state, "succeeded");
  });

  it("a cancellation mid-step stops the step, runs cleanup, ends the job cancelled and destroys its VM", async (t) => {
    const { bus } = await startTestBus(t, "e2e-cancel");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const { store } = await startOrchestrator(t, { bus, databaseUrl: td.location, labels: ["test"], maxVms: 1 });
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo started; sleep 600\n      - if: always()\n        run: echo cleanup ran\n",
      { runsOn: "test", replyTo },
    );
    await bus.publishJob(req);
    await events.until(req.id, (es) => logText(es).includes("started"), 180_000, "the step's first line");
    const vm = (
      await store.db.query<{ id: string; pid: number }>("select id, pid from vms where job_id = $1", [req.id])
    ).rows[0];
    assert.ok(vm && isAlive(vm.pid));
    await bus.publishCancel({ v: 1, jobId: req.id, reason: "cancelled by a test", t: Date.now() });
    const fin = resultOf(await events.finished(req.id, 30_000));
    assert.equal(fin?.result, "cancelled");
    assert.equal(fin?.reason, "cancelled by a test");
    assert.ok(logText(events.events(req.id)).includes("cleanup ran"));
    await until(() => !isAlive(vm.pid) && qemuPids(vm.id).length === 0, "the VM is gone", 60_000);
  });

  it("two orchestrators with one VM slot each share four jobs: at most one VM each, every job once", async (t) => {
    const { bus: publisher, prefix } = await startTestBus(t, "e2e-share");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, publisher, replyTo);
    const orchestrators: Orchestrator[] = [];
    for (const name of ["a", "b"]) {
      const { bus } = await startTestBus(t, `e2e-share-${name}`, prefix);
      orchestrators.push(
        (
          await startOrchestrator(t, {
            bus,
            databaseUrl: td.location,
            labels: ["test"],
            maxVms: 1,
            id: `share-${name}-${prefix}`,
          })
        ).orchestrator,
      );
    }
    const most = new Map<string, number>();
    const timer = setInterval(() => {
      for (const o of orchestrators) most.set(o.id, Math.max(most.get(o.id) ?? 0, o.runningJobs.length));
    }, 25);
    t.after(() => clearInterval(timer));
    const reqs = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        jobRequestFromYaml(`on: push\njobs:\n  j:\n    runs-on: test\n    steps:\n      - run: echo job ${n}\n`, {
          runsOn: "test",
          replyTo,
        }),
      ),
    );
    for (const r of reqs) await publisher.publishJob(r);
    for (const r of reqs) assert.equal(resultOf(await events.finished(r.id, 400_000))?.result, "success");
    clearInterval(timer);
    for (const o of orchestrators) assert.ok((most.get(o.id) ?? 0) <= 1, `${o.id} held ${most.get(o.id)} jobs at once`);
    const ran = reqs.map((r) =>
      events
        .events(r.id)
        .filter((e) => e.kind === "accepted")
        .map((e) => (e.kind === "accepted" ? e.orchestrator : "")),
    );
    for (const r of ran) assert.equal(r.length, 1, "each job was accepted once");
    assert.deepEqual(new Set(ran.flat()).size, 2, "both orchestrators ran jobs");
  });
});
