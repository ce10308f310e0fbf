// One job's outgoing JobEvents: stamps each body with v, jobId, a per-job monotonic seq and the
// time, and publishes in order without waiting for each confirm (the bus keeps order on its
// channel); flush() waits for every confirm. The engine batches its own log lines already. Once
// started, it sends a heartbeat at a fixed interval until job-finished, so the forge runner can
// tell a job whose orchestrator died from one that is only quiet.
import type { JobEvent, JobEventBody, StepStage } from "../contract/job-event.js";

export interface EventSink {
  publishEvent(replyTo: string, event: JobEvent): Promise<void>;
}

export interface EventStreamOptions {
  readonly jobId: string;
  readonly replyTo: string;
  readonly sink: EventSink;
  /** The seq of the first event (a job taken over after a crash continues above its predecessor's). */
  readonly firstSeq?: number;
  readonly now?: () => number;
  /** Called when a publish failed for good; the stream goes on. */
  readonly onPublishError?: (err: unknown, event: JobEvent) => void;
}

export class EventStream {
  #seq: number;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #opts: EventStreamOptions;
  readonly #now: () => number;
  #finished = false;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(opts: EventStreamOptions) {
    this.#opts = opts;
    this.#seq = opts.firstSeq ?? 0;
    this.#now = opts.now ?? Date.now;
  }

  /** The seq the next event gets. */
  get nextSeq(): number {
    return this.#seq;
  }

  /** Whether a job-finished event went out: after it, nothing more is sent. */
  get finished(): boolean {
    return this.#finished;
  }

  emit(body: JobEventBody): void {
    if (this.#finished) return;
    if (body.kind === "job-finished") {
      this.#finished = true;
      this.stopHeartbeat();
    }
    const event = { ...body, v: 1, jobId: this.#opts.jobId, seq: this.#seq++, t: this.#now() } as JobEvent;
    const p: Promise<void> = this.#opts.sink
      .publishEvent(this.#opts.replyTo, event)
      .catch((err: unknown) => this.#opts.onPublishError?.(err, event))
      .finally(() => this.#inFlight.delete(p));
    this.#inFlight.add(p);
  }

  /** One job-level (or step) log line, stamped now. */
  log(text: string, step: number | null = null, stage: StepStage = "main"): void {
    this.emit({ kind: "log", step, stage, lines: [{ t: this.#now(), text }] });
  }

  /**
   * Sends a heartbeat every `intervalMs` from now until job-finished or stopHeartbeat(); a second
   * call changes nothing. The timer does not keep the process alive.
   */
  startHeartbeat(intervalMs: number): void {
    if (this.#heartbeat || this.#finished) return;
    this.#heartbeat = setInterval(() => this.emit({ kind: "heartbeat" }), intervalMs);
    this.#heartbeat.unref();
  }

  /** Stops the heartbeats (the job ends without a job-finished of ours: handed back, or ended elsewhere). */
  stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  /** Waits until every event so far is confirmed (or failed for good). */
  async flush(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }
}
