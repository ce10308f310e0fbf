// Pure: what GitHub should show for one job, built from the JobEvents the orchestrator publishes.
// Events are deduplicated by seq; every line, name and annotation is masked on the way in. The
// channels (run service + results, or the classic hub) read this model and send what changed. A
// finished report has a result for every step of the job message. Its progress (records without
// lines) can be kept on disk and restored, so that a successor process can end the job.
import type { JobEvent, JobResult, StepResult, StepStage } from "../../contract/job-event.js";
import type { LogMasker } from "../log-masker.js";
import { derivedGuid } from "./guid.js";
import type { GitHubJob } from "./to-job-request.js";
import type { TaskResult, TimelineRecordState } from "./wire.js";

export type RecordKind = "setup" | "step" | "complete";

export interface ReportIssue {
  readonly level: "error" | "warning" | "notice";
  readonly message: string;
  readonly title?: string;
  readonly file?: string;
  readonly line?: number;
  readonly endLine?: number;
  readonly col?: number;
  readonly endColumn?: number;
  /** The record's order: the step number GitHub shows. */
  readonly stepNumber: number;
}

export interface ReportRecord {
  readonly id: string;
  readonly kind: RecordKind;
  /** The JobSpec step index of a step record. */
  readonly stepIndex: number | null;
  readonly stage: StepStage | null;
  name: string;
  readonly refName: string;
  /** The step number GitHub shows; only "Complete job" moves, to stay last. */
  order: number;
  readonly actionName: string;
  readonly ref: string;
  state: TimelineRecordState;
  result: TaskResult | null;
  startTime: number | null;
  finishTime: number | null;
  /** The record's log so far: masked, each line prefixed with its time as the official runner writes it. */
  readonly lines: string[];
  /** Masked lines without time prefix that the live console has not shown yet. */
  readonly live: string[];
  /** The line number (1-based) of live[0]. */
  liveStart: number;
  issues: ReportIssue[];
  /** Bumped on every change; channels remember the version they sent. */
  version: number;
  /**
   * Restored from a previous runner process's progress: whatever log it had went to GitHub with
   * that process, or was lost with it. Channels upload no log for it unless it got lines here.
   */
  readonly inherited: boolean;
}

/** What of a record outlives the runner process (see held-jobs.ts): where it is and how it stands, not its lines. */
export interface RecordProgress {
  readonly id: string;
  readonly kind: RecordKind;
  readonly stepIndex: number | null;
  readonly stage: StepStage | null;
  readonly name: string;
  readonly refName: string;
  readonly order: number;
  readonly actionName: string;
  readonly ref: string;
  readonly state: TimelineRecordState;
  readonly result: TaskResult | null;
  readonly startTime: number | null;
  readonly finishTime: number | null;
}

export interface JobOutcome {
  readonly result: JobResult;
  readonly outputs: Readonly<Record<string, string>>;
  readonly reason: string | undefined;
  readonly at: number;
}

export interface JobReportOptions {
  readonly masker: LogMasker;
  /** Lines beyond this many bytes per job are dropped (with one notice) so a runaway log cannot exhaust memory. */
  readonly maxLogBytes?: number;
  /** The records a previous runner process reported for this job (its held-jobs entry). */
  readonly progress?: readonly RecordProgress[];
}

const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;

/** `2026-01-05T10:00:01.1230000Z`: the official runner's round-trip time format for log lines. */
export function logTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "0000Z");
}

/** Whether this process has a log of the record to upload: not one a previous process owned, unless lines came here. */
export const hasLogHere = (r: ReportRecord): boolean => !r.inherited || r.lines.length > 0;

export const toTaskResult = (r: StepResult | JobResult): TaskResult =>
  r === "success" ? "succeeded" : r === "failure" ? "failed" : r === "cancelled" ? "canceled" : "skipped";

