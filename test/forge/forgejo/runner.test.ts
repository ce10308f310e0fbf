// The Forgejo runner against the fake Forgejo, driven by JobEvents on the in-process bus as an
// orchestrator would publish them: polling within capacity, reporting, faults, cancellation.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeJobRequest } from "../../../src/contract/codec.js";
import { RunnerUnregisteredError } from "../../../src/forge/forgejo/errors.js";
import { aliasBombWorkflow } from "../../support/yaml-bombs.js";
import { RUNS_ON, runJob, startHarness, workflow } from "./harness.js";

const lines = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix} line ${i + 1}`);

describe("Forgejo runner", () => {
  it("reports a two-step job: every line once and in order, per-step ranges, final success, log archived first", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(2) });
    const job = await h.nextJob();
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: lines("one", 3) }, { lines: lines("two", 2) }], "success", {
      v: "42",
    });

    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.status === "success" ? x : undefined;
    }, "the task to succeed");
    assert.equal(
      task.archivedAtFinal,
      true,
      "the final UpdateLog (no_more) was acknowledged before the final UpdateTask",
    );
    const [s1, s2] = task.steps;
    assert.deepEqual(task.rows.slice(s1!.logIndex, s1!.logIndex + s1!.logLength), lines("one", 3));
    assert.deepEqual(task.rows.slice(s2!.logIndex, s2!.logIndex + s2!.logLength), lines("two", 2));
    assert.deepEqual([s1?.status, s2?.status], ["success", "success"]);
    assert.ok(
      task.rows.indexOf("one line 1") > task.rows.findIndex((r) => r.includes("accepted by orchestrator host-a")),
    );
    assert.equal(task.rows.at(-1), "Job succeeded");
    assert.ok(!task.rows.some((r) => /No gnomon orchestrator serves/.test(r)), "an orchestrator was there");
    assert.deepEqual(Object.fromEntries(task.outputs), { v: "42" });
    assert.ok(task.stoppedMs !== undefined && task.stoppedMs > 0);
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to let go of the task");
  });

  it("skips a job whose if: is false without queueing it, and ends the task as skipped", async (t) => {
    const h = await startHarness(t);
    const yaml = workflow(2).replace("    runs-on:", "    if: github.event_name == 'pull_request'\n    runs-on:");
    const jobId = h.forgejo.queueJob({ workflow: yaml });
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.status === "skipped" ? x : undefined;
    }, "the task to be skipped");
    assert.deepEqual(
      task.steps.map((s) => s.status),
      ["skipped", "skipped"],
    );
    assert.match(task.rows.at(-1) ?? "", /skipped: its condition \(if:\) is false/);
    await assert.rejects(h.nextJob(500), "nothing was put on the bus");
  });

  it("marks the failing step of a failing job and ends the task as failure", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(3) });
    const job = await h.nextJob();
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["ok"] }, { lines: ["boom"], conclusion: "failure" }], "failure");
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.status === "failure" ? x : undefined;
    }, "the task to fail");
    assert.deepEqual(
      task.steps.map((s) => s.status),
      ["success", "failure", "cancelled"],
    );
  });

  it("with 30 % of UpdateLog/UpdateTask answered 503 still delivers every line exactly once and the right state", async (t) => {
    const h = await startHarness(t, {
      fake: { faults: { methods: ["UpdateLog", "UpdateTask"], rate: 0.3, mode: "either" } },
    });
    const jobId = h.forgejo.queueJob({ workflow: workflow(2) });
    const job = await h.nextJob();
    await job.ack();
    const e = h.emitter(job.request);
    const first = lines("first", 120);
    const second = lines("second", 80);
    // Paced over about 40 report intervals, so that periodic reports meet the faults too.
    await runJob(e, [{ lines: first }, { lines: second, conclusion: "failure" }], "failure", {}, 50);
    const task = await h.forgejo.waitFor(
      () => {
        const x = h.forgejo.taskOfJob(jobId);
        return x?.status === "failure" && x.logArchived ? x : undefined;
      },
      "the task to end as failure with its log archived",
      60_000,
    );
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to finish reporting", 60_000);
    const injected = {
      log: h.forgejo.faultsInjected("UpdateLog"),
      task: h.forgejo.faultsInjected("UpdateTask"),
      calls: h.forgejo.calls("UpdateLog") + h.forgejo.calls("UpdateTask"),
    };
    assert.ok(injected.log > 0 && injected.task > 0, JSON.stringify(injected));
    const body = task.rows.filter((r) => r.startsWith("first ") || r.startsWith("second "));
    assert.deepEqual(body, [...first, ...second], "every line exactly once, in order");
    const [s1, s2] = task.steps;
    assert.deepEqual(task.rows.slice(s1!.logIndex, s1!.logIndex + s1!.logLength), first);
    assert.deepEqual(task.rows.slice(s2!.logIndex, s2!.logIndex + s2!.logLength), second);
    assert.deepEqual([s1?.status, s2?.status], ["success", "failure"]);
    assert.equal(task.archivedAtFinal, true);
  });

  it("ignores a redelivered event, so a line published twice appears once", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    const e = h.emitter(job.request);
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "s" });
    const ev = await e.emit({ kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "only once" }] });
    await e.again(ev);
    await e.emit({
      kind: "step-finished",
      step: 0,
      stage: "main",
      outcome: "success",
      conclusion: "success",
      outputs: {},
    });
    await e.emit({ kind: "job-finished", result: "success", outputs: {} });
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.status === "success" ? x : undefined;
    }, "success");
    assert.equal(task.rows.filter((r) => r === "only once").length, 1);
  });

  it("with capacity 1 and 3 queued tasks never holds more than 1 task, and runs all three", async (t) => {
    const h = await startHarness(t, { capacity: 1 });
    const ids = [1, 2, 3].map(() => h.forgejo.queueJob({ workflow: workflow(1) }));
    for (let i = 0; i < 3; i += 1) {
      const job = await h.nextJob();
      // While this job runs, the runner must not fetch another: give it many poll intervals to try.
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(h.forgejo.tasks().filter((x) => x.status === "running").length, 1);
      assert.equal(h.runner.activeTasks, 1);
      await job.ack();
      await runJob(h.emitter(job.request), [{ lines: [`job ${i}`] }]);
      await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to finish the task");
    }
    for (const id of ids) await h.forgejo.waitFor(() => h.forgejo.jobStatus(id) === "success", `job ${id} to succeed`);
    assert.equal(h.forgejo.maxRunning(h.creds.uuid), 1);
    assert.ok(
      h.forgejo.fetchCapacities.every((c) => c === 1),
      "never asked for more than its one slot",
    );
  });

  it("does not call FetchTask while every slot is taken, and fetches as soon as one is free", async (t) => {
    const h = await startHarness(t, { capacity: 1 });
    await h.forgejo.nextCall("FetchTask");
    const held = await h.slots.acquire(AbortSignal.timeout(5_000));
    await h.reached("waiting-for-slot"); // a fetch in flight when the slot was taken has ended
    const before = h.forgejo.calls("FetchTask");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(h.forgejo.calls("FetchTask"), before);
    held.release();
    await h.forgejo.nextCall("FetchTask");
  });

  it("asks Forgejo 14+ for as many tasks as it has room for, and takes them in one call", async (t) => {
    const h = await startHarness(t, { capacity: 3 });
    for (let i = 0; i < 3; i += 1) h.forgejo.queueJob({ workflow: workflow(1) });
    await h.forgejo.waitFor(() => h.runner.activeTasks === 3, "three tasks held");
    assert.ok(h.forgejo.fetchCapacities.includes(3));
    assert.equal(h.forgejo.tasks().length, 3);
  });

  it("keeps a task alive on Forgejo while the VM boots (no events), so the zombie reaper spares it", async (t) => {
    const h = await startHarness(t, { fake: { zombieTimeoutMs: 1_000, reapEveryMs: 50 } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await new Promise((r) => setTimeout(r, 2_500)); // far longer than the zombie timeout
    assert.equal(h.forgejo.taskOfJob(jobId)?.status, "running");
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["done"] }]);
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(jobId) === "success", "success");
  });

  it("turns a cancellation on Forgejo into a Cancel on the bus, and reports the job's cancelled end", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(2) });
    const job = await h.nextJob();
    await job.ack();
    const e = h.emitter(job.request);
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    await e.emit({ kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "working" }] });
    await h.forgejo.waitFor(() => h.forgejo.taskOfJob(jobId)?.rows.includes("working"), "the first line");

    h.forgejo.cancelJob(jobId);
    const cancel = await h.forgejo.waitFor(
      () => h.cancels.find((c) => c.jobId === job.request.id),
      "a Cancel on the bus",
    );
    assert.equal(cancel.reason, "cancelled on Forgejo");

    // The orchestrator stops the job and says so.
    await e.emit({ kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "got the signal" }] });
    await e.emit({
      kind: "job-finished",
      result: "cancelled",
      outputs: {},
      reason: "The job was cancelled on Forgejo.",
    });
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.logArchived ? x : undefined;
    }, "the last rows");
    assert.equal(task.status, "cancelled");
    assert.ok(task.rows.includes("got the signal"));
    assert.equal(task.rows.at(-1), "The job was cancelled on Forgejo.");
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to let go");
  });

  it("fails a task whose workflow cannot run, one problem a row, citing the workflow's file", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({
      file: ".forgejo/workflows/build.yaml",
      workflow:
        "on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: echo\n        bogus: 1\n      - run: echo\n        other: 2\n",
    });
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.status === "failure" && x.logArchived ? x : undefined;
    }, "the task to fail");
    assert.deepEqual(task.rows.slice(1), [
      'The workflow of job "build" cannot be run: 2 problems:',
      "  .forgejo/workflows/build.yaml:7:9: Unexpected value 'bogus'",
      "  .forgejo/workflows/build.yaml:9:9: Unexpected value 'other'",
    ]);
    assert.equal(h.jobs.length, 0, "nothing was queued for an orchestrator");
  });

  it("fails a task whose workflow is an alias bomb at once, with the limit, and takes the next task", async (t) => {
    const h = await startHarness(t);
    const bomb = h.forgejo.queueJob({ workflow: aliasBombWorkflow(8), file: ".forgejo/workflows/bomb.yml" });
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(bomb);
      return x?.status === "failure" && x.logArchived ? x : undefined;
    }, "the bomb's task to fail");
    assert.match(
      task.rows.at(-1) ?? "",
      /^The workflow Forgejo sent for task \d+ cannot be read: \.forgejo\/workflows\/bomb\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded .*\(maxNodes\)/,
    );
    h.forgejo.queueJob({ workflow: workflow(1) });
    const next = await h.nextJob();
    assert.equal(next.request.spec.steps.length, 1, "the next task became a job");
  });

  it("says in the task's log when no orchestrator serves the job's label, and leaves the job queued for one", async (t) => {
    const h = await startHarness(t, { noOrchestrator: true });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.rows.some((r) => r.includes("No gnomon orchestrator")) ? x : undefined;
    }, "the notice in the task's log");
    assert.ok(
      task.rows.includes(
        `No gnomon orchestrator serves runs-on "${RUNS_ON}" at the moment; the job waits in the queue until one that has an image for "${RUNS_ON}" connects.`,
      ),
      task.rows.join("\n"),
    );
    assert.equal(task.status, "running", "the task is not failed: an orchestrator may come");
    assert.equal(h.bus.broker.readyCount(`jobs.${RUNS_ON}`), 1, "the job waits in its queue");
  });

  it("puts a valid, sealed JobRequest on the label's queue", async (t) => {
    const h = await startHarness(t);
    h.forgejo.queueJob({ workflow: workflow(1), secrets: { DEPLOY_KEY: "hunter2" } });
    const job = await h.nextJob();
    await job.ack();
    const wire = JSON.stringify(job.request);
    assert.doesNotMatch(wire, /hunter2/);
    const task = h.forgejo.tasks()[0]!;
    assert.ok(!wire.includes(task.token), "the job token never crosses the queue in clear");
    assert.equal(decodeJobRequest(wire).ok, true);
    assert.equal(job.request.source.ref["taskId"], task.id);
  });

  it("ends with 'register again' when Forgejo no longer knows the runner", async (t) => {
    const h = await startHarness(t);
    await h.forgejo.nextCall("FetchTask");
    h.forgejo.deleteRunner(h.creds.uuid);
    const why = await h.runner.done;
    assert.ok(why instanceof RunnerUnregisteredError);
    assert.match(why.message, /run `gnomon forgejo register` again/i);
    assert.match(why.message, new RegExp(h.forgejo.url.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")));
  });

  it("works with a server that has no Declare (older than 1.21)", async (t) => {
    const h = await startHarness(t, { fake: { declare: false } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["x"] }]);
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(jobId) === "success", "success");
  });

  it("gets back a task whose FetchTask answer was lost, by sending the same request key again", async (t) => {
    const h = await startHarness(t);
    await h.forgejo.nextCall("FetchTask");
    h.forgejo.failNext("FetchTask", 1, "after");
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    assert.equal(h.forgejo.faultsInjected("FetchTask"), 1);
    assert.equal(job.request.source.ref["taskId"], h.forgejo.taskOfJob(jobId)?.id);
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["x"] }]);
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(jobId) === "success", "success");
  });
});

describe("Forgejo runner outages", () => {
  it("keeps polling through failing FetchTask calls and takes the job once Forgejo answers again", async (t) => {
    const h = await startHarness(t);
    await h.forgejo.nextCall("FetchTask");
    h.forgejo.failNext("FetchTask", 4, "before");
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    assert.equal(h.forgejo.faultsInjected("FetchTask"), 4);
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["after the outage"] }]);
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(jobId) === "success", "success");
  });

  it("stops the job when Forgejo's stale-task reaper failed the task, and gives up the closed log", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    const e = h.emitter(job.request);
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    await h.forgejo.waitFor(() => h.forgejo.taskOfJob(jobId)?.steps[0]?.status === "running", "the step to run");
    assert.equal(h.forgejo.reap(Date.now() + 60 * 60_000), 1);
    const cancel = await h.forgejo.waitFor(() => h.cancels.find((c) => c.jobId === job.request.id), "a Cancel");
    assert.match(cancel.reason, /ended on Forgejo with result failure/);
    await e.emit({ kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "too late" }] });
    await e.emit({ kind: "job-finished", result: "cancelled", outputs: {} });
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to let go of the task");
    const task = h.forgejo.taskOfJob(jobId);
    assert.equal(task?.status, "failure", "the server's verdict stands");
    assert.ok(!task?.rows.includes("too late"), "the archived log took no more rows");
  });
});

describe("Forgejo runner stop", () => {
  it("takes no new task, waits for running ones until the deadline, then cancels them and still reports them", async (t) => {
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    h.forgejo.queueJob({ workflow: workflow(1) }); // must stay waiting: the runner is stopping
    await h.runner.stop(AbortSignal.timeout(300));
    assert.equal(await h.runner.done, undefined, "a requested stop is not an error");
    const task = h.forgejo.taskOfJob(jobId);
    assert.equal(task?.status, "cancelled");
    assert.equal(task?.logArchived, true);
    assert.match(task?.rows.at(-1) ?? "", /gnomon was stopped before the job finished/);
    assert.ok(
      h.cancels.some((c) => c.jobId === job.request.id),
      "the orchestrator was told to cancel",
    );
    assert.equal(h.forgejo.tasks().length, 1, "no task was taken after the stop began");
  });
});

describe("Forgejo runner cancellation without an answer", () => {
  it("closes a cancelled task itself when the job never confirms, and frees the slot", async (t) => {
    const h = await startHarness(t, { runner: { cancelGraceMs: 300 } });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    await h.nextJob(); // taken off the queue, but the orchestrator never says a word
    h.forgejo.cancelJob(jobId);
    await h.forgejo.waitFor(() => h.cancels.length > 0, "a Cancel on the bus");
    await h.forgejo.waitFor(() => h.runner.activeTasks === 0, "the runner to give the task up");
    const task = h.forgejo.taskOfJob(jobId);
    assert.equal(task?.logArchived, true);
    assert.match(task?.rows.at(-1) ?? "", /did not confirm that it stopped within 0 s, so gnomon closed it here/);
    await h.forgejo.nextCall("FetchTask"); // the freed slot lets the poller ask again
  });
});
