// The jobs this runner holds, on disk (see InFlightFile): if the process dies mid-job, its
// successor completes them on GitHub as failed at once, with a line saying why, instead of GitHub
// waiting for their locks to lapse (about ten minutes) and then reporting "lost communication". The
// job's own access token is kept (mode 0600) because completing needs it; secrets are not.
import type { Logger } from "../../telemetry/log.js";
import { InFlightFile } from "../in-flight-file.js";
import { LogMasker } from "../log-masker.js";
import type { JobChannel } from "./job-channel.js";
import { JobReport } from "./job-report.js";
import type { GitHubJob } from "./to-job-request.js";

/** What completing a job needs, without its secrets. */
export type HeldJobRecord = Omit<GitHubJob, "maskValues" | "maskPatterns" | "feedStreamUrl">;

export const LOST_RUNNER_NOTE =
  "the runner process that held this job stopped unexpectedly (crash, kill or power loss); its successor completed the job as failed and stopped it in its VM. Re-run the job.";

/** The GitHub runner's file of held jobs (see InFlightFile), one entry per job. */
export function heldJobsFile(path: string, log: Logger): InFlightFile<HeldJobRecord> {
  return new InFlightFile(path, isHeldJobRecord, (r) => r.contractId, log);
}

/** What of a job goes on disk: everything but what is secret or only useful while it runs. */
export function heldJobRecord(job: GitHubJob): HeldJobRecord {
  const { maskValues: _m, maskPatterns: _p, feedStreamUrl: _f, ...record } = job;
  return record;
}

/** The job as a GitHubJob again: nothing to mask but its token. */
export function jobOfRecord(r: HeldJobRecord): GitHubJob {
  return { ...r, feedStreamUrl: undefined, maskValues: [r.accessToken], maskPatterns: [] };
}

/** Completes a job of a runner process that died: failed, with one line saying why. */
export async function completeLostJob(
  job: GitHubJob,
  channel: JobChannel,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  const report = new JobReport(job, { masker: new LogMasker(job.maskValues) });
  const now = Date.now();
  report.note(LOST_RUNNER_NOTE, now);
  report.finish("failure", {}, LOST_RUNNER_NOTE, now);
  try {
    await channel.complete(report, signal);
    log.warn({ jobId: job.contractId }, "completed a job that the previous runner process held when it died");
  } catch (err) {
    log.warn({ err, jobId: job.contractId }, "could not complete a job of the previous runner process on GitHub");
  }
}

function isHeldJobRecord(x: unknown): x is HeldJobRecord {
  if (typeof x !== "object" || x === null) return false;
  const r = x as Record<string, unknown>;
  return (
    (r["flow"] === "run-service" || r["flow"] === "classic") &&
    ["contractId", "jobId", "planId", "timelineId", "serviceUrl", "accessToken"].every(
      (k) => typeof r[k] === "string",
    ) &&
    Array.isArray(r["steps"])
  );
}
