// The JobBus: the only channel between forge runners and orchestrators. Jobs go to a queue per
// runs-on label, events to a queue per runner instance, cancellations to every orchestrator.
import type { Cancel } from "../contract/cancel.js";
import type { JobEvent } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";
import type { Service } from "../lifecycle/service.js";

export interface JobDelivery {
  readonly request: JobRequest;
  /** True when the broker delivered this message before (a consumer died or nacked it). */
  readonly redelivered: boolean;
  /** The job is done with (its outcome is recorded): remove it from the queue. */
  ack(): Promise<void>;
  /** Give the job back to its queue (requeue: true) or dead-letter it with a reason (requeue: false). */
  nack(opts: { requeue: boolean; reason?: string }): Promise<void>;
}

export interface EventDelivery {
  readonly event: JobEvent;
  ack(): Promise<void>;
}

export interface JobConsumer {
  /**
   * The most jobs this consumer holds unacknowledged across all its labels (its free capacity).
   * 0 pauses delivery. Applies at once to deliveries not yet made.
   */
  setPrefetch(n: number): Promise<void>;
  /** Stops consuming; unacknowledged jobs go back to their queues. */
  cancel(): Promise<void>;
}

export interface Subscription {
  cancel(): Promise<void>;
}

export interface JobBus extends Service {
  /** False while the broker connection is down and being restored (and before start, after stop). */
  readonly connected: boolean;
  /**
   * Why the broker holds publishes back right now although connected (RabbitMQ's resource alarm:
   * its reason, e.g. "low on memory"); undefined when it does not. Publishes wait meanwhile.
   */
  readonly publishingBlocked?: string | undefined;
  /** Publishes a job for its `runsOn` label; resolves only after the broker confirmed it. */
  publishJob(request: JobRequest): Promise<void>;
  /**
   * Consumes jobs for `labels` with at most `prefetch` unacknowledged at a time. Invalid messages
   * never reach `onJob`: they are dead-lettered with the reason.
   */
  consumeJobs(labels: readonly string[], prefetch: number, onJob: (job: JobDelivery) => void): Promise<JobConsumer>;
  /**
   * How many job consumers (orchestrators) take jobs for `label` right now, busy or not; undefined
   * when that cannot be told at the moment (not connected). 0 means a job for it would wait.
   */
  jobConsumers(label: string): Promise<number | undefined>;
  /** Publishes an event to the event stream of runner instance `replyTo`; resolves after confirm. */
  publishEvent(replyTo: string, event: JobEvent): Promise<void>;
  /** Consumes the event stream of runner instance `replyTo` (durable: events wait while it is away). */
  consumeEvents(replyTo: string, onEvent: (delivery: EventDelivery) => void): Promise<Subscription>;
  /** Broadcasts a cancellation to every orchestrator. */
  publishCancel(cancel: Cancel): Promise<void>;
  /** Receives every cancellation broadcast from now on. */
  consumeCancels(onCancel: (cancel: Cancel) => void): Promise<Subscription>;
}
