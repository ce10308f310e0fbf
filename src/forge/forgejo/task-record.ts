// Pure: what Forgejo should know about one task, built from the job's events. Keeps the log rows
// not yet acknowledged (absolute row numbers), the per-step ranges, the outputs not yet accepted
// and the result. Every row and output value is masked on the way in (the final masking pass), so
// nothing unmasked is ever held for sending. Knows no network and no clock: every time comes from
// an event or the caller.
import type { JobEvent, JobResult } from "../../contract/job-event.js";
import type { LogMasker } from "../log-masker.js";
import type { LogRowOut, StepReport, TaskReport, TaskResult } from "./client.js";
import { LogsLostError } from "./errors.js";

interface StepState {
  result: TaskResult;
  startedAtMs?: number;
  stoppedAtMs?: number;
  logIndex: number;
  logLength: number;
}

/** Forgejo drops output keys longer than this (bytes) and values longer than OUTPUT_VALUE_MAX. */
const OUTPUT_KEY_MAX = 255;
const OUTPUT_VALUE_MAX = 1024 * 1024;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** One row's content: one line, valid UTF-8 (lone surrogates become "?", as forgejo-runner does). */
export function rowContent(text: string): string {
  let t = text.replace(/\r?\n$/, "").replace(LONE_SURROGATE, "?");
  // The log viewer folds ##[group] … ##[endgroup]; forgejo-runner rewrites the workflow commands so.
  if (t.startsWith("::group::")) t = `##[group]${t.slice("::group::".length)}`;
  else if (t === "::endgroup::") t = "##[endgroup]";
  return t;
}

export class TaskRecord {
  readonly #steps: StepState[];
  readonly #seen = new Set<number>();
  #rows: LogRowOut[] = [];
  #acked = 0;
  #startedAtMs: number | undefined;
  #stoppedAtMs: number | undefined;
  #result: TaskResult = "unspecified";
  /** The main step that log rows belong to while steps run; undefined before the first. */
  #current: number | undefined;
  readonly #outputs = new Map<string, string>();
  readonly #accepted = new Set<string>();
  readonly #masker: LogMasker;

  constructor(
    readonly taskId: bigint,
    stepCount: number,
    /** Masks the task's secrets and tokens (see taskMaskValues). */
    masker: LogMasker,
  ) {
    this.#masker = masker;
    this.#steps = Array.from({ length: stepCount }, () => ({ result: "unspecified", logIndex: 0, logLength: 0 }));
  }

  get finished(): boolean {
    return this.#result !== "unspecified";
  }

  get result(): TaskResult {
    return this.#result;
  }

  /** Rows appended so far (the absolute number of the next row). */
  get rowCount(): number {
    return this.#acked + this.#rows.length;
  }

  /** Rows the server has acknowledged. */
  get ackedRows(): number {
    return this.#acked;
  }

