// The fake GitHub's shapes: what tests script and inspect (re-exported by ../github-server.ts), and
// the books it keeps of sessions and their messages. Types only.
import type { KeyObject } from "node:crypto";

export type FakeFlow = "v2" | "classic";

export interface FakeGitHubOptions {
  /** What runner-registration answers in `use_v2_flow`: github.com (v2) or GHES (classic). */
  readonly flow?: FakeFlow;
  /** Job lock length after acquire and each renewal (GitHub: ~10 min). */
  readonly lockMs?: number;
  /** `expires_in` of runner access tokens. */
  readonly tokenLifetimeS?: number;
  /** How long a message poll is held when there is nothing (GitHub: ~50 s). */
  readonly pollHoldMs?: number;
  /** Classic agents: the RequireFipsCryptography property (undefined: absent). */
  readonly requireFips?: boolean;
  /** Classic sessions: OAEP with SHA-256 instead of SHA-1. */
  readonly useFipsEncryption?: boolean;
  /**
   * Sessions, polls and acknowledgements from a lower runner version get the "deprecated" answer.
   * Those that carry no version at all get it whatever this says.
   */
  readonly minRunnerVersion?: string;
  /** Plan version of classic jobs (≥ 8: completion by JobCompleted event). */
  readonly classicPlanVersion?: number;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly at: number;
  /** The HTTP status the fake answered with (undefined while the call is held, e.g. a long poll). */
  status: number | undefined;
}

/** One WebSocket message the live console received, as sent (its frames joined), valid or not. */
export interface LiveMessage {
  /** The job whose token opened the socket. */
  readonly jobId: string;
  readonly binary: boolean;
  readonly data: string;
  readonly at: number;
}

export interface StepScript {
  readonly name?: string;
  /** A script step (run:); `${{ }}` in it is sent as GitHub does, converted to format(). */
  readonly run?: string;
  /** A repository action (uses:), e.g. "actions/checkout@v4". */
  readonly uses?: string;
  /** Inputs of a uses: step; `${{ }}` in them is sent as format(), as for run:. */
  readonly with?: Readonly<Record<string, string>>;
  readonly env?: Readonly<Record<string, string>>;
  readonly id?: string;
  /** Fields merged into the step as sent, for steps the script cannot describe otherwise. */
  readonly raw?: Readonly<Record<string, unknown>>;
}

export interface JobScript {
  readonly labels?: readonly string[];
  readonly name?: string;
  readonly steps?: readonly StepScript[];
  /** Secret variables of the job (isSecret) and mask hints for them. */
  readonly secrets?: Readonly<Record<string, string>>;
  /**
   * Plain variables of the job message, as GitHub adds them: a re-run with debug logging sets
   * ACTIONS_RUNNER_DEBUG and ACTIONS_STEP_DEBUG to "true" here (they reach no context).
   */
  readonly variables?: Readonly<Record<string, string>>;
  /** Job outputs: name → expression. */
  readonly outputs?: Readonly<Record<string, string>>;
  readonly matrix?: Readonly<Record<string, string | number | boolean>>;
  /** Merged over the job's github context (e.g. the sha of a commit in the fake's repository). */
  readonly github?: Readonly<Record<string, string>>;
}

/** One call of the fake's repository REST API (/api/v3/repos/…), as answered. */
export interface RepoApiCall {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** The job whose GITHUB_TOKEN authenticated it, if one did. */
  readonly jobId?: string;
}

export interface TimelineRecordSeen {
  readonly id: string;
  readonly parentId?: string | null;
  readonly type?: string;
  readonly name?: string;
  readonly order?: number;
  readonly state?: string;
  readonly result?: string | null;
  readonly log?: { readonly id: number } | null;
  readonly issues?: readonly { readonly type: string; readonly message: string }[];
}

