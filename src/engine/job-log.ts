// The engine's only way out: contract JobEvents, with every line and message masked first. Log
// lines are batched per step and stage (flushed on a short timer, at 1 000 lines, and before any
// other event) so a chatty step does not become one event per line.
import type { JobEventBody, StepStage } from "../contract/job-event.js";
import { MAX_LINES_PER_EVENT } from "../contract/job-event.js";
import type { Masker } from "./masker.js";

/** Receives each event body; the caller stamps v, jobId, seq and t (the orchestrator's EventStream does). */
export type Emit = (event: JobEventBody) => void;

export interface JobLogOptions {
  readonly now?: () => number;
  /** How long lines may wait before they are sent. */
  readonly flushIntervalMs?: number;
}

export class JobLog {
  private batch: { step: number | null; stage: StepStage; lines: { t: number; text: string }[] } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly flushIntervalMs: number;

  constructor(
    private readonly emit: Emit,
    readonly masker: Masker,
    opts: JobLogOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.flushIntervalMs = opts.flushIntervalMs ?? 100;
  }

  /** One output line of a step (null: the job's own lines), masked now. */
  line(step: number | null, stage: StepStage, text: string): void {
    const masked = this.masker.mask(text);
    if (this.batch && (this.batch.step !== step || this.batch.stage !== stage)) this.flush();
    this.batch ??= { step, stage, lines: [] };
    this.batch.lines.push({ t: this.now(), text: masked });
    if (this.batch.lines.length >= MAX_LINES_PER_EVENT) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.flushIntervalMs);
  }

  /** Any other event: pending lines go first so the order is kept. Text fields are masked. */
  event(body: JobEventBody): void {
    this.flush();
    this.emit(maskEvent(body, this.masker));
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const b = this.batch;
    this.batch = undefined;
    if (b && b.lines.length > 0) this.emit({ kind: "log", step: b.step, stage: b.stage, lines: b.lines });
  }
}

function maskEvent(body: JobEventBody, m: Masker): JobEventBody {
  switch (body.kind) {
    case "step-started":
      return { ...body, name: m.mask(body.name) };
    case "annotation":
      return {
        ...body,
        message: m.mask(body.message),
        title: body.title === undefined ? undefined : m.mask(body.title),
      };
    case "job-finished":
      return { ...body, reason: body.reason === undefined ? undefined : m.mask(body.reason) };
    case "provisioning":
      return { ...body, message: body.message === undefined ? undefined : m.mask(body.message) };
    default:
      return body;
  }
}
