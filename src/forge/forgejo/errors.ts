// Forgejo error classes, one per decision a caller makes (stop the daemon, fail the task, retry),
// and the classification of connect-rpc failures. Messages say what happened and what to do.
import { Code, ConnectError } from "@connectrpc/connect";
import { isAbort } from "../../lifecycle/abort.js";

/** The connect code of an error, `undefined` when it did not come from a call. */
export function codeOf(err: unknown): Code | undefined {
  return err instanceof ConnectError ? err.code : undefined;
}

/**
 * Failures worth retrying later: the server or the network is having a moment. `internal` is on the
 * list because Forgejo answers it for database trouble and for a request key still in use.
 */
export function isTransient(err: unknown): boolean {
  // Already classified as the end of this runner (Declare at start answers Unauthenticated for a
  // deleted runner): retrying it would wait for ever without a word.
  if (err instanceof RunnerUnregisteredError) return false;
  const code = codeOf(err);
  if (code === undefined) return !isAbort(err);
  return (
    code === Code.Unavailable ||
    code === Code.DeadlineExceeded ||
    code === Code.Internal ||
    code === Code.Unknown ||
    code === Code.ResourceExhausted ||
    code === Code.Aborted
  );
}

/** What `gnomon forgejo register` needs to register a new runner in place of a deleted one. */
export interface RegisterAgain {
  readonly name: string;
  /** Full label texts (`name:scheme:arg`), as the runner serves them now. */
  readonly labels: readonly string[];
  /** The credentials file to overwrite; absent: register's default (forgejo.credentialsFile). */
  readonly credentialsFile?: string;
}

/** A word for a POSIX shell: as is when it is plain, else single-quoted. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** The command that registers a runner in place of the deleted one; TOKEN stands for a new registration token. */
export function registerAgainCommand(instance: string, again: RegisterAgain): string {
  const words = ["gnomon", "forgejo", "register", "--replace", "--instance", instance, "--token", "TOKEN"];
  words.push("--name", again.name, "--labels", again.labels.join(","));
  if (again.credentialsFile) words.push("--credentials-file", again.credentialsFile);
  return words.map((w, i) => (w === "TOKEN" && words[i - 1] === "--token" ? w : shellWord(w))).join(" ");
}

/** The server no longer accepts this runner's credentials: stop and register again. */
export class RunnerUnregisteredError extends Error {
  override readonly name = "RunnerUnregisteredError";
  readonly code = "forgejo.unregistered";
  constructor(
    readonly instance: string,
    readonly runner: string,
    again: RegisterAgain,
    options?: ErrorOptions,
  ) {
    // The credentials file still exists, so a plain `register` would refuse: the command says --replace.
    super(
      `Forgejo at ${instance} no longer accepts runner ${runner}: the runner was deleted there, or its registration was lost. ` +
        "Take a new registration token from Forgejo (Settings → Actions → Runners → Create new runner) and register " +
        `again in place of the old credentials: \`${registerAgainCommand(instance, again)}\` with the token for TOKEN, then start gnomon again.`,
      options,
    );
  }
}

/** Register was refused: a wrong, stale or missing registration token, or a bad name. */
export class RegistrationRefusedError extends Error {
  override readonly name = "RegistrationRefusedError";
  readonly code = "forgejo.registration-refused";
  constructor(
    readonly instance: string,
    readonly problem: string,
    options?: ErrorOptions,
  ) {
    super(
      `Forgejo at ${instance} refused the registration: ${problem}. ` +
        "Copy the current registration token from Forgejo (Settings → Actions → Runners → Create new runner, " +
        "in the site administration, the organisation, the user or the repository) and run `gnomon forgejo register` again.",
      options,
    );
  }
}

/** Nothing that speaks Forgejo's runner protocol answered at the address. */
export class ForgejoUnreachableError extends Error {
  override readonly name = "ForgejoUnreachableError";
  readonly code = "forgejo.unreachable";
  constructor(
    readonly instance: string,
    readonly problem: string,
    options?: ErrorOptions,
  ) {
    super(
      `Forgejo at ${instance} cannot be reached: ${problem}. ` +
        "Check the URL (the instance's root, e.g. https://forgejo.example.org/, as in the browser), " +
        "that Forgejo is running with Actions enabled, and that this host can reach it.",
      options,
    );
  }
}

/** The credentials file is missing or unreadable. */
export class CredentialsFileError extends Error {
  override readonly name = "CredentialsFileError";
  readonly code = "forgejo.credentials";
  constructor(
    readonly path: string,
    readonly problem: string,
    options?: ErrorOptions,
  ) {
    super(
      `The Forgejo credentials file ${path} ${problem}. ` +
        "Register the runner with `gnomon forgejo register --instance URL --token TOKEN --labels …`, " +
        "or point forgejo.credentialsFile (GNOMON_FORGEJO_CREDENTIALS) at the file it wrote.",
      options,
    );
  }
}

/** A label in the configuration or on the command line cannot be used. */
export class LabelError extends Error {
  override readonly name = "LabelError";
  readonly code = "forgejo.label";
  constructor(
    readonly label: string,
    readonly problem: string,
  ) {
    super(
      `The label ${JSON.stringify(label)} ${problem}. Write labels as NAME (a VM from the image catalog entry NAME), ` +
        "NAME:vm:IMAGE (a VM from catalog entry IMAGE) or NAME:host (steps on this host, only where the orchestrator allows host labels).",
    );
  }
}

/** A task that cannot become a job: it is failed on Forgejo with this message as its last log line. */
export class TaskRejectedError extends Error {
  override readonly name = "TaskRejectedError";
  readonly code = "forgejo.task-rejected";
}

/** The job's `if:` is false for this task: it ends as skipped on Forgejo without running. */
export class JobSkippedError extends Error {
  override readonly name = "JobSkippedError";
  readonly code = "forgejo.job-skipped";
}

/** The server acknowledged fewer log rows than it had before: those rows are gone on its side. */
export class LogsLostError extends Error {
  override readonly name = "LogsLostError";
  readonly code = "forgejo.logs-lost";
  constructor(
    readonly taskId: bigint,
    readonly hadAcked: number,
    readonly nowAcked: number,
  ) {
    super(
      `Forgejo acknowledged ${nowAcked} log rows of task ${taskId} after it had acknowledged ${hadAcked}: ` +
        "it lost rows it had stored. Check the Forgejo server's log storage; the lost rows cannot be sent again.",
    );
  }
}
