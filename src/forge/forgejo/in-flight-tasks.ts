// The tasks this runner holds, on disk, so that a runner that died mid-job (a crash, SIGKILL, a
// power cut) is followed by one that ends those tasks on Forgejo at once, with a line in their
// logs saying what happened, instead of leaving them "running" until Forgejo's stale-task reaper
// fails them minutes later without a word. Their jobs are stopped on the orchestrators too.

import { withTimeout } from "../../lifecycle/abort.js";
import { retry } from "../../lifecycle/retry.js";
import type { Logger } from "../../telemetry/log.js";
import { InFlightFile } from "../in-flight-file.js";
import type { ForgejoClient } from "./client.js";
import { isTransient } from "./errors.js";

export interface InFlightTask {
  readonly taskId: string;
  readonly jobId: string;
}

/** The last words of a task whose runner process died. */
export const LOST_RUNNER_LINE =
  "gnomon: the runner process that held this job stopped unexpectedly (crash, kill or power loss); its successor ended the job as failed and stopped it in its VM. Re-run the job.";

/** The Forgejo runner's file of held tasks (see InFlightFile), one entry per job. */
export function inFlightTasksFile(path: string, log: Logger): InFlightFile<InFlightTask> {
  return new InFlightFile(path, isInFlightTask, (t) => t.jobId, log);
}

function isInFlightTask(t: unknown): t is InFlightTask {
  if (typeof t !== "object" || t === null) return false;
  const { taskId, jobId } = t as Record<string, unknown>;
  return typeof taskId === "string" && typeof jobId === "string";
}

/**
 * Ends a task of a runner process that died: a closing log line (after the rows Forgejo has),
 * the log archived, the task failed. A task Forgejo already ended stays as it is.
 */
export async function failLostTask(
  client: ForgejoClient,
  task: InFlightTask,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  const taskId = BigInt(task.taskId);
  const now = Date.now();
  // Forgejo briefly down is waited out for a minute; the task is its stale-task reaper's after that.
  const within = withTimeout(60_000, signal);
  const call = <T>(fn: () => Promise<T>) =>
    retry(fn, { backoff: { baseMs: 500, maxMs: 10_000 }, signal: within, retryable: isTransient });
  try {
    const { ackIndex } = await call(() =>
      client.updateLog({ taskId, index: 0, rows: [], noMore: false }, { signal: within }),
    );
    await call(() =>
      client.updateLog(
        { taskId, index: ackIndex, rows: [{ timeMs: now, content: LOST_RUNNER_LINE }], noMore: true },
        { signal: within },
      ),
    ).catch((err: unknown) => log.debug({ err, taskId: task.taskId }, "the lost task's log could not be closed"));
    const r = await call(() =>
      client.updateTask({ id: taskId, result: "failure", stoppedAtMs: now, steps: [] }, {}, { signal: within }),
    );
    log.warn(
      { taskId: task.taskId, jobId: task.jobId, result: r.result },
      "ended a task that the previous runner process held when it died",
    );
  } catch (err) {
    log.warn({ err, taskId: task.taskId }, "could not end a task of the previous runner process on Forgejo");
  }
}
