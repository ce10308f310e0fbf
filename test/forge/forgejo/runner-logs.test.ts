// When a task's log rows reach the fake Forgejo: on their own between two full reports (not with
// the next UpdateTask), a burst in one UpdateLog, never two calls of a task in flight at once, and
// still every row once and in order when answers are lost.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobEvent } from "../../../src/contract/job-event.js";
import type { TaskView } from "../../fakes/forgejo-server.js";
import { type Emitter, type Harness, type HarnessOptions, runJob, startHarness, workflow } from "./harness.js";

/** A full report (UpdateTask) far beyond any wait below: rows that arrive before it went on their own. */
const NO_REPORT_MS = 10 * 60_000;

/** A harness whose task has been accepted, with the rows so far on Forgejo. */
async function acceptedTask(
  t: Parameters<typeof startHarness>[0],
  o: HarnessOptions,
): Promise<{ h: Harness; e: Emitter; task: TaskView }> {
  const h = await startHarness(t, o);
  const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
  const job = await h.nextJob();
  await job.ack();
  const e = h.emitter(job.request);
  await e.emit({ kind: "accepted", orchestrator: "host-a" });
  const task = await h.forgejo.waitFor(() => {
    const x = h.forgejo.taskOfJob(jobId);
    return x?.rows.some((r) => r.includes("accepted by orchestrator")) ? x : undefined;
  }, "the accepted line on Forgejo");
  return { h, e, task };
}

const log = (text: string): Parameters<Emitter["emit"]>[0] => ({
  kind: "log",
  step: 0,
  stage: "main",
  lines: [{ t: Date.now(), text }],
});

describe("Forgejo runner log rows", () => {
  it("sends a new row on its own shortly after it arrives, without waiting for the next full report", async (t) => {
    const { h, e, task } = await acceptedTask(t, { runner: { reportIntervalMs: NO_REPORT_MS } });
    const reports = h.forgejo.calls("UpdateTask");
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    await e.emit(log("hello"));
    await h.forgejo.waitFor(() => task.rows.includes("hello"), "the row on Forgejo");
    assert.equal(h.forgejo.calls("UpdateTask"), reports, "no full report carried it");
  });

  it("sends a burst of rows that arrive within the wait in one UpdateLog", async (t) => {
    const { h, e, task } = await acceptedTask(t, {
      runner: { reportIntervalMs: NO_REPORT_MS, logDelayMs: 2_000, logIntervalMs: 0 },
    });
    const calls = h.forgejo.calls("UpdateLog");
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    const burst = Array.from({ length: 20 }, (_, i) => `burst ${i}`);
    for (const text of burst) {
      await e.emit(log(text));
      await new Promise((r) => setTimeout(r, 5)); // a row an event, each on its own turn of the reporter
    }
    await h.forgejo.waitFor(() => task.rows.includes("burst 19"), "the burst on Forgejo");
    assert.deepEqual(
      task.rows.filter((r) => r.startsWith("burst ")),
      burst,
    );
    assert.equal(h.forgejo.calls("UpdateLog") - calls, 1, "one UpdateLog for the burst");
  });

  it("never has two calls of a task in flight: rows that arrive during a slow UpdateLog wait for its answer", async (t) => {
    const { h, e, task } = await acceptedTask(t, {
      runner: { reportIntervalMs: NO_REPORT_MS, logDelayMs: 0, logIntervalMs: 0 },
    });
    await e.emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    h.forgejo.slowNext("UpdateLog", 1, 1_000);
    await e.emit(log("slow"));
    await h.forgejo.waitFor(() => task.callsInFlight === 1 && task.rows.includes("slow"), "the slow UpdateLog held");
    const calls = h.forgejo.calls("UpdateLog");
    for (let i = 0; i < 5; i++) await e.emit(log(`meanwhile ${i}`));
    await h.forgejo.waitFor(() => task.rows.includes("meanwhile 4"), "the rows after the slow call");
    assert.equal(task.maxCallsInFlight, 1, "one call of the task at a time");
    assert.ok(h.forgejo.calls("UpdateLog") > calls, "the later rows went in a call of their own");
  });

  it("with a third of UpdateLog answers lost or refused, still delivers rows sent on their own exactly once, in order", async (t) => {
    const h = await startHarness(t, {
      fake: { faults: { methods: ["UpdateLog"], rate: 0.3, mode: "either", seed: 7 } },
      runner: { reportIntervalMs: 300, logDelayMs: 5, logIntervalMs: 5 },
    });
    const jobId = h.forgejo.queueJob({ workflow: workflow(1) });
    const job = await h.nextJob();
    await job.ack();
    const lines = Array.from({ length: 150 }, (_, i) => `row ${i}`);
    const e = h.emitter(job.request);
    const paced: Emitter = {
      ...e,
      // One line an event, a little apart, so that most rows go between two full reports.
      async emit(body): Promise<JobEvent> {
        if (body.kind !== "log") return e.emit(body);
        let last: JobEvent | undefined;
        for (const line of body.lines) {
          last = await e.emit({ ...body, lines: [line] });
          await new Promise((r) => setTimeout(r, 2));
        }
        return last!;
      },
    };
    await runJob(paced, [{ lines }]);
    const task = await h.forgejo.waitFor(
      () => {
        const x = h.forgejo.taskOfJob(jobId);
        return x?.status === "success" && x.logArchived ? x : undefined;
      },
      "the task to succeed with its log archived",
      60_000,
    );
    assert.ok(h.forgejo.faultsInjected("UpdateLog") > 0, "faults were injected");
    assert.deepEqual(
      task.rows.filter((r) => r.startsWith("row ")),
      lines,
      "every row once, in order",
    );
    assert.equal(task.maxCallsInFlight, 1);
    assert.equal(task.archivedAtFinal, true);
  });
});
