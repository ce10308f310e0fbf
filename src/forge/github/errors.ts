// The GitHub runner's error classes, one per decision a caller makes: retry it, skip one message or
// job, or stop the daemon with a sentence that tells the operator what to do. Never thrown as strings.

/** What a GitHub error body said, in the shape of the service that sent it. */
export type ApiErrorDetail =
  | { readonly kind: "vss"; readonly typeKey: string; readonly message: string }
  | { readonly kind: "broker"; readonly errorKind: string; readonly message: string }
  | { readonly kind: "run-service"; readonly message: string }
  | { readonly kind: "oauth"; readonly error: string; readonly description: string }
  | { readonly kind: "text"; readonly text: string };

export function describeDetail(d: ApiErrorDetail): string {
  switch (d.kind) {
    case "vss":
      return d.typeKey ? `${d.typeKey}: ${d.message}` : d.message;
    case "broker":
      return `${d.errorKind}: ${d.message}`;
    case "run-service":
      return d.message;
    case "oauth":
      return d.description ? `${d.error}: ${d.description}` : d.error;
    case "text":
      return d.text;
  }
}

/** An HTTP answer from a GitHub service that was not a success. */
export class GitHubApiError extends Error {
  override readonly name = "GitHubApiError";
  readonly code = "github.api";
  constructor(
    /** What we were doing, for the message: "create the broker session". */
    readonly what: string,
    readonly status: number,
    /** The URL without its query string (queries can carry SAS signatures). */
    readonly url: string,
    readonly detail: ApiErrorDetail,
    options?: ErrorOptions,
  ) {
    const said = describeDetail(detail).trim();
    super(`could not ${what}: HTTP ${status} from ${url}${said ? ` (${truncate(said, 300)})` : ""}`, options);
  }

  /** 5xx, 429 and 408 are worth another try; other 4xx answers will not change by themselves. */
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** The connection failed or timed out before GitHub answered: always worth another try. */
export class GitHubUnreachableError extends Error {
  override readonly name = "GitHubUnreachableError";
  readonly code = "github.unreachable";
  constructor(
    readonly what: string,
    readonly url: string,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    super(`could not ${what}: ${url} did not answer${cause}; check the network and GitHub's status page`, options);
  }
}

/** GitHub answered with a body we cannot read: a protocol change or a proxy in the way. */
export class GitHubProtocolError extends Error {
  override readonly name = "GitHubProtocolError";
  readonly code = "github.protocol";
  constructor(
    readonly what: string,
    readonly url: string,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(
      `could not ${what}: the answer from ${url} is not what the runner protocol describes (${truncate(problem, 300)}); ` +
        "if a proxy sits between gnomon and GitHub, check it; otherwise report this with the gnomon version",
      options,
    );
  }
}

/** The registration was deleted on GitHub (idle runners are removed after 14 days): fatal. */
export class RegistrationLostError extends Error {
  override readonly name = "RegistrationLostError";
  readonly code = "github.registration-lost";
  constructor(
    readonly runner: string,
    readonly serverSaid: string,
    options?: ErrorOptions,
  ) {
    super(
      `the GitHub registration of runner ${runner} no longer exists (GitHub said: ${truncate(serverSaid, 200)}); ` +
        "run `gnomon github register` again",
      options,
    );
  }
}

/** GitHub refuses the advertised runner version: fatal until the configuration changes. */
export class RunnerVersionDeprecatedError extends Error {
  override readonly name = "RunnerVersionDeprecatedError";
  readonly code = "github.runner-version";
  constructor(
    readonly version: string,
    readonly serverSaid: string,
    options?: ErrorOptions,
  ) {
    super(
      `GitHub refuses runner version ${version} (GitHub said: ${truncate(serverSaid, 200)}); set github.runnerVersion ` +
        "(or GNOMON_GITHUB_RUNNER_VERSION) to the newest release listed at https://github.com/actions/runner/releases and restart",
      options,
    );
  }
}

/** The local clock differs from GitHub's by more than the token endpoint tolerates (5 minutes). */
export class ClockSkewError extends Error {
  override readonly name = "ClockSkewError";
  readonly code = "github.clock-skew";
  constructor(serverSaid: string, options?: ErrorOptions) {
    super(
      `GitHub rejected the runner's token request because the clocks disagree (${truncate(serverSaid, 200)}); ` +
        "synchronise this host's clock (for example with chrony or systemd-timesyncd)",
      options,
    );
  }
}

/** No (complete) registration in the credentials directory. */
export class NotRegisteredError extends Error {
  override readonly name = "NotRegisteredError";
  readonly code = "github.not-registered";
  constructor(
    readonly dir: string,
    missing: string,
  ) {
    super(
      `no GitHub runner registration in ${dir} (${missing}); run \`gnomon github register --url https://github.com/OWNER/REPO --token TOKEN --labels LABEL\` ` +
        "or pass --jitconfig to `gnomon github run`",
    );
  }
}

/** A credentials file exists but cannot be used. */
export class CredentialsFileError extends Error {
  override readonly name = "CredentialsFileError";
  readonly code = "github.credentials-file";
  constructor(
    readonly file: string,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(`${file} ${problem}; remove the directory and run \`gnomon github register\` again`, options);
  }
}

/** Registration could not be completed; the message says why and what to change. */
export class RegistrationError extends Error {
  override readonly name = "RegistrationError";
  readonly code = "github.registration";
}

/** Another process holds a message session for this runner (GitHub allows one). */
export class SessionConflictError extends Error {
  override readonly name = "SessionConflictError";
  readonly code = "github.session-conflict";
  constructor(
    readonly runner: string,
    options?: ErrorOptions,
  ) {
    super(
      `another process is already listening as runner ${runner}; stop the other \`gnomon github run\` ` +
        "(or the official runner) using this registration, or register a second runner for it",
      options,
    );
  }
}

/** GitHub no longer knows the job (completed, cancelled or given to someone else): stop working on it. */
export class JobGoneError extends Error {
  override readonly name = "JobGoneError";
  readonly code = "github.job-gone";
}

/** The job's lock could not be renewed before it expired: GitHub has given up on the job. */
export class LockLostError extends Error {
  override readonly name = "LockLostError";
  readonly code = "github.lock-lost";
  constructor(
    readonly jobId: string,
    readonly lockedUntil: Date,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause instanceof Error ? ` (last error: ${options.cause.message})` : "";
    super(
      `the lock of GitHub job ${jobId} expired at ${lockedUntil.toISOString()} and could not be renewed${cause}; ` +
        "GitHub reports the runner as having lost communication with the server",
      options,
    );
  }
}

/**
 * A job message beyond one of DOCUMENT_LIMITS (its contexts or template tokens nest too deep, or
 * hold too many values): gnomon does not run the job, and fails it on GitHub with this message.
 */
export class JobMessageLimitError extends Error {
  override readonly name = "JobMessageLimitError";
  readonly code = "github.job-message-limit";
  constructor(
    readonly limit: "maxDepth" | "maxNodes",
    readonly max: number,
    what: string,
    options?: ErrorOptions,
  ) {
    super(
      `${what}, over gnomon's limit of ${max} (${limit}) for what it reads from a job; ` +
        "simplify the workflow (or the event payload) that made it",
      options,
    );
  }
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** Network failures and 5xx/429/408 answers; everything else is an answer that will not change. */
export function isTransient(err: unknown): boolean {
  return err instanceof GitHubUnreachableError || (err instanceof GitHubApiError && err.retryable);
}
