// Pure: whether the orchestrator that accepted a job still speaks. One that announces heartbeats
// (accepted.heartbeatMs) sends an event at least that often until the job ends; when nothing came
// for the silence limit, it died or lost the queue, and nobody else will end the job on the forge.
// Never calls silent a job no orchestrator accepted yet (it may wait in the queue for long), nor
// one whose orchestrator announced no heartbeats (an older version). Knows no clock: every time
// is the runner's own at arrival (an event's stamp is another host's clock) and comes from the caller.
import type { JobEvent } from "../contract/job-event.js";

/** The silence limit is never below this many of the orchestrator's announced heartbeat intervals. */
export const MIN_MISSED_HEARTBEATS = 3;

export interface Silence {
  /** The orchestrator that accepted the job and fell silent. */
  readonly orchestrator: string;
  /** When the runner last heard anything of the job (ms since the epoch, the runner's clock). */
  readonly lastHeardMs: number;
  readonly silentForMs: number;
  readonly heartbeatMs: number;
}

export class OrchestratorSilence {
  readonly #limitMs: number;
  #orchestrator: string | undefined;
  #heartbeatMs: number | undefined;
  #lastHeardMs = 0;
  #ended = false;

  /** `silenceMs`: the configured limit (orchestratorSilence). */
  constructor(silenceMs: number) {
    this.#limitMs = silenceMs;
  }

  /** Whether the job is watched now: accepted by an orchestrator that sends heartbeats, not ended. */
  get watching(): boolean {
    return this.#heartbeatMs !== undefined && !this.#ended;
  }

  /** How long the job may be silent: the configured limit, or more for an orchestrator that beats slowly. */
  get limitMs(): number {
    return Math.max(this.#limitMs, MIN_MISSED_HEARTBEATS * (this.#heartbeatMs ?? 0));
  }

  /** A new (not repeated) event of the job arrived at `atMs`. */
  heard(event: JobEvent, atMs: number): void {
    this.#lastHeardMs = Math.max(this.#lastHeardMs, atMs);
    if (event.kind === "accepted") {
      // The latest owner decides: a job taken over by an older orchestrator is not watched any more.
      this.#orchestrator = event.orchestrator;
      this.#heartbeatMs = event.heartbeatMs;
    } else if (event.kind === "job-finished") this.#ended = true;
  }

  /**
   * The runner could not have heard anything at `atMs` (its own queue connection is down): the
   * silence counts from when it can hear again, so a queue outage alone never ends a job.
   */
  deaf(atMs: number): void {
    this.#lastHeardMs = Math.max(this.#lastHeardMs, atMs);
  }

  /** The job's silence when it lasted past the limit at `atMs`; undefined otherwise. */
  check(atMs: number): Silence | undefined {
    if (!this.watching || this.#orchestrator === undefined || this.#heartbeatMs === undefined) return undefined;
    const silentForMs = atMs - this.#lastHeardMs;
    if (silentForMs < this.limitMs) return undefined;
    return {
      orchestrator: this.#orchestrator,
      lastHeardMs: this.#lastHeardMs,
      silentForMs,
      heartbeatMs: this.#heartbeatMs,
    };
  }
}

/** The job's last log line when its orchestrator fell silent. */
export function silenceReason(s: Silence): string {
  const secs = (ms: number) => (ms < 1_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`);
  return (
    `The orchestrator ${s.orchestrator} stopped reporting on this job: nothing was heard from it since ` +
    `${new Date(s.lastHeardMs).toISOString()} (${secs(s.silentForMs)}, while it sends a heartbeat every ${secs(s.heartbeatMs)}). ` +
    "It may have crashed or lost its connection to the queue, so gnomon ended the job as failed and asked for it to be stopped. Re-run the job."
  );
}
