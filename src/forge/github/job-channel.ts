// What a held job needs from GitHub, whichever service the job came from: renew its lock, show its
// progress and live lines, and complete it. Implemented by the run service + Results (v2) and the
// classic plan hub. A channel makes single attempts (plus a few quick retries of one upload); how
// long to keep trying, and when to give up on logs and complete anyway, is the caller's decision.
import type { JobReport } from "./job-report.js";

export interface JobChannel {
  /** Renews the job's lock; resolves with the new expiry. Rejects with JobGoneError when GitHub no longer knows the job. */
  renew(signal: AbortSignal): Promise<Date>;
  /** Marks the job as started (the classic job record); idempotent. */
  begin(report: JobReport, signal: AbortSignal): Promise<void>;
  /**
   * Sends what changed since the last call: step states and the logs of finished steps.
   * Safe to call again after a failure: it resends from what GitHub acknowledged.
   */
  sync(report: JobReport, signal: AbortSignal): Promise<void>;
  /**
   * Sends the lines that arrived since the last call to the live console. Best effort, as in the
   * official runner: never rejects, and waits on nothing but the console itself (lines it cannot
   * send are dropped; the steps' logs keep them).
   */
  live(report: JobReport): Promise<void>;
  /** The last sync of a finished report and the job-wide log or record; safe to call again. */
  flush(report: JobReport, signal: AbortSignal): Promise<void>;
  /**
   * One attempt at completing the job with its result, outputs and steps (the report must be
   * finished). Rejects with JobGoneError when GitHub no longer accepts it.
   */
  complete(report: JobReport, signal: AbortSignal): Promise<void>;
  /** Names of the logs that have not reached GitHub ("Say hello", "the job log"), for the job's last words. */
  missingLogs(report: JobReport): string[];
  /** Lets go of what the channel holds open (the live console socket); the job is over. */
  dispose?(): void;
}

/** Timings of the channels, defaults as the official runner's; tests shorten them. */
export interface ChannelTimings {
  readonly callTimeoutMs: number;
  /** Log uploads and step updates: attempts per call, and the wait between them. */
  readonly uploadAttempts: number;
  readonly uploadRetryMs: number;
}

export const DEFAULT_CHANNEL_TIMINGS: ChannelTimings = {
  callTimeoutMs: 60_000,
  uploadAttempts: 3,
  uploadRetryMs: 2_000,
};
