// The jobs this runner holds, on disk (see InFlightFile): if the process dies mid-job, its
// successor completes them on GitHub at once, with a line saying why, instead of GitHub waiting for
// their locks to lapse (about ten minutes) and then reporting "lost communication". Each entry keeps
// the job's own access token (mode 0600) because completing needs it, and how the job's steps
// stood, so the successor reports each step as it ended; secrets and log lines are not kept.
import { z } from "zod";
import { JobResult, StepStage } from "../../contract/job-event.js";
import { toError } from "../../lifecycle/to-error.js";
import type { Logger } from "../../telemetry/log.js";
import { InFlightFile } from "../in-flight-file.js";
import { LogMasker } from "../log-masker.js";
import { Outage } from "../outage.js";
import { type CompletionResult, type CompletionTimings, completeOnGitHub, REPORTING_OUTAGE } from "./completion.js";
import { JobGoneError } from "./errors.js";
import type { JobChannel } from "./job-channel.js";
import { JobReport, type RecordProgress } from "./job-report.js";
import type { RenewTimings } from "./renewer.js";
import type { GitHubJob } from "./to-job-request.js";

/** What completing a job needs, without its secrets. */
export type InFlightJob = Omit<GitHubJob, "maskValues" | "maskPatterns" | "feedStreamUrl"> & {
  /** How the job's records stood when last saved (absent before the first event). */
  readonly progress?: readonly RecordProgress[];
  /** Set when the process stopped after the job had ended but before GitHub accepted its completion. */
  readonly outcome?: {
    readonly result: JobResult;
    readonly outputs: Readonly<Record<string, string>>;
    readonly reason: string | undefined;
  };
};

export const LOST_RUNNER_NOTE =
  "the runner process that held this job stopped unexpectedly (crash, kill or power loss); its successor completed the job as failed and stopped it in its VM. Re-run the job.";

/** The GitHub runner's file of held jobs (see InFlightFile), one entry per job. */
export function inFlightJobsFile(path: string, log: Logger): InFlightFile<InFlightJob> {
  return new InFlightFile(path, isInFlightJob, (r) => r.contractId, log);
}

/** What of a job goes on disk: everything but what is secret or only useful while it runs. */
export function inFlightJob(
  job: GitHubJob,
  progress?: readonly RecordProgress[],
  outcome?: InFlightJob["outcome"],
): InFlightJob {
  const { maskValues: _m, maskPatterns: _p, feedStreamUrl: _f, ...record } = job;
  return { ...record, ...(progress ? { progress } : {}), ...(outcome ? { outcome } : {}) };
}

/** The job as a GitHubJob again: nothing to mask but its token. */
export function jobOfInFlight(r: InFlightJob): GitHubJob {
  const { progress: _p, outcome: _o, ...job } = r;
  return { ...job, feedStreamUrl: undefined, maskValues: [r.accessToken], maskPatterns: [] };
}

export interface LostJobOptions {
  readonly channel: JobChannel;
  /** Aborts when the runner stops; the entry then stays for the next process. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly timings: CompletionTimings & { readonly renew: RenewTimings };
}

/**
 * Completes a job of a runner process that stopped without completing it: with the result it had
 * if it had one, as failed with one line saying why otherwise. Every step is reported as it stood;
 * steps still running fail, steps never started are skipped. The lock is renewed first: that says
 * whether GitHub still holds the job and how long the completion may try.
 */
export async function completeLostJob(record: InFlightJob, o: LostJobOptions): Promise<CompletionResult> {
  const job = jobOfInFlight(record);
  const log = o.log.child({ jobId: job.contractId, githubJobId: job.jobId });
  const report = new JobReport(job, { masker: new LogMasker(job.maskValues), progress: record.progress ?? [] });
  let until: number;
  try {
    until = (await o.channel.renew(o.signal)).getTime() + o.timings.renew.graceMs;
  } catch (err) {
    if (o.signal.aborted) return "aborted";
    if (err instanceof JobGoneError) {
      log.info("a job the previous runner process held is over on GitHub already");
      return "gone";
    }
    // GitHub did not answer: its lock may still hold, so try for as long as logs may take.
    until = Date.now() + o.timings.finalFlushMs;
  }
  const now = Date.now();
  if (record.outcome) report.finish(record.outcome.result, record.outcome.outputs, record.outcome.reason, now);
  else {
    report.note(LOST_RUNNER_NOTE, now);
    report.finish("failure", {}, LOST_RUNNER_NOTE, now);
  }
  try {
    const result = await completeOnGitHub({
      channel: o.channel,
      report,
      log,
      timings: o.timings,
      until: () => until,
      signal: o.signal,
      reporting: new Outage(log, REPORTING_OUTAGE),
    });
    if (result === "completed")
      log.warn(
        record.outcome
          ? "completed a job that the previous runner process ended but could not complete before it stopped"
          : "completed a job that the previous runner process held when it died",
      );
    return result;
  } catch (err) {
    log.warn({ err: toError(err) }, "could not complete a job of the previous runner process on GitHub");
    return "gave-up";
  } finally {
    o.channel.dispose?.();
  }
}

const nullableTime = z.number().nullable();
const SavedProgress = z.array(
  z.object({
    id: z.string(),
    kind: z.enum(["setup", "step", "complete"]),
    stepIndex: z.number().int().nonnegative().nullable(),
    stage: StepStage.nullable(),
    name: z.string(),
    refName: z.string(),
    order: z.number().int().positive(),
    actionName: z.string(),
    ref: z.string(),
    state: z.enum(["pending", "inProgress", "completed"]),
    result: z.enum(["succeeded", "succeededWithIssues", "failed", "canceled", "skipped", "abandoned"]).nullable(),
    startTime: nullableTime,
    finishTime: nullableTime,
  }),
) satisfies z.ZodType<readonly RecordProgress[]>;
const SavedOutcome = z.object({
  result: JobResult,
  outputs: z.record(z.string(), z.string()),
  reason: z.string().optional(),
});

function isInFlightJob(x: unknown): x is InFlightJob {
  if (typeof x !== "object" || x === null) return false;
  const r = x as Record<string, unknown>;
  // A damaged progress or outcome is dropped: the job is still worth completing without it.
  if (r["progress"] !== undefined && !SavedProgress.safeParse(r["progress"]).success) delete r["progress"];
  if (r["outcome"] !== undefined && !SavedOutcome.safeParse(r["outcome"]).success) delete r["outcome"];
  return (
    (r["flow"] === "run-service" || r["flow"] === "classic") &&
    ["contractId", "jobId", "planId", "timelineId", "serviceUrl", "accessToken"].every(
      (k) => typeof r[k] === "string",
    ) &&
    Array.isArray(r["steps"])
  );
}
