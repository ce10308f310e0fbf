// The Forgejo runner against the fake Forgejo, driven by JobEvents on the in-process bus as an
// orchestrator would publish them: polling within capacity, request keys, reporting, faults,
// cancellation, and servers older than Forgejo 15 (no request keys) and 14 (one task per call).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeJobRequest } from "../../../src/contract/codec.js";
import { RunnerUnregisteredError } from "../../../src/forge/forgejo/errors.js";
import { maskedLine, printedForms } from "../../support/secret-prints.js";
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

  it("masks the task's secrets in every form before rows leave, even in events an orchestrator did not mask", async (t) => {
    const secret = `it's "a/b+c" é😀\\x`;
    const forms = printedForms(secret);
    const h = await startHarness(t);
    const jobId = h.forgejo.queueJob({ workflow: workflow(1), secrets: { MY_SECRET: secret } });
    const job = await h.nextJob();
    await job.ack();
    const token = h.forgejo.taskOfJob(jobId)?.token ?? "";
    assert.ok(token.length > 10, "the task has a job token");
    const printed = forms.map((f) => `${f.name}: ${f.printed}`);
    await runJob(
      h.emitter(job.request),
      [{ lines: [...printed, `token ${token}`, `basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`] }],
      "success",
      { leaked: encodeURIComponent(secret) },
    );

    const task = await h.forgejo.waitFor(() => {
      const x = h.forgejo.taskOfJob(jobId);
      return x?.status === "success" ? x : undefined;
    }, "the task to succeed");
    const s = task.steps[0]!;
    assert.deepEqual(task.rows.slice(s.logIndex, s.logIndex + s.logLength), [
      ...forms.map((f) => maskedLine(f, `${f.name}: `)),
      "token ***",
      "basic ***",
    ]);
    assert.deepEqual(Object.fromEntries(task.outputs), { leaked: "***" });
    const stored = [...task.rows, ...task.outputs.values()].join("\n");
    for (const f of forms) assert.ok(!stored.includes(f.encoded), `Forgejo holds no ${f.name} form of the secret`);
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
      h.forgejo.fetchCapacities.length >= 3 && h.forgejo.fetchCapacities.every((c) => c === 1),
      `asked for its one slot each time: ${h.forgejo.fetchCapacities.join(",")}`,
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
    assert.match(
      why.message,
      /register again in place of the old credentials: `gnomon forgejo register --replace --instance /,
    );
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

describe("Forgejo runner request keys (Forgejo 15+)", () => {
  it("gets back the task of a FetchTask that outlived its deadline: the retries keep the request key, wait out its lock, and take the replay", async (t) => {
    const h = await startHarness(t); // the runner gives a FetchTask 2 s
    await h.forgejo.nextCall("FetchTask");
    h.forgejo.slowNext("FetchTask", 1, 3_000); // Forgejo assigns the task at once, but answers after 3 s
    const first = h.forgejo.fetchRequestKeys.length;
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    const task = h.forgejo.taskOfJob(jobId);
    assert.equal(job.request.source.ref["taskId"], task?.id, "the task the slow call assigned, replayed");
    assert.equal(h.forgejo.tasks().length, 1, "Forgejo made no second task");
    assert.ok(h.forgejo.lockedRefusals >= 1, "a retry came while the slow call still held the key");
    const keys = h.forgejo.fetchRequestKeys.slice(first);
    assert.ok(
      keys.length >= 3 && keys.every((k) => k === keys[0]),
      `the slow call, the refused retries and the replay carried one key: ${keys.join(", ")}`,
    );
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["once"] }]);
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(jobId) === "success", "success");
    await h.forgejo.nextCall("FetchTask");
    assert.notEqual(h.forgejo.fetchRequestKeys.at(-1), keys[0], "a new key once a call succeeded");
  });
});

describe("Forgejo runner against servers before Forgejo 15 and 14 (and Gitea)", () => {
  it("fills a capacity of 3 from a server that hands out one task per call and ignores request keys, and runs every job", async (t) => {
    const h = await startHarness(t, { capacity: 3, fake: { multiTask: false, requestKeys: false } });
    const ids = [1, 2, 3].map(() => h.forgejo.queueJob({ workflow: workflow(1) }));
    const jobs = [await h.nextJob(), await h.nextJob(), await h.nextJob()];
    assert.equal(h.runner.activeTasks, 3);
    assert.equal(h.forgejo.maxRunning(h.creds.uuid), 3);
    assert.ok(h.forgejo.fetchCapacities.includes(3), "it asked for all its room (the server ignores that)");
    assert.ok(
      h.forgejo.tasksPerFetch.every((n) => n <= 1),
      `the server gave at most one task per call: ${h.forgejo.tasksPerFetch.join(",")}`,
    );
    for (const [i, job] of jobs.entries()) {
      await job.ack();
      await runJob(h.emitter(job.request), [{ lines: [`job ${i}`] }]);
    }
    for (const id of ids) await h.forgejo.waitFor(() => h.forgejo.jobStatus(id) === "success", `job ${id} to succeed`);
  });

  it("loses only the task of a lost FetchTask answer to a server without request keys (its reaper ends it), and takes the next job", async (t) => {
    const h = await startHarness(t, { fake: { requestKeys: false } });
    await h.forgejo.nextCall("FetchTask");
    h.forgejo.failNext("FetchTask", 1, "after");
    const lost = h.forgejo.queueJob({ workflow: workflow(1) });
    await h.forgejo.waitFor(() => h.forgejo.faultsInjected("FetchTask") === 1, "the lost answer");
    await h.forgejo.nextCall("FetchTask"); // the retry with the same key: nothing comes back
    const next = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    assert.equal(job.request.source.ref["taskId"], h.forgejo.taskOfJob(next)?.id, "the next job, not the lost one");
    await job.ack();
    await runJob(h.emitter(job.request), [{ lines: ["x"] }]);
    await h.forgejo.waitFor(() => h.forgejo.jobStatus(next) === "success", "success");
    assert.equal(h.jobs.length, 1, "the lost task never reached an orchestrator");
    assert.equal(h.forgejo.taskOfJob(lost)?.status, "running", "Forgejo still counts it running");
    assert.equal(h.forgejo.reap(Date.now() + 60 * 60_000), 1, "until its zombie reaper fails it");
    assert.equal(h.forgejo.jobStatus(lost), "failure");
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