export interface FakeJob {
  readonly jobId: string;
  readonly planId: string;
  readonly timelineId: string;
  readonly requestId: number;
  readonly runnerRequestId: string;
  readonly labels: readonly string[];
  /** What the job message carried (for tests that check the mapping). */
  readonly message: Record<string, unknown>;
  /** The job's SystemVssConnection token and its GITHUB_TOKEN: both secrets the runner must protect. */
  readonly accessToken: string;
  readonly githubToken: string;
  readonly userSecrets: Readonly<Record<string, string>>;
  flow: "v2" | "classic" | "migrated" | undefined;
  state: "queued" | "assigned" | "acquired" | "completed" | "lost";
  runnerId: number | undefined;
  acquireAttempts: number;
  lockedUntil: number;
  /** Times of successful renewals (the first one included). */
  readonly renewals: number[];
  /** When the lock ran out without a renewal, if it did. */
  lockExpiredAt: number | undefined;
  conclusion: string | undefined;
  outputs: Record<string, { value: string; isSecret?: boolean }> | undefined;
  stepResults: Record<string, unknown>[] | undefined;
  annotations: Record<string, unknown>[] | undefined;
  /** Results: every WorkflowStepsUpdate it accepted, in arrival order. */
  readonly stepUpdates: { changeOrder: number; steps: Record<string, unknown>[] }[];
  /**
   * Results: step updates whose change_order was not above the last one accepted. The service
   * answers them `ok` and drops them, so a runner cannot tell; they change nothing GitHub shows.
   */
  readonly ignoredStepUpdates: { changeOrder: number; steps: Record<string, unknown>[] }[];
  /** Results: what the job's page shows for each step (by external_id), merged from accepted updates. */
  readonly stepView: Map<string, Record<string, unknown>>;
  /** Results: uploaded step logs by step id, with the line count of their metadata. */
  readonly stepLogs: Map<string, { content: string; lineCount: number | undefined }>;
  jobLog: { content: string; lineCount: number | undefined } | undefined;
  /** Classic: the timeline as upserted, and every PATCH in order. */
  readonly timeline: Map<string, TimelineRecordSeen>;
  readonly timelinePatches: TimelineRecordSeen[][];
  readonly classicLogs: Map<number, { path: string; lines: string[] }>;
  readonly feed: { stepId: string; startLine: number; lines: string[] }[];
  cancelRequested: boolean;
}

export interface FakeRunner {
  readonly id: number;
  name: string;
  labels: string[];
  ephemeral: boolean;
  disableUpdate: boolean;
  version: string;
  readonly groupId: number;
  readonly clientId: string;
  publicKey: KeyObject;
  readonly alg: "PS256" | "RS256";
  readonly flow: FakeFlow;
  readonly authorizationUrl: string;
  deleted: boolean;
  /** Jobs GitHub assigned to this runner; an ephemeral one is never assigned a second. */
  assignments: number;
}

export interface FakeFaults {
  /** The next N acquirejob calls answer 409 "already acquired". */
  acquireConflicts: number;
  /** While true, renewals (run service and classic) answer 500. */
  renewFailing: boolean;
  /** The next N message polls answer 503. */
  pollErrors: number;
  /** The next N step-log appends (classic) or blob uploads (v2) store the data and then answer 500. */
  uploadFailuresAfterStore: number;
  /** While true, the live console WebSocket refuses connections (503). */
  feedDown: boolean;
  /**
   * The Results service's Twirp API (step updates, log URLs and metadata): "up"; "failing", every
   * call answers 500 (counted in `resultsRefused`); "stalled", calls are held without an answer
   * until the fault changes (then answered as the new setting says) or the client gives up.
   */
  results: "up" | "failing" | "stalled";
  /** The next N completejob calls answer 500 before looking at the job. */
  completeErrors: number;
  /** completejob takes effect at once but its answer is held this long (a slow run service). */
  completeAnswerDelayMs: number;
}

export interface Session {
  readonly id: string;
  readonly runnerId: number;
  readonly kind: "broker" | "classic";
  readonly aesKey: Buffer | undefined;
  readonly messages: QueuedMessage[];
}

export interface QueuedMessage {
  readonly messageId: number;
  readonly messageType: string;
  readonly body: string;
  deleted: boolean;
  delivered: boolean;
  /** For job messages: the job, so an Online poll can tell assignment from cancellation. */
  readonly jobId?: string;
}
