// The end of a job on GitHub: its last step updates and logs, then the completion itself. Both ride
// out transient failures with backoff: the logs for `finalFlushMs` after the job ended, the
// completion until the job's lock runs out. Logs that never arrive do not stop the completion; the
// job then says which are missing (an annotation) and so does the daemon's log. It never waits past
// its deadline, and the caller keeps the lock renewed meanwhile.

import type { Intervals } from "../../lifecycle/backoff.js";
import { retryUntil } from "../../lifecycle/retry.js";
import type { Logger } from "../../telemetry/log.js";
import { Outage } from "../outage.js";
import { isTransient, JobGoneError } from "./errors.js";
import type { JobChannel } from "./job-channel.js";
import type { JobReport } from "./job-report.js";

export interface CompletionTimings {
  /** How long after the job's end its last logs may still be retried before it is completed without them. */
  readonly finalFlushMs: number;
  /** Backoff between attempts at the last logs and at the completion (official: 5 s). */
  readonly completeRetry: Intervals;
}

export interface CompletionOptions {
  readonly channel: JobChannel;
  /** Finished. */
  readonly report: JobReport;
  readonly log: Logger;
  readonly timings: CompletionTimings;
  /**
   * No attempt starts after this (ms since the epoch): the end of the job's lock, or sooner when
   * the runner is stopping. Read before each attempt. One attempt at each part always happens.
   */
  readonly until: () => number;
  /** Ends the completion at once: GitHub dropped the job, or the runner stops now. */
  readonly signal: AbortSignal;
  /** The outage of the job's reporting, if one is going on already (then it is not logged again). */
  readonly reporting: Outage;
  readonly now?: () => number;
}

/** `gave-up`: the deadline came first, or GitHub refused the completion for good. */
export type CompletionResult = "completed" | "gone" | "gave-up" | "aborted";

export const REPORTING_OUTAGE = {
  failing: "could not report the job's progress to GitHub; retrying",
  back: "reporting to GitHub works again",
} as const;

export async function completeOnGitHub(o: CompletionOptions): Promise<CompletionResult> {
  const { channel, report, log, timings } = o;
  const now = o.now ?? Date.now;
  const flushUntil = Math.min(now() + timings.finalFlushMs, o.until());
  const flushed = await retryUntil((signal) => channel.flush(report, signal), {
    until: () => Math.min(flushUntil, o.until()),
    backoff: timings.completeRetry,
    retryable: isTransient,
    signal: o.signal,
    onFailure: (err) => o.reporting.failed(err),
    onSuccess: () => o.reporting.recovered(),
    now,
  });
  if (flushed.t === "aborted") return "aborted";
  if (flushed.t === "failed") {
    const missing = channel.missingLogs(report);
    log.warn(
      { err: flushed.error, missing },
      "could not send all of the job's steps and logs to GitHub in time; completing the job without them",
    );
    report.warnAtEnd(
      missing.length > 0
        ? `gnomon could not upload the log${missing.length === 1 ? "" : "s"} of ${listed(missing)} to GitHub ` +
            `before completing the job (${flushed.error.message}). The steps' results are complete.`
        : `gnomon could not send the last step updates of this job to GitHub before completing it (${flushed.error.message}).`,
    );
  }

  const completing = new Outage(
    log,
    {
      failing: "github did not accept the job's completion; retrying until the job's lock runs out",
      back: "github accepted the job's completion",
    },
    now,
  );
  const completed = await retryUntil((signal) => channel.complete(report, signal), {
    until: o.until,
    backoff: timings.completeRetry,
    retryable: (err) => !(err instanceof JobGoneError) && isTransient(err),
    signal: o.signal,
    onFailure: (err) => completing.failed(err),
    onSuccess: () => completing.recovered(),
    now,
  });
  switch (completed.t) {
    case "done":
      return "completed";
    case "aborted":
      return "aborted";
    case "failed":
      if (completed.error instanceof JobGoneError) {
        log.warn({ err: completed.error }, "github no longer accepts the job's completion");
        return "gone";
      }
      log.error({ err: completed.error }, "could not complete the job on GitHub");
      return "gave-up";
  }
}

/** "a", "a and b", "a, b and c". */
function listed(names: readonly string[]): string {
  return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}