  /**
   * Applies one event; false when it was seen before (same seq) and changed nothing. Events after the
   * result is known only add nothing but their seq.
   */
  apply(event: JobEvent): boolean {
    if (this.#seen.has(event.seq)) return false;
    this.#seen.add(event.seq);
    if (this.finished) return true;
    this.#startedAtMs ??= event.t;
    switch (event.kind) {
      case "accepted":
        this.log(`Job accepted by orchestrator ${event.orchestrator}`, event.t);
        break;
      case "provisioning":
        this.log(
          `VM for runs-on "${event.label}": ${event.phase}${event.message ? ` (${event.message})` : ""}`,
          event.t,
        );
        break;
      case "step-started":
        if (event.stage === "main") this.#enterStep(event.step, event.t);
        break;
      case "log":
        if (event.stage === "main" && event.step !== null) this.#enterStep(event.step, event.lines[0]?.t ?? event.t);
        for (const line of event.lines) this.log(line.text, line.t);
        break;
      case "annotation":
        // The engine logs every annotation as a `##[level]message` line too; Forgejo has no
        // annotations, so only a location it did not print is added.
        if (event.file)
          this.log(
            `  at ${event.file}${event.line !== undefined ? `:${event.line}${event.col !== undefined ? `:${event.col}` : ""}` : ""}`,
            event.t,
          );
        break;
      case "step-finished": {
        const s = event.stage === "main" ? this.#steps[event.step] : undefined;
        if (!s) break;
        this.#enterStep(event.step, event.t);
        s.result = event.conclusion;
        s.stoppedAtMs = event.t;
        if (s.logLength === 0) s.logIndex = this.rowCount;
        break;
      }
      case "job-finished":
        this.finish(event.result, event.t, { reason: event.reason, outputs: event.outputs });
        break;
      case "heartbeat":
        break;
    }
    return true;
  }

  /**
   * Appends the text where Forgejo's viewer expects it (see #target), one row per line: a row is
   * one line on the viewer, so a message of several lines (a rejected workflow's problems) would
   * otherwise show as one row with its line breaks lost.
   */
  log(text: string, timeMs: number): void {
    // Masked whole first: a secret of several lines is masked across the lines it spans.
    for (const line of this.#masker
      .mask(text)
      .replace(/\r?\n$/, "")
      .split(/\r?\n/)) {
      const content = rowContent(line);
      const step = this.#target();
      if (step) {
        if (step.logLength === 0) step.logIndex = this.rowCount;
        step.logLength += 1;
      }
      this.#rows.push({ timeMs, content });
    }
  }

  /**
   * Ends the task: steps still open are closed (cancelled, or skipped when the job succeeded), the
   * closing line goes after the last step ("Complete job"), outputs are kept for UpdateTask.
   */
  finish(
    result: JobResult | "skipped",
    atMs: number,
    extra: { reason?: string | undefined; outputs?: Readonly<Record<string, string>> } = {},
  ): void {
    if (this.finished) return;
    this.#startedAtMs ??= atMs;
    for (const s of this.#steps) {
      if (s.result !== "unspecified") continue;
      s.result =
        (result === "success" || result === "skipped") && s.startedAtMs === undefined ? "skipped" : "cancelled";
      if (s.startedAtMs !== undefined) s.stoppedAtMs = atMs;
      if (s.logLength === 0) s.logIndex = this.rowCount;
    }
    this.#result = result;
    this.#stoppedAtMs = atMs;
    this.#current = undefined;
    for (const [k, v] of Object.entries(extra.outputs ?? {})) {
      if (Buffer.byteLength(k) > OUTPUT_KEY_MAX)
        this.log(
          `output ${JSON.stringify(k.slice(0, 40))}… dropped: its name is longer than ${OUTPUT_KEY_MAX} bytes`,
          atMs,
        );
      else if (Buffer.byteLength(v) > OUTPUT_VALUE_MAX)
        this.log(`output ${JSON.stringify(k)} dropped: its value is longer than 1 MiB`, atMs);
      else if (!this.#outputs.has(k)) this.#outputs.set(k, this.#masker.mask(v));
    }
    const closing =
      extra.reason ??
      (result === "success"
        ? "Job succeeded"
        : result === "cancelled"
          ? "Job cancelled"
          : result === "skipped"
            ? "Job skipped"
            : "Job failed");
    this.log(closing, atMs);
  }

  /** The full state for UpdateTask. */
  report(): TaskReport {
    return {
      id: this.taskId,
      result: this.#result,
      startedAtMs: this.#startedAtMs,
      stoppedAtMs: this.#stoppedAtMs,
      steps: this.#steps.map((s): StepReport => ({ ...s })),
    };
  }

  /** Rows to send: every row not acknowledged yet, starting at absolute row `index`. */
  pendingRows(): { index: number; rows: readonly LogRowOut[] } {
    return { index: this.#acked, rows: this.#rows.slice() };
  }

  /**
   * Takes the server's ack index: drops the rows below it, nothing else. A server may ack past what
   * was sent (it counts rows it holds); an ack below the previous one means it lost rows.
   */
  confirm(ackIndex: number): void {
    const ack = Math.min(ackIndex, this.rowCount);
    if (ack < this.#acked) throw new LogsLostError(this.taskId, this.#acked, ack);
    this.#rows = this.#rows.slice(ack - this.#acked);
    this.#acked = ack;
  }

  /** Forget unsent rows: the server archived the log and takes no more. */
  dropPendingRows(): void {
    this.#acked = this.rowCount;
    this.#rows = [];
  }

  /** Outputs the server has not confirmed yet. */
  unsentOutputs(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of this.#outputs) if (!this.#accepted.has(k)) out[k] = v;
    return out;
  }

  /** Records the keys the server holds (UpdateTaskResponse.sent_outputs). */
  outputsAccepted(keys: readonly string[]): void {
    for (const k of keys) this.#accepted.add(k);
  }

  #enterStep(index: number, atMs: number): void {
    const s = this.#steps[index];
    if (!s) return;
    s.startedAtMs ??= atMs;
    if (this.#current === undefined || index > this.#current) this.#current = index;
  }

  /**
   * The step a new row belongs to. From the first step's start to the last step's end, Forgejo's
   * viewer needs the rows of the steps contiguous and in order, so every row of that stretch goes to
   * the latest step that started (job-level lines such as the serial console included); before it
   * rows are "Set up job", after it "Complete job".
   */
  #target(): StepState | undefined {
    if (this.#current === undefined) return undefined;
    const last = this.#steps[this.#steps.length - 1];
    if (last?.result !== "unspecified") return undefined;
    return this.#steps[this.#current];
  }
}
