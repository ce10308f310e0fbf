// What a held job needs from GitHub, whichever service the job came from: renew its lock, show its
// progress, and complete it. Implemented by the run service + Results (v2) and the classic plan hub.
import type { JobReport } from "./job-report.js";

export interface JobChannel {
  /** Renews the job's lock; resolves with the new expiry. Rejects with JobGoneError when GitHub no longer knows the job. */
  renew(signal: AbortSignal): Promise<Date>;
  /** Marks the job as started (the classic job record); idempotent. */
  begin(report: JobReport, signal: AbortSignal): Promise<void>;
  /**
   * Sends what changed since the last call: step states, live lines, the logs of finished steps.
   * Safe to call again after a failure: it resends from what GitHub acknowledged.
   */
  sync(report: JobReport, signal: AbortSignal): Promise<void>;
  /** Final sync, the job log, and the completion with result and outputs. The report must be finished. */
  complete(report: JobReport, signal: AbortSignal): Promise<void>;
  /** Lets go of what the channel holds open (the live console socket); the job is over. */
  dispose?(): void;
}

/** Timings of the channels, defaults as the official runner's; tests shorten them. */
export interface ChannelTimings {
  readonly callTimeoutMs: number;
  /** Completion: attempts and the wait between them (official: 5 × 5 s). */
  readonly completeAttempts: number;
  readonly completeRetryMs: number;
  /** Log uploads and step updates: attempts per call, and the wait between them. */
  readonly uploadAttempts: number;
  readonly uploadRetryMs: number;
}

export const DEFAULT_CHANNEL_TIMINGS: ChannelTimings = {
  callTimeoutMs: 60_000,
  completeAttempts: 5,
  completeRetryMs: 5_000,
  uploadAttempts: 3,
  uploadRetryMs: 2_000,
};
