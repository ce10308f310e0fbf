// The store's errors: one class per decision a caller has to make, each with a stable code and a
// message that says what happened, with which value, and what to do next. Never a string thrown.
import { isTerminal, type JobState, nextStates } from "./job-state.js";

/** A guarded state change found the job in a state that does not allow it. Drop or reconcile; do not retry. */
export class IllegalTransitionError extends Error {
  override readonly name = "IllegalTransitionError";
  readonly code = "store.illegal-transition";
  constructor(
    readonly jobId: string,
    readonly current: JobState,
    readonly attempted: JobState,
    options?: ErrorOptions,
  ) {
    const next = nextStates(current);
    super(
      `Job ${jobId} is ${current}; it cannot become ${attempted}. ` +
        (isTerminal(current)
          ? "It has ended and ended jobs never change: treat this as a duplicate or late message and drop it."
          : `Only ${next.join(", ")} may follow ${current}: check the order of this job's events, or whether another orchestrator owns it.`),
      options,
    );
  }
}

/** The job id is not in the store. */
export class JobNotFoundError extends Error {
  override readonly name = "JobNotFoundError";
  readonly code = "store.job-not-found";
  constructor(
    readonly jobId: string,
    options?: ErrorOptions,
  ) {
    super(`Job ${jobId} is not in the store: record its JobRequest (insertJob) before changing it.`, options);
  }
}

/** A JobRequest reused the id of a different job. The request is bad: dead-letter it. */
export class JobIdConflictError extends Error {
  override readonly name = "JobIdConflictError";
  readonly code = "store.job-id-conflict";
  constructor(
    readonly jobId: string,
    readonly existing: string,
    readonly incoming: string,
    options?: ErrorOptions,
  ) {
    super(
      `Job ${jobId} already exists for ${existing}, but a request with the same id came for ${incoming}. ` +
        "A job id must name one job only: dead-letter this request and check the forge runner that produced it.",
      options,
    );
  }
}

/** The caller no longer owns the job's lease: stop working on the job at once. */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  readonly code = "store.lease-lost";
  constructor(
    readonly jobId: string,
    readonly owner: string,
    readonly holder: string | undefined,
    options?: ErrorOptions,
  ) {
    super(
      `Orchestrator ${owner} no longer holds the lease on job ${jobId} ` +
        (holder ? `(${holder} took it over after it expired)` : "(it was released or taken over and released)") +
        ". Stop working on this job and tear its VM down: another orchestrator or the reaper is handling it.",
      options,
    );
  }
}

/** An applied migration's text changed. Stop: the schema may not be what the code expects. */
export class MigrationEditedError extends Error {
  override readonly name = "MigrationEditedError";
  readonly code = "store.migration-edited";
  constructor(
    readonly migration: string,
    readonly appliedChecksum: string,
    readonly currentChecksum: string,
    options?: ErrorOptions,
  ) {
    super(
      `Migration ${migration} was applied with checksum ${appliedChecksum.slice(0, 12)}…, but this program's copy ` +
        `has ${currentChecksum.slice(0, 12)}…. Applied migrations must never be edited: restore its original ` +
        "text and put the change in a new, higher-numbered migration.",
      options,
    );
  }
}

/** The database was migrated by a newer gnomon. Stop: upgrade this host. */
export class DatabaseTooNewError extends Error {
  override readonly name = "DatabaseTooNewError";
  readonly code = "store.database-too-new";
  constructor(
    readonly databaseVersion: number,
    readonly programVersion: number,
    options?: ErrorOptions,
  ) {
    super(
      `The database schema is at migration ${databaseVersion}, but this gnomon knows migrations up to ` +
        `${programVersion} only. Another host runs a newer gnomon: upgrade this host to the fleet's version.`,
      options,
    );
  }
}

/** A migration's SQL failed; its transaction was rolled back. Stop: fix the migration. */
export class MigrationFailedError extends Error {
  override readonly name = "MigrationFailedError";
  readonly code = "store.migration-failed";
  constructor(
    readonly migration: string,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    super(
      `Migration ${migration} failed${cause}. Nothing of it was applied and later migrations were not tried; ` +
        "fix the database or the migration, then start again.",
      options,
    );
  }
}

/** The store could not be reached or opened. Retry later or fix the setting named in the message. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  readonly code = "store.unavailable";
  constructor(
    readonly where: string,
    readonly hint: string,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause instanceof Error ? ` (${options.cause.message})` : "";
    super(`Cannot open the store at ${where}${cause}. ${hint}`, options);
  }
}

/**
 * The connection broke while a transaction committed: it may or may not have taken effect. Read the
 * state back before doing it again.
 */
export class CommitUnknownError extends Error {
  override readonly name = "CommitUnknownError";
  readonly code = "store.commit-unknown";
  constructor(options?: ErrorOptions) {
    const cause = options?.cause instanceof Error ? ` (${options.cause.message})` : "";
    super(
      `The database connection broke while a transaction committed${cause}; whether it took effect is unknown. ` +
        "Read the state back before trying again.",
      options,
    );
  }
}

/** Another process uses the embedded database directory. Stop: one directory serves one process. */
export class DataDirInUseError extends Error {
  override readonly name = "DataDirInUseError";
  readonly code = "store.data-dir-in-use";
  constructor(
    readonly dir: string,
    readonly pid: number,
    readonly lockFile: string,
    options?: ErrorOptions,
  ) {
    super(
      `The embedded database in ${dir} is in use by process ${pid} (see ${lockFile}). Stop that process, ` +
        "give this one its own dataDir, or set DATABASE_URL so that several processes share one PostgreSQL. " +
        `If no such process runs any more, delete ${lockFile}.`,
      options,
    );
  }
}

/**
 * The database was used through the outer handle from inside transaction() or withConnection().
 * That runs outside the transaction on PostgreSQL and deadlocks on the embedded database. A bug.
 */
export class NestedQueryError extends Error {
  override readonly name = "NestedQueryError";
  readonly code = "store.nested-query";
  constructor(options?: ErrorOptions) {
    super(
      "The database handle was used inside its own transaction() or withConnection() callback. " +
        "Use the handle the callback receives; the outer one would run outside the transaction " +
        "(PostgreSQL) or wait forever (embedded database).",
      options,
    );
  }
}

/** The handle is closed. A bug in start/stop ordering: the store stops after everything that uses it. */
export class StoreClosedError extends Error {
  override readonly name = "StoreClosedError";
  readonly code = "store.closed";
  constructor(options?: ErrorOptions) {
    super("The store is closed. Stop the store only after every service that uses it has stopped.", options);
  }
}
