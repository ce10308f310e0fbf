// One job's outgoing JobEvents: stamps each event with v, jobId, a per-job monotonic seq and the
// time; coalesces consecutive log lines of the same step into batches; publishes in order without
// waiting for each confirm (the bus keeps order on its channel), and flushes on demand.
import type { JobEvent, JobEventBody, LogLine, StepStage } from "../contract/job-event.js";
import { MAX_LINES_PER_EVENT } from "../contract/job-event.js";

export interface EventSink {
  publishEvent(replyTo: string, event: JobEvent): Promise<void>;
}

export interface EventStreamOptions {
  readonly jobId: string;
  readonly replyTo: string;
  readonly sink: EventSink;
  /** How long log lines may wait for company before they are sent. */
  readonly logFlushMs?: number;
  /** The seq of the first event (a job taken over after a crash continues its predecessor's count). */
  readonly firstSeq?: number;
  readonly now?: () => number;
  /** Called when a publish failed for good; the stream goes on (the bus retries across reconnects). */
  readonly onPublishError?: (err: unknown, event: JobEvent) => void;
}

export class EventStream {
  #seq: number;
  #pendingLog: { step: number | null; stage: StepStage; lines: LogLine[] } | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #opts: EventStreamOptions;
  readonly #now: () => number;
  #closed = false;
  #published = 0;

  constructor(opts: EventStreamOptions) {
    this.#opts = opts;
    this.#seq = opts.firstSeq ?? 0;
    this.#now = opts.now ?? Date.now;
  }

  /** The seq the next event gets. */
  get nextSeq(): number {
    return this.#seq;
  }

  /** Events handed to the bus so far. */
  get published(): number {
    return this.#published;
  }

  /** Adds an event; log events are batched, every other kind first flushes pending lines. */
  emit(body: JobEventBody): void {
    if (this.#closed) return;
    if (body.kind === "log") {
      const p = this.#pendingLog;
      if (p && (p.step !== body.step || p.stage !== body.stage)) this.#flushLog();
      const cur = (this.#pendingLog ??= { step: body.step, stage: body.stage, lines: [] });
      for (const line of body.lines) {
        cur.lines.push(line);
        if (cur.lines.length >= MAX_LINES_PER_EVENT) this.#flushLog();
      }
      if (this.#pendingLog && !this.#timer)
        this.#timer = setTimeout(() => this.#flushLog(), this.#opts.logFlushMs ?? 200);
      return;
    }
    this.#flushLog();
    this.#send(body);
  }

  /** Logs one line, stamped now. */
  log(step: number | null, stage: StepStage, text: string): void {
    this.emit({ kind: "log", step, stage, lines: [{ t: this.#now(), text }] });
  }

  /** Sends pending log lines and waits until every event so far is confirmed (or failed for good). */
  async flush(): Promise<void> {
    this.#flushLog();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Flushes, then refuses further events. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }

  #flushLog(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const p = this.#pendingLog;
    this.#pendingLog = undefined;
    if (p && p.lines.length > 0) this.#send({ kind: "log", step: p.step, stage: p.stage, lines: p.lines });
  }

  #send(body: JobEventBody): void {
    const event = { ...body, v: 1, jobId: this.#opts.jobId, seq: this.#seq++, t: this.#now() } as JobEvent;
    this.#published += 1;
    const p: Promise<void> = this.#opts.sink
      .publishEvent(this.#opts.replyTo, event)
      .catch((err: unknown) => this.#opts.onPublishError?.(err, event))
      .finally(() => this.#inFlight.delete(p));
    this.#inFlight.add(p);
  }
}
