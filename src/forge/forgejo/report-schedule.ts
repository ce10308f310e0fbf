// Pure: what a task's reporter does next. The full report (UpdateLog, then UpdateTask: state and
// heartbeat) goes every reportInterval; between two, new log rows go on their own (UpdateLog only)
// once they waited logDelay for company, and no sooner than logInterval after the last UpdateLog,
// so a chatty job makes at most one call per logInterval. While reporting fails, rows wait for the
// full report, whose cadence is the retry. No clock, no network: every time comes from the caller.

export interface ReportTimings {
  /** Between two full reports (UpdateLog + UpdateTask); forgejo-runner's report_interval, 1 s. */
  readonly reportIntervalMs: number;
  /** How long the first new row waits for more before it is sent alone. */
  readonly logDelayMs: number;
  /** The least time between two UpdateLog calls. */
  readonly logIntervalMs: number;
}

export interface ReportState {
  readonly nowMs: number;
  /** When the next full report is due. */
  readonly reportDueMs: number;
  /** When the oldest row not sent yet was added; undefined: none waits. */
  readonly rowsWaitingSinceMs: number | undefined;
  /** When the last UpdateLog started; undefined: none yet. */
  readonly lastLogMs: number | undefined;
  /** The last call failed and no full report has worked since. */
  readonly failing: boolean;
}

export type ReportStep = { readonly t: "report" } | { readonly t: "log" } | { readonly t: "wait"; readonly ms: number };

/** When the waiting rows may go on their own; undefined: they wait for the full report. */
function rowsDueMs(s: ReportState, timings: ReportTimings): number | undefined {
  if (s.rowsWaitingSinceMs === undefined || s.failing) return undefined;
  return Math.max(
    s.rowsWaitingSinceMs + timings.logDelayMs,
    s.lastLogMs === undefined ? Number.NEGATIVE_INFINITY : s.lastLogMs + timings.logIntervalMs,
  );
}

export function nextReportStep(s: ReportState, timings: ReportTimings): ReportStep {
  if (s.nowMs >= s.reportDueMs) return { t: "report" };
  const rows = rowsDueMs(s, timings);
  // Rows due about when the full report is take it: it carries them anyway.
  if (rows !== undefined && rows < s.reportDueMs) {
    if (s.nowMs >= rows) return { t: "log" };
    return { t: "wait", ms: rows - s.nowMs };
  }
  return { t: "wait", ms: s.reportDueMs - s.nowMs };
}
