// The job state machine as pure data: which state may follow which. The guarded UPDATEs in jobs.ts
// take their `state = any(...)` lists from here, so the SQL and this table cannot disagree.
// No I/O, no clock: decisions only.
import type { JobResult } from "../contract/job-event.js";

export const JOB_STATES = [
  "queued",
  "assigned",
  "provisioning",
  "running",
  "succeeded",
  "failed",
  "cancelled",
] as const;
export type JobState = (typeof JOB_STATES)[number];

export type TerminalJobState = "succeeded" | "failed" | "cancelled";
export type ActiveJobState = Exclude<JobState, TerminalJobState>;

/** Each state's possible successors. Terminal states have none: an ended job never changes again. */
const NEXT: Readonly<Record<JobState, readonly JobState[]>> = {
  queued: ["assigned", "cancelled", "failed"],
  // → queued: requeue after the owning orchestrator was lost before any step ran.
  assigned: ["provisioning", "queued", "cancelled", "failed"],
  provisioning: ["running", "queued", "cancelled", "failed"],
  running: ["succeeded", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function nextStates(from: JobState): readonly JobState[] {
  return NEXT[from];
}

export function canTransition(from: JobState, to: JobState): boolean {
  return NEXT[from].includes(to);
}

const SOURCES: ReadonlyMap<JobState, readonly JobState[]> = new Map(
  JOB_STATES.map((to) => [to, JOB_STATES.filter((from) => canTransition(from, to))]),
);

/** The states a job may be in to move to `to`: the guard of every transition's UPDATE. */
export function sourcesOf(to: JobState): readonly JobState[] {
  return SOURCES.get(to) ?? [];
}

export function isTerminal(state: JobState): state is TerminalJobState {
  return NEXT[state].length === 0;
}

export function isJobState(value: string): value is JobState {
  return (JOB_STATES as readonly string[]).includes(value);
}

const STATE_OF_RESULT: Readonly<Record<JobResult, TerminalJobState>> = {
  success: "succeeded",
  failure: "failed",
  cancelled: "cancelled",
};

/** The terminal state a job with this contract result ends in. */
export function stateForResult(result: JobResult): TerminalJobState {
  return STATE_OF_RESULT[result];
}

/** What the reaper does with a job whose owner lost its lease. */
export type LostOwnerAction = "requeue" | "fail" | "none";

/**
 * A job whose orchestrator vanished goes back to the queue if none of its steps can have run
 * (re-running it is then invisible to the user), and fails otherwise, because steps may have had
 * effects that must not happen twice. Ended jobs are left alone.
 */
export function afterLostOwner(state: JobState, firstStepStarted: boolean): LostOwnerAction {
  if (isTerminal(state)) return "none";
  if (state === "queued") return "none";
  if ((state === "assigned" || state === "provisioning") && !firstStepStarted) return "requeue";
  return "fail";
}
