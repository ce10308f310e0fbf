// The orchestrator on the in-process bus and real PostgreSQL, with explicit host labels so that
// each job takes milliseconds: the event stream, outcomes in the store, cancellation, capacity,
// a cancelled queued job, and the metrics. The VM journeys are in test/e2e/.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { orchestratorHealth } from "../../src/orchestrator/health.js";
import { MemoryBus } from "../../src/queue/memory.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { until } from "../support/qemu-processes.js";
import { aliasBombAction } from "../support/yaml-bombs.js";

const HOST = "local:host";

const TWO_STEPS = `
on: push
jobs:
  build:
    runs-on: local
    steps:
      - run: echo "hello from $GITHUB_JOB"
      - id: out
        run: echo "answer=42" >> "$GITHUB_OUTPUT"
    outputs:
      answer: \${{ steps.out.outputs.answer }}
`;

describe("orchestrator (in-process bus, PostgreSQL, host labels)", () => {
  let td: TestDatabase;
  before(async () => {
    td = await createTestDatabase("postgres");
  });
  after(() => td?.drop());

  async function setup(t: import("node:test").TestContext, opts: { maxVms?: number } = {}) {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(5_000)));
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    const o = await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: [],
      hostLabels: [HOST],
      maxVms: opts.maxVms,
    });
    return { bus, replyTo, events, ...o };
  }

  it("runs a job and sends the whole event stream in order, then records the outcome", async (t) => {
    const { bus, replyTo, events, store } = await setup(t);
    const req = await jobRequestFromYaml(TWO_STEPS, { runsOn: HOST, replyTo });
    await bus.publishJob(req);
    const got = await events.finished(req.id);
    const kinds = got.map((e) => e.kind);
    assert.equal(kinds[0], "accepted");
    assert.ok(kinds.indexOf("provisioning") > 0);
    assert.deepEqual(
      got.filter((e) => e.kind === "step-started").map((e) => (e.kind === "step-started" ? e.step : -1)),
      [0, 1],
    );
    assert.equal(kinds.at(-1), "job-finished");
    assert.deepEqual(
      got.map((e) => e.seq),
      got.map((_, i) => i),
      "seq counts up from 0 without gaps",
    );
    assert.ok(logText(got).includes("hello from build"), logText(got).join("\n"));
    const fin = resultOf(got);
    assert.equal(fin?.result, "success");
    assert.deepEqual(fin?.outputs, { answer: "42" });
    const job = await store.jobs.get(req.id);
    assert.equal(job?.state, "succeeded");
    assert.ok(job?.firstStepAt instanceof Date);
    // The result goes to the forge first; the lease is released right after (the ledger's close).
    await until(async () => (await store.leases.get(req.id)) === undefined, "the lease is released", 10_000);
  });

  it("announces its heartbeat interval when it accepts a job and beats through a quiet step until the job ends", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(5_000)));
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: [],
      hostLabels: [HOST],
      heartbeatIntervalMs: 200,
    });
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: echo quiet; sleep 1.5; echo loud\n",
      { runsOn: HOST, replyTo },
    );
    await bus.publishJob(req);
    const got = await events.finished(req.id, 30_000);
    const accepted = got.find((e) => e.kind === "accepted");
    assert.equal(accepted?.kind === "accepted" && accepted.heartbeatMs, 200);
    const quiet = got.findIndex((e) => e.kind === "log" && e.lines.some((l) => l.text === "quiet"));
    const loud = got.findIndex((e) => e.kind === "log" && e.lines.some((l) => l.text === "loud"));
    const beats = got.slice(quiet, loud).filter((e) => e.kind === "heartbeat").length;
    assert.ok(beats >= 4, `${beats} heartbeats during 1.5 s of silence at one per 200 ms`);
    const count = events.events(req.id).length;
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(events.events(req.id).length, count, "no heartbeat after job-finished");
  });

  it("ends a failing job as failure with the failing step's conclusion", async (t) => {
    const { bus, replyTo, events, store } = await setup(t);
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: exit 3\n      - run: echo never\n",
      { runsOn: HOST, replyTo },
    );
    await bus.publishJob(req);
    const got = await events.finished(req.id);
    const finished = got.filter((e) => e.kind === "step-finished");
    assert.deepEqual(
      finished.map((e) => (e.kind === "step-finished" ? [e.step, e.conclusion] : [])),
      [
        [0, "failure"],
        [1, "skipped"],
      ],
    );
    assert.equal(resultOf(got)?.result, "failure");
    assert.equal((await store.jobs.get(req.id))?.state, "failed");
  });

  it("fails only the step whose remote action is an alias bomb, at once, and runs another job meanwhile", async (t) => {
    const { bus, replyTo, events, store } = await setup(t, { maxVms: 2 });
    // The forge's side: a repository octo/bomb whose action.yml is the bomb, served by git.
    const actions = mkdtempSync(join(tmpdir(), "gnomon-actions-"));
    t.after(() => rmSync(actions, { recursive: true, force: true }));
    const repo = join(actions, "octo", "bomb");
    mkdirSync(repo, { recursive: true });
    writeFileSync(join(repo, "action.yml"), aliasBombAction(8));
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@e", ...args], { cwd: repo, stdio: "ignore" });
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("commit", "-q", "-m", "bomb");
    git("tag", "v1");
    const bomb = {
      ...(await jobRequestFromYaml(
        "on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - uses: octo/bomb@v1\n      - if: always()\n        run: echo after the bomb\n",
        { runsOn: HOST, replyTo },
      )),
      actionsUrl: `file://${actions}`,
    };
    const other = await jobRequestFromYaml(TWO_STEPS, { runsOn: HOST, replyTo });
    await bus.publishJob(bomb);
    await bus.publishJob(other);
    const got = await events.finished(bomb.id);
    assert.deepEqual(
      got.flatMap((e) => (e.kind === "step-finished" && e.stage === "main" ? [e.conclusion] : [])),
      ["failure", "success"],
    );
    const said = got.flatMap((e) => (e.kind === "annotation" ? [e.message] : []));
    assert.ok(
      said.some((m) =>
        /^the action octo\/bomb@v1 is invalid: octo\/bomb@v1\/action\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded .*\(maxNodes\)/.test(
          m,
        ),
      ),
      said.join("\n"),
    );
    assert.ok(logText(got).includes("after the bomb"));
    assert.equal(resultOf(got)?.result, "failure");
    assert.equal(resultOf(await events.finished(other.id))?.result, "success", "the other job ran to its end");
    assert.equal((await store.jobs.get(bomb.id))?.state, "failed");
  });

  it("masks secrets in the event stream", async (t) => {
    const { bus, replyTo, events } = await setup(t);
    const req = await jobRequestFromYaml(
      'on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: echo "token is ${{ secrets.API_TOKEN }}"\n',
      { runsOn: HOST, replyTo, secrets: { API_TOKEN: "hunter2-very-secret" } },
    );
    await bus.publishJob(req);
    const got = await events.finished(req.id);
    assert.ok(!JSON.stringify(got).includes("hunter2-very-secret"));
    assert.ok(logText(got).includes("token is ***"), logText(got).join("\n"));
  });

  it("sets what Forgejo's runner sets for a Forgejo job, and not for others", async (t) => {
    const { bus, replyTo, events } = await setup(t);
    const yaml =
      'on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: echo "forgejo=${FORGEJO_ACTIONS:-unset} gitea=${GITEA_ACTIONS:-unset}"\n';
    const forgejo = await jobRequestFromYaml(yaml, { runsOn: HOST, replyTo, forge: "forgejo" });
    const github = await jobRequestFromYaml(yaml, { runsOn: HOST, replyTo, forge: "github" });
    await bus.publishJob(forgejo);
    await bus.publishJob(github);
    assert.ok(logText(await events.finished(forgejo.id)).includes("forgejo=true gitea=true"));
    assert.ok(logText(await events.finished(github.id)).includes("forgejo=unset gitea=unset"));
  });

  it("cancels a job mid-step: the step is stopped, cleanup steps run and the job ends cancelled", async (t) => {
    const { bus, replyTo, events, store } = await setup(t);
    const req = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: echo started; sleep 300\n      - if: cancelled()\n        run: echo cleaning up\n",
      { runsOn: HOST, replyTo },
    );
    await bus.publishJob(req);
    await events.until(req.id, (es) => logText(es).includes("started"), 30_000, "the first step's output");
    await bus.publishCancel({ v: 1, jobId: req.id, reason: "cancelled on the forge by a test", t: Date.now() });
    // Bounded far below the step's 300 s sleep: only a stopped step ends in time.
    const got = await events.finished(req.id, 60_000);
    const fin = resultOf(got);
    assert.equal(fin?.result, "cancelled");
    assert.match(fin?.reason ?? "", /cancelled on the forge by a test/);
    assert.ok(logText(got).includes("cleaning up"));
    assert.equal((await store.jobs.get(req.id))?.state, "cancelled");
  });

  it("drops a job cancelled while it was still queued, without running it", async (t) => {
    const bus = new MemoryBus();
    await bus.start();
    t.after(() => bus.stop(AbortSignal.timeout(5_000)));
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    // One orchestrator is busy; the cancellation for the queued job reaches it before the job does.
    const { store } = await startOrchestrator(t, {
      bus,
      databaseUrl: td.location,
      labels: [],
      hostLabels: [HOST],
      maxVms: 1,
    });
    const blocker = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: sleep 2\n",
      { runsOn: HOST, replyTo },
    );
    const queued = await jobRequestFromYaml(
      "on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: echo should-not-run\n",
      { runsOn: HOST, replyTo },
    );
    await bus.publishJob(blocker);
    await events.until(blocker.id, (es) => es.some((e) => e.kind === "step-started"), 30_000, "the blocker's step");
    await bus.publishJob(queued);
    await bus.publishCancel({ v: 1, jobId: queued.id, reason: "cancelled before it started", t: Date.now() });
    const got = await events.finished(queued.id, 30_000);
    assert.equal(resultOf(got)?.result, "cancelled");
    assert.equal(resultOf(got)?.reason, "cancelled before it started");
    assert.ok(!got.some((e) => e.kind === "step-started"));
    assert.ok(!logText(got).includes("should-not-run"));
    assert.equal((await store.jobs.get(queued.id))?.state, "cancelled");
  });

  it("never runs more jobs at once than its VM slots, and runs all of them once", async (t) => {
    const { bus, replyTo, events, orchestrator } = await setup(t, { maxVms: 2 });
    const reqs = await Promise.all(
      Array.from({ length: 5 }, () =>
        jobRequestFromYaml("on: push\njobs:\n  j:\n    runs-on: local\n    steps:\n      - run: sleep 0.5\n", {
          runsOn: HOST,
          replyTo,
        }),
      ),
    );
    let most = 0;
    const timer = setInterval(() => {
      most = Math.max(most, orchestrator.runningJobs.length);
    }, 20);
    t.after(() => clearInterval(timer));
    for (const r of reqs) await bus.publishJob(r);
    for (const r of reqs) assert.equal(resultOf(await events.finished(r.id))?.result, "success");
    clearInterval(timer);
    assert.ok(most <= 2, `held ${most} jobs at once`);
    assert.equal(most, 2, "both slots were used");
    for (const r of reqs) assert.equal(events.events(r.id).filter((e) => e.kind === "accepted").length, 1);
  });

  it("reports jobs, durations and boot phases on /metrics after a job ran, and its health on /healthz", async (t) => {
    const { bus, replyTo, events, metrics, orchestrator, store } = await setup(t);
    const req = await jobRequestFromYaml(TWO_STEPS, { runsOn: HOST, replyTo });
    await bus.publishJob(req);
    await events.finished(req.id);
    // The forge hears the result before the job lets go of its slot (lease released, then acked).
    await until(() => orchestrator.runningJobs.length === 0, "the job lets go of its slot", 10_000);
    // The health the CLI serves, of this very orchestrator, bus and store.
    const server = new MetricsServer({
      listen: "127.0.0.1:0",
      metrics,
      health: orchestratorHealth({ orchestrator, bus, store }),
    });
    await server.start();
    t.after(() => server.stop());
    const text = await (await fetch(`http://${server.address}/metrics`)).text();
    assert.match(text, /gnomon_jobs_finished_total\{result="success",label="local:host"\} 1/);
    assert.match(text, /gnomon_job_duration_seconds_count\{label="local:host",result="success"\} 1/);
    assert.match(text, /gnomon_job_queue_wait_seconds_count\{label="local:host"\} 1/);
    assert.ok(orchestrator.labels.includes(HOST));
    const health = await fetch(`http://${server.address}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), {
      ok: true,
      orchestrator: orchestrator.id,
      labels: orchestrator.labels,
      runningJobs: 0,
      freeVms: orchestrator.capacity.freeVms,
      queue: "connected",
      database: "ok",
      services: [
        { name: "store", state: "ready", detail: "ok" },
        { name: "queue (in-process)", state: "ready", detail: "connected" },
        { name: "orchestrator", state: "ready", detail: "running 0 jobs; 2 of 2 VM slots free" },
      ],
      runners: [],
    });
    await bus.stop(AbortSignal.timeout(5_000)); // as if the queue were gone: no job can start or finish
    const down = await fetch(`http://${server.address}/healthz`);
    assert.equal(down.status, 503);
    const body = (await down.json()) as { queue: string; services: { name: string; state: string }[] };
    assert.equal(body.queue, "stopped");
    assert.deepEqual(
      body.services.map((s) => `${s.name}: ${s.state}`),
      ["store: ready", "queue (in-process): stopped", "orchestrator: ready"],
    );
  });
});