export class JobReport {
  readonly job: GitHubJob;
  readonly #masker: LogMasker;
  readonly #maxLogBytes: number;
  readonly #seen = new Set<number>();
  readonly #records: ReportRecord[] = [];
  readonly #byKey = new Map<string, ReportRecord>();
  #logBytes = 0;
  #truncated = false;
  #anyStepStarted = false;
  #outcome: JobOutcome | undefined;
  #startTime: number | undefined;

  constructor(job: GitHubJob, opts: JobReportOptions) {
    this.job = job;
    this.#masker = opts.masker;
    this.#maxLogBytes = opts.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES;
    for (const p of [...(opts.progress ?? [])].sort((a, b) => a.order - b.order)) {
      const r: ReportRecord = { ...p, lines: [], live: [], liveStart: 1, issues: [], version: 1, inherited: true };
      this.#records.push(r);
      this.#byKey.set(this.#key(p.kind, p.stepIndex, p.stage), r);
      if (p.kind === "step") this.#anyStepStarted = true;
      if (p.startTime !== null) this.#startTime = Math.min(this.#startTime ?? p.startTime, p.startTime);
    }
  }

  /** Where each record is and how it stands, without lines: what a successor process needs to end the job. */
  progress(): RecordProgress[] {
    return this.#records.map((r) => ({
      id: r.id,
      kind: r.kind,
      stepIndex: r.stepIndex,
      stage: r.stage,
      name: r.name,
      refName: r.refName,
      order: r.order,
      actionName: r.actionName,
      ref: r.ref,
      state: r.state,
      result: r.result,
      startTime: r.startTime,
      finishTime: r.finishTime,
    }));
  }

  get records(): readonly ReportRecord[] {
    return this.#records;
  }

  get outcome(): JobOutcome | undefined {
    return this.#outcome;
  }

  get startTime(): number | undefined {
    return this.#startTime;
  }

  /** All issues of all records, in record order. */
  issues(): ReportIssue[] {
    return this.#records.flatMap((r) => r.issues);
  }

  mask(text: string): string {
    return this.#masker.mask(text);
  }

  /** Applies one event; false when it was a duplicate (same seq) or came after the job finished. */
  apply(ev: JobEvent): boolean {
    if (this.#seen.has(ev.seq)) return false;
    this.#seen.add(ev.seq);
    if (this.#outcome) return false;
    this.#startTime ??= ev.t;
    switch (ev.kind) {
      case "accepted":
        this.#line(this.#setup(ev.t), ev.t, `gnomon: job accepted by ${ev.orchestrator}`);
        return true;
      case "provisioning":
        this.#line(
          this.#setup(ev.t),
          ev.t,
          `gnomon: ${ev.label}: ${ev.phase}${ev.message ? ` (${this.mask(ev.message)})` : ""}`,
        );
        return true;
      case "step-started": {
        this.#closeSetup(ev.t, "succeeded");
        this.#anyStepStarted = true;
        const r = this.#step(ev.step, ev.stage, ev.t);
        if (r.kind !== "step") return true; // a step the job message does not have: its lines still land
        r.name = this.mask(ev.name) || r.name;
        r.state = "inProgress";
        r.result = null;
        r.startTime = ev.t;
        r.finishTime = null;
        r.version += 1;
        return true;
      }
      case "log": {
        const r = ev.step === null ? this.#jobLevel(ev.t) : this.#step(ev.step, ev.stage, ev.t);
        for (const l of ev.lines) this.#line(r, l.t, l.text);
        return true;
      }
      case "annotation": {
        const r = ev.step === null ? this.#jobLevel(ev.t) : this.#step(ev.step, "main", ev.t);
        r.issues.push({
          level: ev.level,
          message: this.mask(ev.message),
          ...(ev.title !== undefined ? { title: this.mask(ev.title) } : {}),
          ...(ev.file !== undefined ? { file: ev.file } : {}),
          ...(ev.line !== undefined ? { line: ev.line } : {}),
          ...(ev.endLine !== undefined ? { endLine: ev.endLine } : {}),
          ...(ev.col !== undefined ? { col: ev.col } : {}),
          ...(ev.endColumn !== undefined ? { endColumn: ev.endColumn } : {}),
          stepNumber: r.order,
        });
        r.version += 1;
        return true;
      }
      case "step-finished": {
        const r = this.#step(ev.step, ev.stage, ev.t);
        if (r.kind !== "step") return true;
        r.startTime ??= ev.t;
        r.state = "completed";
        r.result = toTaskResult(ev.conclusion);
        r.finishTime = ev.t;
        r.version += 1;
        return true;
      }
      case "job-finished":
        this.finish(ev.result, ev.outputs, ev.reason, ev.t);
        return true;
      case "heartbeat":
        return true;
    }
  }

  /** A line of gnomon's own in the job's set-up section (before any step has started). */
  note(text: string, at: number): void {
    if (this.#outcome || this.#anyStepStarted) return;
    this.#line(this.#setup(at), at, `gnomon: ${text}`);
  }

  /**
   * Ends the job (from its job-finished event, or by the daemon when it gives up on it). Steps
   * still running get the job's result; steps of the job message that never started are
   * completed as skipped, as the official runner reports steps it did not run; "Complete job" is
   * the last record.
   */
  finish(result: JobResult, outputs: Readonly<Record<string, string>>, reason: string | undefined, at: number): void {
    if (this.#outcome) return;
    this.#startTime ??= at;
    const masked = reason === undefined ? undefined : this.mask(reason);
    if (!this.#anyStepStarted) {
      const setup = this.#setup(at);
      if (masked) this.#problem(setup, at, result, masked);
      this.#closeSetup(at, result === "success" ? "succeeded" : toTaskResult(result));
    } else {
      this.#closeSetup(at, "succeeded");
      for (const r of this.#records)
        if (r.kind === "step" && r.state !== "completed") {
          r.state = "completed";
          r.result = result === "cancelled" ? "canceled" : toTaskResult(result);
          r.finishTime = at;
          r.version += 1;
        }
    }
    for (const [index] of this.job.steps.entries()) {
      if (this.#byKey.has(this.#key("step", index, "main"))) continue;
      const r = this.#step(index, "main", at);
      r.state = "completed";
      r.result = "skipped";
      r.startTime = null;
      r.finishTime = at;
    }
    const complete = this.#complete(at);
    this.#keepLast(complete);
    if (this.#anyStepStarted && masked) this.#problem(complete, at, result, masked);
    complete.state = "completed";
    complete.result = complete.issues.some((i) => i.level === "error") ? "failed" : "succeeded";
    complete.finishTime = at;
    complete.version += 1;
    this.#outcome = {
      result,
      outputs: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, this.mask(v)])),
      reason: masked,
      at,
    };
  }

  /**
   * A warning about the reporting itself, once the job has finished (logs that could not be
   * uploaded): an annotation of "Complete job", since its log may be among them.
   */
  warnAtEnd(text: string): void {
    if (!this.#outcome) return;
    const complete = this.#complete(this.#outcome.at);
    complete.issues.push({ level: "warning", message: this.mask(text), stepNumber: complete.order });
    complete.version += 1;
  }

  /** Moves `r` behind every other record, renumbering those it passes. */
  #keepLast(r: ReportRecord): void {
    const at = this.#records.indexOf(r);
    if (at === this.#records.length - 1) return;
    this.#records.splice(at, 1);
    this.#records.push(r);
    for (const [i, x] of this.#records.entries()) {
      if (x.order === i + 1) continue;
      x.order = i + 1;
      x.issues = x.issues.map((issue) => ({ ...issue, stepNumber: x.order }));
      x.version += 1;
    }
  }

  #problem(r: ReportRecord, at: number, result: JobResult, reason: string): void {
    const level = result === "cancelled" ? "warning" : "error";
    // One `##[level]` line per line of the reason (a rejected workflow lists one problem a line).
    for (const line of reason.split(/\r?\n/)) this.#line(r, at, `##[${level}]${line}`);
    r.issues.push({ level, message: reason, stepNumber: r.order });
  }

  #key(kind: RecordKind, step: number | null, stage: StepStage | null): string {
    return `${kind}:${step ?? ""}:${stage ?? ""}`;
  }

  #add(
    kind: RecordKind,
    step: number | null,
    stage: StepStage | null,
    fields: { id: string; name: string; refName: string; actionName: string; ref: string },
    at: number,
  ): ReportRecord {
    const r: ReportRecord = {
      ...fields,
      kind,
      stepIndex: step,
      stage,
      order: this.#records.length + 1,
      state: "inProgress",
      result: null,
      startTime: at,
      finishTime: null,
      lines: [],
      live: [],
      liveStart: 1,
      issues: [],
      version: 1,
      inherited: false,
    };
    this.#records.push(r);
    this.#byKey.set(this.#key(kind, step, stage), r);
    return r;
  }

  #setup(at: number): ReportRecord {
    return (
      this.#byKey.get(this.#key("setup", null, null)) ??
      this.#add(
        "setup",
        null,
        null,
        {
          id: derivedGuid(`${this.job.jobId}:setup`),
          name: "Set up job",
          refName: "JobExtension_Init",
          actionName: "",
          ref: "",
        },
        at,
      )
    );
  }

  #closeSetup(at: number, result: TaskResult): void {
    const setup = this.#byKey.get(this.#key("setup", null, null));
    if (!setup || setup.state === "completed") return;
    setup.state = "completed";
    setup.result = result;
    setup.finishTime = at;
    setup.version += 1;
  }

  #complete(at: number): ReportRecord {
    return (
      this.#byKey.get(this.#key("complete", null, null)) ??
      this.#add(
        "complete",
        null,
        null,
        {
          id: derivedGuid(`${this.job.jobId}:complete`),
          name: "Complete job",
          refName: "JobExtension_Final",
          actionName: "",
          ref: "",
        },
        at,
      )
    );
  }

  /** Job-level lines: "Set up job" until a step starts, "Complete job" after. */
  #jobLevel(at: number): ReportRecord {
    return this.#anyStepStarted ? this.#complete(at) : this.#setup(at);
  }

  #step(step: number, stage: StepStage, at: number): ReportRecord {
    const existing = this.#byKey.get(this.#key("step", step, stage));
    if (existing) return existing;
    const ref = this.job.steps[step];
    if (!ref) return this.#jobLevel(at);
    const main = stage === "main";
    return this.#add(
      "step",
      step,
      stage,
      {
        id: main ? ref.recordId : derivedGuid(`${ref.recordId}:${stage}`),
        name: main ? ref.displayName : `${stage === "pre" ? "Pre" : "Post"} ${ref.displayName}`,
        refName: main ? ref.contextName : `${ref.contextName}_${stage}`,
        actionName: ref.actionName,
        ref: ref.ref,
      },
      at,
    );
  }

  #line(r: ReportRecord, at: number, text: string): void {
    if (this.#truncated) return;
    const masked = this.mask(text);
    this.#logBytes += Buffer.byteLength(masked) + 30;
    if (this.#logBytes > this.#maxLogBytes) {
      this.#truncated = true;
      const notice = `gnomon: the log of this job passed ${Math.round(this.#maxLogBytes / 1048576)} MiB; further lines are dropped`;
      r.lines.push(`${logTimestamp(at)} ##[warning]${notice}`);
      r.live.push(notice);
      r.version += 1;
      return;
    }
    r.lines.push(`${logTimestamp(at)} ${masked}`);
    r.live.push(masked);
    r.version += 1;
  }
}
