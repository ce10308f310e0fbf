// The queue's error classes: one per decision a caller has to make (retry, fix the setup, stop).
// Messages say what happened, with which value, and what to do; they never carry message bodies.

/** The bus is not running (not started yet, or stopped): the call cannot be served at all. */
export class BusStoppedError extends Error {
  override readonly name = "BusStoppedError";
  readonly code = "queue.stopped";
  constructor(what: string, options?: ErrorOptions) {
    super(`${what}: the job bus is not running; start() it first, or do not use it after stop()`, options);
  }
}

/** A publish was not confirmed before the bus stopped: the message may or may not be queued. */
export class PublishUnconfirmedError extends Error {
  override readonly name = "PublishUnconfirmedError";
  readonly code = "queue.publish-unconfirmed";
  constructor(
    readonly messageId: string,
    options?: ErrorOptions,
  ) {
    super(
      `message ${messageId} was not confirmed by RabbitMQ before the bus stopped; it may or may not be queued, ` +
        `so publish it again from a running bus (consumers dedupe by message id)`,
      options,
    );
  }
}

/** The broker answered a publish with a negative confirm: it did not take the message. */
export class PublishRefusedError extends Error {
  override readonly name = "PublishRefusedError";
  readonly code = "queue.publish-refused";
  constructor(
    readonly messageId: string,
    readonly destination: string,
    options?: ErrorOptions,
  ) {
    super(
      `RabbitMQ refused message ${messageId} for "${destination}" (negative publisher confirm); the queue may be ` +
        `over a length limit or without quorum. Check \`rabbitmqctl list_queues name type messages\` and the ` +
        `broker log, then publish it again`,
      options,
    );
  }
}

/** RabbitMQ could not be reached within the start timeout. */
export class BrokerUnreachableError extends Error {
  override readonly name = "BrokerUnreachableError";
  readonly code = "queue.unreachable";
  constructor(
    readonly url: string,
    readonly afterMs: number,
    options?: ErrorOptions,
  ) {
    super(
      `could not connect to RabbitMQ at ${url} within ${Math.round(afterMs / 1000)} s` +
        `${options?.cause instanceof Error ? ` (${options.cause.message})` : ""}; check AMQP_URL and that the broker ` +
        `is running and reachable from this host`,
      options,
    );
  }
}

/** RabbitMQ refused the credentials or the vhost: retrying cannot help. */
export class BrokerAccessRefusedError extends Error {
  override readonly name = "BrokerAccessRefusedError";
  readonly code = "queue.access-refused";
  constructor(
    readonly url: string,
    options?: ErrorOptions,
  ) {
    super(
      `RabbitMQ at ${url} refused the login or the vhost` +
        `${options?.cause instanceof Error ? ` (${options.cause.message})` : ""}; fix the user, password or vhost ` +
        `in AMQP_URL, or grant the user access with \`rabbitmqctl set_permissions\``,
      options,
    );
  }
}

/** A queue or exchange exists with other arguments than gnomon declares (e.g. a classic queue). */
export class TopologyConflictError extends Error {
  override readonly name = "TopologyConflictError";
  readonly code = "queue.topology-conflict";
  constructor(
    readonly entity: string,
    options?: ErrorOptions,
  ) {
    super(
      `RabbitMQ already has "${entity}" with other settings than gnomon declares` +
        `${options?.cause instanceof Error ? ` (${options.cause.message})` : ""}; delete it ` +
        `(\`rabbitmqctl delete_queue ${entity}\`) if it holds nothing you need, or choose another queue prefix`,
      options,
    );
  }
}
