// The RabbitMQ topology of one gnomon installation, as pure data: every queue and exchange name under
// a prefix, and the exact arguments they are declared with. Publishers and consumers declare the
// same things from here, so their arguments can never disagree (which RabbitMQ would refuse).
import type { Options } from "amqplib";

export const DEFAULT_PREFIX = "gnomon";

const PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkPrefix(prefix: string): string {
  if (!PREFIX_RE.test(prefix))
    throw new RangeError(
      `queue prefix "${prefix}" must be 1–64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  return prefix;
}

export interface AmqpTopology {
  readonly prefix: string;
  /** Durable quorum queue per runs-on label. */
  jobQueue(label: string): string;
  /**
   * Per label, a classic auto-delete queue that every job consumer of the label consumes and no one
   * publishes to: its consumer count says how many orchestrators serve the label, busy or idle
   * (job-queue consumers come and go with free credit).
   */
  servingQueue(label: string): string;
  /** Durable quorum queue per runner instance: the events of the jobs it published. */
  eventQueue(replyTo: string): string;
  /** Fanout exchange that receives dead letters, and the quorum queue that keeps them. */
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string;
  /** Fanout exchange for Cancel broadcasts, and the per-subscription queue bound to it. */
  readonly cancelExchange: string;
  cancelQueue(subscriptionId: string): string;
}

export function amqpTopology(prefix: string = DEFAULT_PREFIX): AmqpTopology {
  const p = checkPrefix(prefix);
  return {
    prefix: p,
    jobQueue: (label) => `${p}.jobs.${label}`,
    servingQueue: (label) => `${p}.serving.${label}`,
    eventQueue: (replyTo) => `${p}.events.${replyTo}`,
    deadLetterExchange: `${p}.dead-letter`,
    deadLetterQueue: `${p}.dead-letters`,
    cancelExchange: `${p}.cancels`,
    cancelQueue: (id) => `${p}.cancels.${id}`,
  };
}

/**
 * Job and event queues. Quorum: replicated, durable, poison-aware. No x-delivery-limit: a job that
 * came back is never dropped by the broker; the orchestrator decides from its lease history, and
 * undecodable messages are dead-lettered by the bus with their reason. Messages the broker itself
 * dead-letters (e.g. under an operator's length-limit policy) still reach the dead-letter queue.
 */
export function workQueueOptions(t: AmqpTopology): Options.AssertQueue {
  return { durable: true, arguments: { "x-queue-type": "quorum", "x-dead-letter-exchange": t.deadLetterExchange } };
}

export function deadLetterQueueOptions(): Options.AssertQueue {
  return { durable: true, arguments: { "x-queue-type": "quorum" } };
}

/**
 * A cancel subscription's queue: classic (quorum queues cannot be short-lived), durable, deleted by
 * the bus on cancel or stop, and by the broker once unused for `expiresMs` (a consumer that crashed).
 * Unlike an exclusive queue it survives a dropped connection, so no Cancel is lost in an outage.
 */
export function cancelQueueOptions(expiresMs: number): Options.AssertQueue {
  return { durable: true, arguments: { "x-queue-type": "classic", "x-expires": expiresMs } };
}
