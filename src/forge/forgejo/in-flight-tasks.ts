// The tasks this runner holds, on disk, so that a runner that died mid-job (a crash, SIGKILL, a
// power cut) is followed by one that ends those tasks on Forgejo at once, with a line in their
// logs saying what happened, instead of leaving them "running" until Forgejo's stale-task reaper
// fails them minutes later without a word. Their jobs are stopped on the orchestrators too.
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "../../telemetry/log.js";
import type { ForgejoClient } from "./client.js";
import { isTransient } from "./errors.js";
import { retry } from "./retry.js";

export interface InFlightTask {
  readonly taskId: string;
  readonly jobId: string;
}

/** The last words of a task whose runner process died. */
export const LOST_RUNNER_LINE =
  "gnomon: the runner process that held this job stopped unexpectedly (crash, kill or power loss); its successor ended the job as failed and stopped it in its VM. Re-run the job.";

export class InFlightTasks {
  readonly #path: string;
  readonly #log: Logger;
  readonly #tasks = new Map<string, InFlightTask>();
  #writing: Promise<void> = Promise.resolve();

  constructor(path: string, log: Logger) {
    this.#path = path;
    this.#log = log;
  }

  /** What a previous process left: tasks it held when it died. Empty when the file is missing. */
  async leftovers(): Promise<InFlightTask[]> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as { tasks?: unknown };
      const tasks = Array.isArray(parsed.tasks) ? parsed.tasks : [];
      return tasks.filter(
        (t): t is InFlightTask =>
          typeof t === "object" && t !== null && typeof t.taskId === "string" && typeof t.jobId === "string",
      );
    } catch (err) {
      this.#log.warn({ err, file: this.#path }, "the in-flight tasks file is damaged; ignoring it");
      return [];
    }
  }

  add(task: InFlightTask): Promise<void> {
    this.#tasks.set(task.jobId, task);
    return this.#save();
  }

  remove(jobId: string): Promise<void> {
    if (!this.#tasks.delete(jobId)) return this.#writing;
    return this.#save();
  }

  /** Forgets what is on disk (after the leftovers were dealt with). */
  clear(): Promise<void> {
    return this.#save();
  }

  /** Writes are queued, each whole (temp file + rename), so a crash never leaves half a file. */
  #save(): Promise<void> {
    const body = `${JSON.stringify({ tasks: [...this.#tasks.values()] }, null, 1)}\n`;
    this.#writing = this.#writing
      .then(async () => {
        await mkdir(dirname(this.#path), { recursive: true });
        const tmp = `${this.#path}.${randomUUID().slice(0, 8)}.tmp`;
        await writeFile(tmp, body, { mode: 0o600 });
        await rename(tmp, this.#path);
      })
      .catch((err: unknown) => this.#log.warn({ err, file: this.#path }, "could not save the in-flight tasks"));
    return this.#writing;
  }
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
  const within = AbortSignal.any([signal, AbortSignal.timeout(60_000)]);
  const call = <T>(fn: () => Promise<T>) =>
    retry(fn, { intervals: { baseMs: 500, maxMs: 10_000 }, signal: within, retryable: isTransient });
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
