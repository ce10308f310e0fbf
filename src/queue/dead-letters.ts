// What a dead letter looks like to an operator, in both bus implementations: the message as it was
// refused, where it came from and why. Inspecting never removes or reorders dead letters.

/** The header that carries why a message was dead-lettered (AMQP), e.g. "invalid JobRequest: id: …". */
export const REASON_HEADER = "x-gnomon-reason";
/** The header that names the queue the message was taken from. */
export const SOURCE_HEADER = "x-gnomon-source-queue";
/** The header with the time of dead-lettering, ms since the epoch. */
export const DEAD_AT_HEADER = "x-gnomon-dead-lettered-at";

export interface DeadLetter {
  /** The queue the message was taken from, e.g. "gnomon.jobs.ubuntu-latest". */
  readonly source: string;
  /** The message id as published (a job id, or `${jobId}:${seq}` for events); "" when it had none. */
  readonly messageId: string;
  /** Why it was dead-lettered, as a sentence. */
  readonly reason: string;
  /** The message body as UTF-8 text, exactly as received. */
  readonly body: string;
  /** When it was dead-lettered, ms since the epoch. */
  readonly deadLetteredAt: number;
}

export interface DeadLetterInspector {
  /** The oldest `limit` dead letters, oldest first; they stay where they are. */
  peekDeadLetters(limit?: number): Promise<readonly DeadLetter[]>;
}
