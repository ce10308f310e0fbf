// A faithful fake of the GitHub services a self-hosted runner talks to, built from
// ../shared/spec/github-runner-protocol.md: REST registration (runner-registration, runner-admin),
// the OAuth token endpoint (verifies every JWT client assertion's signature and claims), the broker,
// the run service, the Results service with signed blob URLs, and a classic tenant (pools, agents,
// RSA-OAEP session keys, AES-CBC messages, job requests, timeline, logs, feed, plan events). It keeps
// the books a real service keeps (lock expiry, change orders, acknowledged log lines), offers fault
// injection, and a scripting API for tests. As strict as GitHub where it matters to a runner: an
// ephemeral runner is handed one job and is deleted once that job completes; sessions, polls and
// acknowledgements without a runner version are refused; every live-console frame is kept for the
// leak checks. Real HTTP on 127.0.0.1; no part of gnomon is imported.
import {
  constants,
  createCipheriv,
  createPublicKey,
  type KeyObject,
  publicEncrypt,
  randomBytes,
  randomUUID,
} from "node:crypto";
import { EventEmitter } from "node:events";
import { rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { TestContext } from "node:test";
import { decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { WebSocketServer } from "ws";
import { GitRepos, gitRequestOf, seedActions, tokenOf } from "./git-http.js";

// ------------------------------------------------------------------ public shapes

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

// ------------------------------------------------------------------ internals

interface Session {
  readonly id: string;
  readonly runnerId: number;
  readonly kind: "broker" | "classic";
  readonly aesKey: Buffer | undefined;
  readonly messages: QueuedMessage[];
}

interface QueuedMessage {
  readonly messageId: number;
  readonly messageType: string;
  readonly body: string;
  deleted: boolean;
  delivered: boolean;
  /** For job messages: the job, so an Online poll can tell assignment from cancellation. */
  readonly jobId?: string;
}

const ZERO_GUID = "00000000-0000-0000-0000-000000000000";
const DEFAULT_STEPS: readonly StepScript[] = [
  { uses: "actions/checkout@v4" },
  { name: "Say hello", run: "echo hello ${{ matrix.os }}" },
];
const REPO = "gnomon-org/gnomon-repo";
const TENANT = "Tn4ntG5nom0n";

function versionLess(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i += 1) {
    if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  }
  return false;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

const vssError = (status: number, typeKey: string, message: string) =>
  new HttpError(status, {
    message,
    typeKey,
    typeName: `GitHub.DistributedTask.WebApi.${typeKey}`,
    errorCode: 0,
    eventId: 3000,
  });
const brokerError = (status: number, errorKind: string, errorMessage: string) =>
  new HttpError(status, { source: "actions-broker-listener", errorKind, statusCode: status, errorMessage });
const runError = (status: number, errorMessage: string) =>
  new HttpError(status, { source: "actions-run-service", statusCode: status, errorMessage });

/** The text as a JSON object, or undefined when it is not one. */
function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Every string inside a JSON text (keys too), decoded, one per line after a blank line; "" for other text. */
function decodedStrings(text: string): string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return "";
  }
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (typeof x === "string") out.push(x);
    else if (Array.isArray(x)) for (const e of x) walk(e);
    else if (typeof x === "object" && x !== null)
      for (const [k, e] of Object.entries(x)) {
        out.push(k);
        walk(e);
      }
  };
  walk(v);
  return out.length > 0 ? `\n\n${out.join("\n")}` : "";
}

function b64urlToB64(s: string): string {
  return Buffer.from(s, "base64url").toString("base64");
}

/** `format('echo {0}', matrix.os)` for `echo ${{ matrix.os }}`, as the service sends mixed strings. */
function toFormatExpression(text: string): Record<string, unknown> | string {
  const parts: string[] = [];
  const args: string[] = [];
  let last = 0;
  for (const m of text.matchAll(/\$\{\{\s*(.+?)\s*\}\}/g)) {
    parts.push(text.slice(last, m.index).replace(/'/g, "''").replace(/\{/g, "{{").replace(/\}/g, "}}"));
    parts.push(`{${args.length}}`);
    args.push(m[1]!);
    last = (m.index ?? 0) + m[0].length;
  }
  if (args.length === 0) return text;
  parts.push(text.slice(last).replace(/'/g, "''").replace(/\{/g, "{{").replace(/\}/g, "}}"));
  if (parts.length === 3 && parts[0] === "" && parts[2] === "")
    return { type: 3, expr: args[0]!, file: 1, line: 9, col: 14 };
  return { type: 3, expr: `format('${parts.join("")}', ${args.join(", ")})`, file: 1, line: 9, col: 14 };
}

function lit(s: string) {
  return { type: 0, lit: s };
}

function dict(o: Record<string, unknown>): unknown {
  return {
    t: 2,
    d: Object.entries(o).map(([k, v]) => ({
      k,
      v: typeof v === "object" && v !== null && !Array.isArray(v) ? dict(v as Record<string, unknown>) : v,
    })),
  };
}

// ------------------------------------------------------------------ the fake

export class FakeGitHubServer {
  readonly url: string;
  /** The repository URL to register against. */
  readonly repoUrl: string;
  readonly tenantUrl: string;
  readonly faults: FakeFaults = {
    acquireConflicts: 0,
    renewFailing: false,
    pollErrors: 0,
    uploadFailuresAfterStore: 0,
    feedDown: false,
    results: "up",
    completeErrors: 0,
    completeAnswerDelayMs: 0,
  };
  /** Results calls answered 500 because of `faults.results`. */
  resultsRefused = 0;
  /** completejob calls answered 500 because of `faults.completeErrors`. */
  completeRefused = 0;
  /** Classic runners get a BrokerMigration message and then their jobs from the broker. */
  migrateToBroker = false;
  readonly requests: RecordedRequest[] = [];
  /**
   * Its git repositories (gnomon-org/gnomon-repo, actions), served over smart HTTP at
   * <url>/<owner>/<repo>(.git): public ones to anyone, private ones to the GITHUB_TOKEN of a running
   * job of that repository, pushes only with that token.
   */
  readonly git = new GitRepos();
  readonly #publicRepos = new Set<string>();
  /** Every call of the repository REST API, in order. */
  readonly repoApiCalls: RepoApiCall[] = [];
  /** Every message the live console WebSockets received, in arrival order (see `everythingReceived`). */
  readonly liveMessages: LiveMessage[] = [];
  /** Every JWT assertion the token endpoint verified: algorithm and claims. */
  readonly assertions: { alg: string; claims: Record<string, unknown> }[] = [];
  readonly #opts: Required<Omit<FakeGitHubOptions, "requireFips" | "minRunnerVersion">> &
    Pick<FakeGitHubOptions, "requireFips" | "minRunnerVersion">;
  readonly #server: Server;
  readonly #changes = new EventEmitter();
  readonly #registrationTokens = new Set<string>();
  readonly #removalTokens = new Set<string>();
  readonly #configTokens = new Map<string, "register" | "remove">();
  readonly #runners = new Map<number, FakeRunner>();
  readonly #accessTokens = new Map<string, { runnerId: number; expiresAt: number }>();
  readonly #jtis = new Set<string>();
  readonly #sessions = new Map<string, Session>();
  readonly #jobs = new Map<string, FakeJob>();
  #sockets: WebSocketServer | undefined;
  readonly #blobSigs = new Map<string, string>();
  readonly #blobs = new Map<string, string>();
  #nextRunnerId = 41;
  #nextMessageId = 100;
  #nextRequestId = 7000;
  #nextLogId = 1;
  #closed = false;

  private constructor(server: Server, url: string, opts: FakeGitHubOptions) {
    this.#server = server;
    this.url = url;
    this.repoUrl = `${url}/${REPO}`;
    this.tenantUrl = `${url}/_services/pipelines/${TENANT}`;
    this.#opts = {
      flow: opts.flow ?? "v2",
      lockMs: opts.lockMs ?? 10 * 60_000,
      tokenLifetimeS: opts.tokenLifetimeS ?? 3600,
      pollHoldMs: opts.pollHoldMs ?? 2_000,
      useFipsEncryption: opts.useFipsEncryption ?? false,
      classicPlanVersion: opts.classicPlanVersion ?? 13,
      requireFips: opts.requireFips,
      minRunnerVersion: opts.minRunnerVersion,
    };
    this.#changes.setMaxListeners(0);
  }

  static async start(opts: FakeGitHubOptions = {}): Promise<FakeGitHubServer> {
    let fake: FakeGitHubServer | undefined;
    const server = createServer((req, res) => {
      void fake!.#serve(req, res);
    });
    const sockets = new WebSocketServer({ noServer: true });
    server.on("upgrade", (req, socket, head) => fake!.#upgrade(sockets, req, socket as Socket, head));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeGitHubServer(server, `http://127.0.0.1:${port}`, opts);
    fake.#sockets = sockets;
    return fake;
  }

  // ---------------------------------------------------------------- scripting API

  /** A fresh registration token, as "New self-hosted runner" shows (one hour, one scope). */
  registrationToken(): string {
    const t = `AREG${randomBytes(12).toString("hex").toUpperCase()}`;
    this.#registrationTokens.add(t);
    return t;
  }

  removalToken(): string {
    const t = `AREM${randomBytes(12).toString("hex").toUpperCase()}`;
    this.#removalTokens.add(t);
    return t;
  }

  runners(): FakeRunner[] {
    return [...this.#runners.values()].filter((r) => !r.deleted);
  }

  runner(id: number): FakeRunner | undefined {
    return this.#runners.get(id);
  }

  /** Deletes a runner on the server, as GitHub does after 14 days offline. */
  deleteRunner(id: number): void {
    const r = this.#runners.get(id);
    if (r) this.#remove(r);
  }

  /** Revokes every runner access token (token rotation): the next call with one answers 401. */
  revokeAccessTokens(): void {
    this.#accessTokens.clear();
  }

  /** Access-token exchanges the token endpoint granted (each one after verifying a fresh JWT). */
  get tokenExchanges(): number {
    return this.assertions.length;
  }

  /** Queues a job for runners carrying all its labels; returns its live record. */
  queueJob(script: JobScript = {}): FakeJob {
    const jobId = randomUUID();
    const planId = randomUUID();
    const secrets = script.secrets ?? {};
    const githubToken = `ghs_${randomBytes(18).toString("base64url")}`;
    const jobPayload = Buffer.from(
      JSON.stringify({ orch_id: `${planId}.build.__default`, scp: "Actions.Results", exp: 9999999999 }),
    ).toString("base64url");
    const accessToken = `eyJhbGciOiJSUzI1NiJ9.${jobPayload}.${randomBytes(32).toString("base64url")}`;
    const job: FakeJob = {
      jobId,
      planId,
      timelineId: planId,
      requestId: this.#nextRequestId++,
      runnerRequestId: randomUUID(),
      labels: script.labels ?? ["self-hosted"],
      message: this.#jobMessage(jobId, planId, githubToken, accessToken, script),
      accessToken,
      githubToken,
      userSecrets: secrets,
      flow: undefined,
      state: "queued",
      runnerId: undefined,
      acquireAttempts: 0,
      lockedUntil: 0,
      renewals: [],
      lockExpiredAt: undefined,
      conclusion: undefined,
      outputs: undefined,
      stepResults: undefined,
      annotations: undefined,
      stepUpdates: [],
      ignoredStepUpdates: [],
      stepView: new Map(),
      stepLogs: new Map(),
      jobLog: undefined,
      timeline: new Map(),
      timelinePatches: [],
      classicLogs: new Map(),
      feed: [],
      cancelRequested: false,
    };
    this.#jobs.set(jobId, job);
    this.#changed();
    return job;
  }

  job(jobId: string): FakeJob {
    const j = this.#jobs.get(jobId);
    if (!j) throw new Error(`no such fake job ${jobId}`);
    this.#checkLock(j);
    return j;
  }

  /** The job message as the runner receives it: from acquirejob (v2) or in a classic message. */
  jobMessage(jobId: string, flow: "v2" | "classic"): Record<string, unknown> {
    return this.#deliveredMessage(this.job(jobId), flow);
  }

  /**
   * The steps of the job message that the job's completejob left out of `stepResults`. The run
   * service accepts such a completion (the official listener sends no stepResults at all after its
   * worker crashed), so the fake does too; tests use this to require that gnomon reports them all.
   */
  stepsNotInResults(jobId: string): string[] {
    const job = this.job(jobId);
    const reported = new Set((job.stepResults ?? []).map((s) => String(s["external_id"])));
    const steps = (job.message["steps"] as { id: string }[] | undefined) ?? [];
    return steps.map((s) => s.id).filter((id) => !reported.has(id));
  }

  /** Cancels a job as the UI's "Cancel workflow" does: a JobCancellation for the runner holding it. */
  cancelJob(jobId: string, timeout = "00:05:00"): void {
    const job = this.job(jobId);
    job.cancelRequested = true;
    const session = [...this.#sessions.values()].find((s) => s.runnerId === job.runnerId);
    if (session) this.#enqueue(session, "JobCancellation", JSON.stringify({ jobId, timeout }));
    this.#changed();
  }

  /** Requests whose path matches. */
  calls(path: RegExp | string, method?: string): RecordedRequest[] {
    return this.requests.filter(
      (r) => (typeof path === "string" ? r.path.includes(path) : path.test(r.path)) && (!method || r.method === method),
    );
  }

  /**
   * Everything the fake received, as one text, for leak assertions: every request (the live
   * console's WebSocket upgrades included) with its headers and body, and every live-console
   * message. A JSON body or message is followed by its strings decoded, so that text JSON escapes
   * (a quote, a backslash, `\u00e9`) is found in the form it had before it was encoded.
   */
  everythingReceived(): string {
    const requests = this.requests.map(
      (r) =>
        `${r.method} ${r.url}\n${Object.entries(r.headers)
          .map(([k, v]) => `${k}: ${v}`)
          .join("\n")}\n\n${r.body}${decodedStrings(r.body)}`,
    );
    const live = this.liveMessages.map((m) => `WebSocket message (job ${m.jobId})\n${m.data}${decodedStrings(m.data)}`);
    return [...requests, ...live].join("\n----\n");
  }

  /** Waits until `probe` returns something truthy, re-checking on every request the fake serves. */
  waitFor<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        for (const j of this.#jobs.values()) this.#checkLock(j);
        const v = probe();
        if (v) {
          cleanup();
          resolve(v);
          return true;
        }
        return false;
      };
      const onChange = () => {
        check();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`the fake GitHub did not see: ${what} (within ${timeoutMs} ms)`));
      }, timeoutMs);
      // Lock expiry happens without a request; look again at least every 100 ms.
      const tick = setInterval(onChange, 100);
      const cleanup = () => {
        clearTimeout(timer);
        clearInterval(tick);
        this.#changes.off("change", onChange);
      };
      this.#changes.on("change", onChange);
      check();
    });
  }

  /**
   * The live console (spec 6.6): a WebSocket at /_ws/ingest.sock for a job's own token, taking
   * {count, value, stepId, startLine} text messages; each lands in the job's `feed`. The upgrade
   * request is recorded like any other request, and every message as received in `liveMessages`,
   * before it is looked at: a malformed one is kept too. A message arrives in 1 KiB frames (spec
   * 6.6); it is kept whole, so a secret split across two frames is still found in it.
   */
  #upgrade(sockets: WebSocketServer, req: IncomingMessage, socket: Socket, head: Buffer): void {
    const recorded = this.#record(req, Buffer.alloc(0));
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const job = [...this.#jobs.values()].find((j) => token !== undefined && j.accessToken === token);
    const refusal =
      (req.url ?? "").split("?")[0] !== "/_ws/ingest.sock"
        ? "404 Not Found"
        : this.faults.feedDown
          ? "503 Service Unavailable"
          : job?.state !== "acquired"
            ? "401 Unauthorized"
            : undefined;
    if (refusal !== undefined || !job) {
      recorded.status = Number(refusal?.split(" ")[0] ?? 401);
      socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      this.#changed();
      return;
    }
    recorded.status = 101;
    sockets.handleUpgrade(req, socket, head, (ws) => {
      ws.on("message", (data, isBinary) => {
        const text = Buffer.isBuffer(data)
          ? data.toString("utf8")
          : Array.isArray(data)
            ? Buffer.concat(data).toString("utf8")
            : Buffer.from(data).toString("utf8");
        this.liveMessages.push({ jobId: job.jobId, binary: isBinary, data: text, at: Date.now() });
        const b = isBinary ? undefined : parseObject(text);
        const value = b?.["value"];
        if (!b || !Array.isArray(value) || b["count"] !== value.length || !(Number(b["startLine"]) >= 1)) {
          ws.close(1003, "bad feed message");
          return;
        }
        job.feed.push({ stepId: String(b["stepId"]), startLine: Number(b["startLine"]), lines: value as string[] });
        this.#changes.emit("change");
      });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#changes.emit("close");
    for (const ws of this.#sockets?.clients ?? []) ws.terminate();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.git.root, { recursive: true, force: true });
  }

  /**
   * A repository on the fake: one commit per entry on main, private unless `public`. Returns the
   * commits, oldest first. The jobs' own repository is gnomon-org/gnomon-repo.
   */
  createRepository(
    fullName: string,
    commits: readonly { files: Readonly<Record<string, string>>; message?: string }[],
    o: { public?: boolean } = {},
  ): string[] {
    if (o.public) this.#publicRepos.add(fullName.toLowerCase());
    return commits.map((c) => this.git.commit(fullName, c));
  }

  /** Serves the actions under `root` (../shared/actions) as github.com does: public, version and major tags. */
  seedActions(root: string): { repo: string; version: string; commit: string }[] {
    const seeded = seedActions(this.git, root);
    for (const s of seeded) this.#publicRepos.add(s.repo);
    return seeded;
  }

  /** Git over smart HTTP and the repository API, for a job's checkout, pushes, actions and API calls. */
  #web(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    const token = tokenOf(req);
    const job = token
      ? [...this.#jobs.values()].find(
          (j) => j.githubToken === token && (j.state === "assigned" || j.state === "acquired"),
        )
      : undefined;
    const own = (repo: string) => job !== undefined && repo === REPO;
    const git = gitRequestOf(req.method ?? "GET", url.pathname, url.search.slice(1));
    if (git) {
      if (!this.git.has(git.repo)) {
        res.writeHead(404, { "content-type": "text/plain" }).end("Repository not found.\n");
        return true;
      }
      if (git.push ? !own(git.repo) : !this.#publicRepos.has(git.repo) && !own(git.repo)) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"' }).end("Invalid username or token.\n");
        return true;
      }
      this.git.serve(req, res, url.pathname, url.search.slice(1), job ? `job-${job.jobId}` : undefined);
      return true;
    }
    const m = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!m || req.method !== "GET") return false;
    const name = `${m[1]}/${m[2]}`.toLowerCase();
    const answer = (status: number, body: unknown) => {
      this.repoApiCalls.push({ method: "GET", path: url.pathname, status, jobId: job?.jobId });
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
      this.#changed();
      return true;
    };
    if (!this.git.has(name) || (!this.#publicRepos.has(name) && !own(name)))
      return answer(404, {
        message: "Not Found",
        documentation_url: "https://docs.github.com/rest/repos/repos#get-a-repository",
      });
    return answer(200, {
      full_name: name,
      private: !this.#publicRepos.has(name),
      default_branch: "main",
      clone_url: `${this.url}/${name}.git`,
    });
  }

  // ---------------------------------------------------------------- the job message (spec 7)

  #jobMessage(
    jobId: string,
    planId: string,
    githubToken: string,
    accessToken: string,
    script: JobScript,
  ): Record<string, unknown> {
    const steps = (script.steps ?? DEFAULT_STEPS).map((s, i) => {
      const contextName =
        s.id ??
        (s.uses ? `__${s.uses.split("@")[0]!.replace(/[^A-Za-z0-9]/g, "_")}` : i === 0 ? "__run" : `__run_${i + 1}`);
      const base: Record<string, unknown> = {
        type: "action",
        id: randomUUID(),
        name: contextName,
        contextName,
        condition: "success()",
        continueOnError: null,
        timeoutInMinutes: null,
      };
      if (s.name) base["displayNameToken"] = { type: 0, lit: s.name, file: 1, line: 7 + i, col: 15 };
      if (s.env)
        base["environment"] = {
          type: 2,
          map: Object.entries(s.env).map(([k, v]) => ({ Key: lit(k), Value: toFormatExpression(v) })),
        };
      if (s.uses) {
        const [name, ref] = s.uses.split("@") as [string, string];
        base["reference"] = { type: "repository", name, ref, repositoryType: "GitHub" };
        if (s.with)
          base["inputs"] = {
            type: 2,
            map: Object.entries(s.with).map(([k, v]) => ({ Key: lit(k), Value: toFormatExpression(v) })),
          };
      } else {
        base["reference"] = { type: "script" };
        // One step uses lower-case pair names: the service's casing is not guaranteed (spec 7.5).
        const pair = (k: string, v: unknown) => (i % 2 === 0 ? { Key: lit(k), Value: v } : { key: lit(k), value: v });
        base["inputs"] = { type: 2, map: [pair("script", toFormatExpression(s.run ?? "true"))] };
      }
      return { ...base, ...s.raw };
    });
    const variables: Record<string, { value: string; isSecret?: boolean }> = {
      "system.github.token": { value: githubToken, isSecret: true },
      github_token: { value: githubToken, isSecret: true },
      "system.github.job": { value: "build" },
      "system.github.results_endpoint": { value: `${this.url}/results/` },
      // github.com's feature flag for the v2 cache service (the results service); GHES has none.
      actions_uses_cache_service_v2: { value: "true" },
      "system.runnerGroupName": { value: "Default" },
      "DistributedTask.NewActionMetadata": { value: "true" },
    };
    for (const [k, v] of Object.entries(script.secrets ?? {})) variables[k] = { value: v, isSecret: true };
    const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return {
      messageType: "RunnerJobRequest",
      plan: {
        scopeIdentifier: ZERO_GUID,
        planType: "actions",
        version: 0,
        planId,
        artifactUri: "",
        artifactLocation: "",
      },
      timeline: { id: planId, changeId: 0, location: null },
      jobId,
      jobDisplayName: script.name ?? "build (linux)",
      jobName: "__default",
      requestId: 0,
      lockedUntil: "0001-01-01T00:00:00",
      jobContainer: null,
      jobServiceContainers: null,
      jobOutputs: script.outputs
        ? {
            type: 2,
            map: Object.entries(script.outputs).map(([k, v]) => ({ Key: lit(k), Value: { type: 3, expr: v } })),
          }
        : null,
      resources: { endpoints: [] },
      contextData: {
        github: dict({
          repository: REPO,
          repository_owner: "gnomon-org",
          workflow: "ci",
          server_url: this.url,
          api_url: `${this.url}/api/v3`,
          event_name: "push",
          ref: "refs/heads/main",
          sha: "e607a7aae26e113aa3d8ecf1c26c62e0d74192eb",
          run_id: "36038637634",
          run_attempt: "1",
          event: { ref: "refs/heads/main", repository: { private: false, name: "gnomon-repo" } },
          ...script.github,
        }),
        matrix: dict(script.matrix ?? { os: "linux" }),
        strategy: dict({ "fail-fast": true, "job-index": 0, "job-total": 1, "max-parallel": 1 }),
        needs: { t: 2 },
        inputs: { t: 2, d: [] },
        vars: dict({ GREETING: "hello" }),
        job: dict({ check_run_id: 107764987530, workflow_file_path: ".github/workflows/ci.yml" }),
      },
      mask: [
        ...Object.values(script.secrets ?? {}).map((v) => ({ type: "regex", value: escapeRegex(v) })),
        { type: "regex", value: escapeRegex(githubToken) },
      ],
      environmentVariables: [{ type: 2, map: [{ Key: lit("CI_VAR"), Value: lit("yes") }] }],
      defaults: [],
      variables,
      steps,
      fileTable: [".github/workflows/ci.yml"],
      billingOwnerId: "U_kgDOAH-IyQ",
      // filled per flow when delivered
      _accessToken: accessToken,
    };
  }

  #deliveredMessage(job: FakeJob, flow: "v2" | "classic"): Record<string, unknown> {
    const { _accessToken, ...m } = job.message;
    const runUrl = `${this.url}/run/`;
    const endpoint = {
      name: "SystemVssConnection",
      url: flow === "v2" ? runUrl : `${this.tenantUrl}/`,
      authorization: { scheme: "OAuth", parameters: { AccessToken: String(_accessToken) } },
      data: {
        ResultsServiceUrl: `${this.url}/results/`,
        FeedStreamUrl: `${this.url.replace(/^http:/, "ws:")}/_ws/ingest.sock`,
        CacheServerUrl: `${this.url}/cache/`,
        GenerateIdTokenUrl: "",
        ServerId: "",
      },
      isShared: false,
      isReady: true,
    };
    if (flow === "v2") return { ...m, resources: { endpoints: [endpoint] } };
    const {
      ["system.github.results_endpoint"]: _r,
      actions_uses_cache_service_v2: _c,
      ...vars
    } = m["variables"] as Record<string, unknown>;
    return {
      ...m,
      messageType: "PipelineAgentJobRequest",
      plan: { ...(m["plan"] as object), planType: "Actions", version: this.#opts.classicPlanVersion },
      requestId: job.requestId,
      resources: { endpoints: [endpoint] },
      variables: vars,
    };
  }

  // ---------------------------------------------------------------- helpers

  #changed(): void {
    this.#changes.emit("change");
  }

  /**
   * The registration is gone: its sessions with it, and every call made with its credentials
   * answers 401 (a token exchange: invalid_client), polls held at this moment included.
   */
  #remove(runner: FakeRunner): void {
    runner.deleted = true;
    for (const [id, s] of this.#sessions) if (s.runnerId === runner.id) this.#sessions.delete(id);
    this.#changed();
  }

  /** A job's completion was accepted: GitHub removes an ephemeral runner with its one job (spec 9.2). */
  #completed(job: FakeJob): void {
    job.state = "completed";
    const runner = job.runnerId === undefined ? undefined : this.#runners.get(job.runnerId);
    if (runner?.ephemeral) this.#remove(runner);
    this.#changed();
  }

  #checkLock(job: FakeJob): void {
    if (job.state === "acquired" && Date.now() > job.lockedUntil) {
      job.state = "lost";
      job.lockExpiredAt = job.lockedUntil;
    }
  }

  #enqueue(session: Session, messageType: string, body: string, jobId?: string): QueuedMessage {
    const m: QueuedMessage = {
      messageId: this.#nextMessageId++,
      messageType,
      body,
      deleted: false,
      delivered: false,
      ...(jobId ? { jobId } : {}),
    };
    session.messages.push(m);
    this.#changed();
    return m;
  }

  #runnerOf(req: IncomingMessage): FakeRunner {
    const auth = req.headers.authorization ?? "";
    const token = /^Bearer (.+)$/.exec(auth)?.[1];
    const entry = token ? this.#accessTokens.get(token) : undefined;
    if (!entry || entry.expiresAt < Date.now()) throw new HttpError(401, { message: "Bad credentials" });
    const runner = this.#runners.get(entry.runnerId);
    if (!runner || runner.deleted) throw new HttpError(401, { message: "the runner no longer exists" });
    return runner;
  }

  #jobByToken(req: IncomingMessage): FakeJob {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const job = [...this.#jobs.values()].find((j) => j.accessToken === token);
    if (!job) throw new HttpError(401, { message: "invalid job token" });
    this.#checkLock(job);
    return job;
  }

  /**
   * The version gate of sessions, polls and acknowledgements (spec 9.1): a version below the minimum
   * is deprecated, and so is a call that states none (GitHub has a minimum at all times; a runner
   * that says nothing cannot be above it).
   */
  #checkVersion(version: string | null | undefined, kind: "broker" | "classic"): void {
    const min = this.#opts.minRunnerVersion;
    const v = version ?? "";
    if (/^\d+\.\d+\.\d+$/.test(v) && !(min && versionLess(v, min))) return;
    const message = `Runner version v${v} is deprecated and cannot receive messages.`;
    throw kind === "broker"
      ? brokerError(403, "RunnerVersionTooOld", message)
      : vssError(403, "AccessDeniedException", message);
  }

  #registrationToken(req: IncomingMessage, kind: "register" | "remove" | "either"): string {
    const token = /^RemoteAuth (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const ok =
      (kind !== "remove" && this.#registrationTokens.has(token)) ||
      (kind !== "register" && this.#removalTokens.has(token));
    if (!ok) throw new HttpError(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
    return token;
  }

  #configToken(req: IncomingMessage): "register" | "remove" {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const kind = this.#configTokens.get(token);
    if (kind) return kind;
    // Runner tokens may read pools too (the official runner's connection check).
    this.#runnerOf(req);
    return "register";
  }

  #groups() {
    return [
      { id: 1, name: "Default", default: true, is_hosted: false },
      { id: 2, name: "gnomon-pool", default: false, is_hosted: false },
      { id: 3, name: "GitHub Actions", default: false, is_hosted: true },
    ];
  }

  #newRunner(body: {
    name: string;
    labels: string[];
    ephemeral: boolean;
    disableUpdate: boolean;
    version: string;
    groupId: number;
    publicKey: KeyObject;
    flow: FakeFlow;
  }): FakeRunner {
    const id = this.#nextRunnerId++;
    const clientId = randomUUID();
    const alg = body.flow === "v2" || this.#opts.requireFips !== false ? "PS256" : "RS256";
    const runner: FakeRunner = {
      id,
      name: body.name,
      labels: body.labels,
      ephemeral: body.ephemeral,
      disableUpdate: body.disableUpdate,
      version: body.version,
      groupId: body.groupId,
      clientId,
      publicKey: body.publicKey,
      alg,
      flow: body.flow,
      authorizationUrl:
        body.flow === "v2"
          ? `${this.url}/_services/vstoken/_apis/oauth2/token/${clientId}`
          : `${this.tenantUrl}/_apis/oauth2/token`,
      deleted: false,
      assignments: 0,
    };
    this.#runners.set(id, runner);
    return runner;
  }

  // ---------------------------------------------------------------- HTTP

  #record(req: IncomingMessage, raw: Buffer): RecordedRequest {
    const url = new URL(req.url ?? "/", this.url);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : String(v ?? "");
    const recorded: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      url: url.toString(),
      headers,
      body: raw.toString("utf8"),
      at: Date.now(),
      status: undefined,
    };
    this.requests.push(recorded);
    return recorded;
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // git's requests stream (a push can be large): answered before the body is read.
    if (this.#web(req, res, new URL(req.url ?? "/", this.url))) return;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? "/", this.url);
    const recorded = this.#record(req, raw);
    const closed = new AbortController();
    res.on("close", () => closed.abort());
    const answer = (status: number, type: string, body: string) => {
      recorded.status = status;
      res.writeHead(status, { "Content-Type": type }).end(body);
    };
    try {
      const out = await this.#route(req, url, raw, closed.signal);
      if (res.writableEnded || closed.signal.aborted) return;
      if (out === undefined) {
        recorded.status = 202;
        res.writeHead(202).end();
      } else if (typeof out === "object" && out !== null && "status" in out && "raw" in out) {
        const o = out as { status: number; raw: string };
        answer(o.status, "application/json", o.raw);
      } else answer(200, "application/json; charset=utf-8", JSON.stringify(out));
    } catch (err) {
      if (res.writableEnded || closed.signal.aborted) return;
      if (err instanceof HttpError) answer(err.status, "application/json", JSON.stringify(err.body));
      else answer(500, "text/plain", String(err));
    } finally {
      this.#changed();
    }
  }

  #json(raw: Buffer): Record<string, unknown> {
    try {
      const v = JSON.parse(raw.toString("utf8")) as unknown;
      if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new HttpError(400, { message: "the body is not a JSON object" });
  }

  async #route(req: IncomingMessage, url: URL, raw: Buffer, closed: AbortSignal): Promise<unknown> {
    const m = req.method ?? "GET";
    const p = url.pathname;
    let g: RegExpExecArray | null;

    // ---- REST API (GHES layout: /api/v3)
    if (m === "POST" && p === "/api/v3/actions/runner-registration") return this.#runnerRegistration(req, raw);
    g = /^\/api\/v3\/(?:repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runner-groups$/.exec(p);
    if (g && m === "GET") {
      this.#registrationToken(req, "register");
      const groups = this.#groups();
      return { total_count: groups.length, runner_groups: groups };
    }
    g = /^\/api\/v3\/(?:repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runners$/.exec(p);
    if (g && m === "GET") {
      this.#registrationToken(req, "register");
      const name = url.searchParams.get("name") ?? "";
      const runners = this.runners().filter((r) => r.name.toLowerCase() === name.toLowerCase());
      return {
        total_count: runners.length,
        runners: runners.map((r) => ({ id: r.id, name: r.name, os: "Linux", status: "offline", busy: false })),
      };
    }
    if (m === "POST" && p === "/api/v3/actions/runners/register") return this.#runnerAdminRegister(req, raw);
    g = /^\/api\/v3\/(?:repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runners\/(\d+)$/.exec(p);
    if (g && m === "DELETE") {
      this.#registrationToken(req, "remove");
      const r = this.#runners.get(Number(g[1]));
      if (!r || r.deleted) throw new HttpError(404, { message: "Not Found" });
      this.#remove(r);
      return { status: 204, raw: "" };
    }

    // ---- OAuth token endpoints
    if (
      m === "POST" &&
      (p.startsWith("/_services/vstoken/_apis/oauth2/token/") ||
        p === `/_services/pipelines/${TENANT}/_apis/oauth2/token`)
    )
      return this.#token(req, url, raw);

    // ---- broker
    if (p === "/broker/session" && m === "POST") return this.#createSession(req, raw, "broker");
    if (p === "/broker/session" && m === "DELETE") {
      const runner = this.#runnerOf(req);
      for (const [id, s] of this.#sessions)
        if (s.runnerId === runner.id && s.kind === "broker") this.#sessions.delete(id);
      return { status: 200, raw: "" };
    }
    if (p === "/broker/message" && m === "GET") return this.#poll(req, url, "broker", closed);
    if (p === "/broker/acknowledge" && m === "POST") {
      const runner = this.#runnerOf(req);
      this.#checkVersion(url.searchParams.get("runnerVersion"), "broker");
      const body = this.#json(raw);
      const job = [...this.#jobs.values()].find((j) => j.runnerRequestId === body["runnerRequestId"]);
      if (!job || job.runnerId !== runner.id) throw brokerError(404, "AcknowledgeJobNotFound", "job not found");
      return { status: 200, raw: "" };
    }

    // ---- run service
    if (p === "/run/acquirejob" && m === "POST") return this.#acquire(req, raw);
    if (p === "/run/renewjob" && m === "POST") return this.#renewV2(req, raw);
    if (p === "/run/completejob" && m === "POST") return this.#completeV2(req, raw);

    // ---- Results
    if (p.startsWith("/results/twirp/") && m === "POST") {
      await this.#resultsFault(closed);
      return this.#results(req, p.slice("/results/twirp/".length), raw);
    }
    g = /^\/blob\/([^/]+)\/([^/]+)$/.exec(p);
    if (g && m === "PUT") return this.#blob(req, url, raw, `${g[1]}/${g[2]}`);

    // ---- classic tenant
    const tp = `/_services/pipelines/${TENANT}/`;
    if (p.startsWith(tp)) return this.#classic(req, url, raw, p.slice(tp.length), closed);

    throw new HttpError(404, { message: `the fake GitHub has no route ${m} ${p}` });
  }

  // ---------------------------------------------------------------- registration

  #runnerRegistration(req: IncomingMessage, raw: Buffer): unknown {
    const body = this.#json(raw);
    const event = body["runner_event"];
    if (event !== "register" && event !== "remove")
      throw new HttpError(422, { message: "runner_event must be register or remove" });
    this.#registrationToken(req, event);
    if (body["url"] !== this.repoUrl && body["url"] !== `${this.url}/gnomon-org`)
      throw new HttpError(404, { message: `the token is not for ${String(body["url"])}` });
    if (!req.headers["user-agent"]) throw new HttpError(400, { message: "a User-Agent is required" });
    const token = `cfg_${randomBytes(16).toString("hex")}`;
    this.#configTokens.set(token, event);
    return { url: this.tenantUrl, token_schema: "OAuthAccessToken", token, use_v2_flow: this.#opts.flow === "v2" };
  }

  #runnerAdminRegister(req: IncomingMessage, raw: Buffer): unknown {
    this.#registrationToken(req, "register");
    const b = this.#json(raw);
    if (this.#opts.flow !== "v2") throw new HttpError(404, { message: "runner-admin is not enabled here" });
    const problems: string[] = [];
    if (b["url"] !== this.repoUrl && b["url"] !== `${this.url}/gnomon-org`) problems.push("url");
    if (!this.#groups().some((g) => g.id === b["group_id"] && !g.is_hosted)) problems.push("group_id");
    if (typeof b["name"] !== "string" || b["name"] === "") problems.push("name");
    if (typeof b["version"] !== "string" || !/^\d+\.\d+\.\d+$/.test(b["version"])) problems.push("version");
    if (typeof b["updates_disabled"] !== "boolean") problems.push("updates_disabled");
    if (typeof b["ephemeral"] !== "boolean") problems.push("ephemeral");
    const labels = b["labels"];
    if (
      !Array.isArray(labels) ||
      labels.some((l) => typeof l?.name !== "string" || !["system", "user"].includes(l?.type))
    )
      problems.push("labels");
    const xml = typeof b["public_key"] === "string" ? b["public_key"] : "";
    const mod = /<Modulus>([^<]+)<\/Modulus>/.exec(xml)?.[1];
    const exp = /<Exponent>([^<]+)<\/Exponent>/.exec(xml)?.[1];
    if (!mod || !exp) problems.push("public_key");
    if (problems.length) throw new HttpError(422, { message: `Validation Failed: ${problems.join(", ")}` });
    const publicKey = createPublicKey({
      format: "jwk",
      key: {
        kty: "RSA",
        n: Buffer.from(mod!, "base64").toString("base64url"),
        e: Buffer.from(exp!, "base64").toString("base64url"),
      },
    });
    const existing = this.runners().find((r) => r.name.toLowerCase() === String(b["name"]).toLowerCase());
    if (existing) {
      if (b["replace"] !== true || b["runner_id"] !== existing.id)
        throw new HttpError(422, {
          message: `Already exists - A runner with the name ${existing.name} already exists.`,
        });
      this.#remove(existing);
    }
    const runner = this.#newRunner({
      name: String(b["name"]),
      labels: (labels as { name: string }[]).map((l) => l.name),
      ephemeral: b["ephemeral"] === true,
      disableUpdate: b["updates_disabled"] === true,
      version: String(b["version"]),
      groupId: Number(b["group_id"]),
      publicKey,
      flow: "v2",
    });
    return {
      id: runner.id,
      name: runner.name,
      os: "unknown",
      status: "offline",
      authorization: {
        authorization_url: runner.authorizationUrl,
        server_url: `${this.url}/broker/`,
        client_id: runner.clientId,
      },
    };
  }

  // ---------------------------------------------------------------- OAuth

  async #token(req: IncomingMessage, url: URL, raw: Buffer): Promise<unknown> {
    const ct = req.headers["content-type"] ?? "";
    if (!ct.startsWith("application/x-www-form-urlencoded"))
      throw new HttpError(400, { error: "invalid_request", error_description: "form encoding expected" });
    const form = new URLSearchParams(raw.toString("utf8"));
    if (form.get("grant_type") !== "client_credentials")
      throw new HttpError(400, { error: "unsupported_grant_type", error_description: "client_credentials only" });
    if (form.get("client_assertion_type") !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
      throw new HttpError(400, {
        error: "invalid_request",
        error_description: "a JWT bearer client assertion is required",
      });
    const jwt = form.get("client_assertion") ?? "";
    let iss: unknown;
    let alg: unknown;
    try {
      iss = decodeJwt(jwt).iss;
      alg = decodeProtectedHeader(jwt).alg;
    } catch {
      throw new HttpError(400, { error: "invalid_client", error_description: "the client assertion is not a JWT" });
    }
    const runner = [...this.#runners.values()].find((r) => r.clientId === iss);
    if (!runner || runner.deleted)
      throw new HttpError(400, {
        error: "invalid_client",
        error_description: "Registration was not found or is not medium trust.",
      });
    const audience = `${url.origin}${url.pathname}`;
    if (audience !== runner.authorizationUrl)
      throw new HttpError(400, {
        error: "invalid_client",
        error_description: "the token was requested from the wrong endpoint",
      });
    let claims: Record<string, unknown>;
    try {
      const verified = await jwtVerify(jwt, runner.publicKey, {
        algorithms: [runner.alg],
        issuer: runner.clientId,
        subject: runner.clientId,
        audience: runner.authorizationUrl,
        typ: "JWT",
        requiredClaims: ["jti", "exp", "nbf"],
      });
      claims = verified.payload as Record<string, unknown>;
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === "ERR_JWT_EXPIRED" || (e.code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && /nbf/.test(e.message ?? "")))
        throw new HttpError(400, {
          error: "invalid_client",
          error_description: `The bearer token is not valid now. Current server time is ${new Date().toISOString()}.`,
        });
      throw new HttpError(400, {
        error: "invalid_client",
        error_description: `client assertion rejected: ${e.message}`,
      });
    }
    const exp = Number(claims["exp"]);
    const nbf = Number(claims["nbf"]);
    if (exp - nbf > 6 * 60)
      throw new HttpError(400, { error: "invalid_client", error_description: "the assertion lives too long" });
    const jti = String(claims["jti"]);
    if (this.#jtis.has(jti))
      throw new HttpError(400, { error: "invalid_grant", error_description: "the assertion was used before" });
    this.#jtis.add(jti);
    this.assertions.push({ alg: String(alg), claims });
    const token = `rt_${randomBytes(24).toString("base64url")}`;
    this.#accessTokens.set(token, { runnerId: runner.id, expiresAt: Date.now() + this.#opts.tokenLifetimeS * 1000 });
    return {
      access_token: token,
      token_type: "bearer",
      expires_in: this.#opts.tokenLifetimeS,
      scope: "/tenant/runner",
    };
  }

  // ---------------------------------------------------------------- sessions and messages

  #createSession(req: IncomingMessage, raw: Buffer, kind: "broker" | "classic"): unknown {
    const runner = this.#runnerOf(req);
    const body = this.#json(raw);
    const agent = (body["agent"] ?? body["Agent"]) as Record<string, unknown> | undefined;
    if (!agent || Number(agent["id"] ?? agent["ID"]) !== runner.id)
      throw kind === "classic"
        ? vssError(400, "ArgumentException", "agent.id does not match the token")
        : new HttpError(400, {});
    this.#checkVersion(String(agent["version"] ?? ""), kind);
    if ([...this.#sessions.values()].some((s) => s.runnerId === runner.id && s.kind === kind))
      throw kind === "classic"
        ? vssError(409, "TaskAgentSessionConflictException", `A session for agent ${runner.name} already exists.`)
        : new HttpError(409, { message: "conflict" });
    const id = randomUUID();
    let aesKey: Buffer | undefined;
    const out: Record<string, unknown> = { sessionId: id, ownerName: body["ownerName"], agent };
    if (kind === "classic") {
      aesKey = randomBytes(32);
      out["encryptionKey"] = {
        encrypted: true,
        value: publicEncrypt(
          {
            key: runner.publicKey,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: this.#opts.useFipsEncryption ? "sha256" : "sha1",
          },
          aesKey,
        ).toString("base64"),
      };
      out["useFipsEncryption"] = this.#opts.useFipsEncryption;
    }
    this.#sessions.set(id, { id, runnerId: runner.id, kind, aesKey, messages: [] });
    return out;
  }

  /**
   * Finds work for an Online runner: the oldest queued job whose labels it carries. An ephemeral
   * runner gets one assignment in its life: GitHub consumes the registration with it, so a runner
   * that lost that job to another (acquirejob 404/409) is never given another (actions/runner#4617).
   */
  #assign(session: Session, runner: FakeRunner): void {
    if (runner.ephemeral && runner.assignments > 0) return;
    if (
      [...this.#jobs.values()].some(
        (j) => j.runnerId === runner.id && (j.state === "assigned" || j.state === "acquired"),
      )
    )
      return;
    const have = new Set(runner.labels.map((l) => l.toLowerCase()));
    const job = [...this.#jobs.values()].find(
      (j) => j.state === "queued" && j.labels.every((l) => have.has(l.toLowerCase())),
    );
    if (!job) return;
    job.state = "assigned";
    job.runnerId = runner.id;
    runner.assignments += 1;
    if (session.kind === "broker" || this.migrateToBroker) {
      job.flow = session.kind === "broker" ? "v2" : "migrated";
      if (session.kind === "classic")
        this.#enqueue(session, "BrokerMigration", JSON.stringify({ brokerBaseUrl: `${this.url}/broker/` }), job.jobId);
      else this.#enqueue(session, "RunnerJobRequest", this.#jobRef(job), job.jobId);
    } else {
      job.flow = "classic";
      job.state = "acquired"; // a classic job is the runner's once delivered; its lock runs from now
      job.lockedUntil = Date.now() + this.#opts.lockMs;
      this.#enqueue(
        session,
        "PipelineAgentJobRequest",
        JSON.stringify(this.#deliveredMessage(job, "classic")),
        job.jobId,
      );
    }
  }

  #jobRef(job: FakeJob): string {
    return JSON.stringify({
      id: randomUUID(),
      runner_request_id: job.runnerRequestId,
      should_acknowledge: true,
      run_service_url: `${this.url}/run/`,
      billing_owner_id: "U_kgDOAH-IyQ",
    });
  }

  async #poll(req: IncomingMessage, url: URL, via: "broker" | "classic", closed: AbortSignal): Promise<unknown> {
    const runner = this.#runnerOf(req);
    const sessionId = url.searchParams.get("sessionId") ?? "";
    const session = this.#sessions.get(sessionId);
    this.#checkVersion(url.searchParams.get("runnerVersion"), via);
    if (!session || session.runnerId !== runner.id)
      throw via === "broker"
        ? brokerError(400, "RunnerSessionInvalid", "the session is not valid")
        : vssError(404, "TaskAgentSessionExpiredException", "the session has expired");
    if (this.faults.pollErrors > 0) {
      this.faults.pollErrors -= 1;
      throw new HttpError(503, { message: "service unavailable" });
    }
    const status = url.searchParams.get("status");
    const lastId = Number(url.searchParams.get("lastMessageId") ?? "0");
    const migrated = via === "broker" && session.kind === "classic";
    const next = (): QueuedMessage | undefined => {
      if (status === "Online" && !migrated) this.#assign(session, runner);
      if (migrated) {
        // The broker poll of a migrated classic runner delivers the job reference of its assignment.
        const job = [...this.#jobs.values()].find(
          (j) => j.runnerId === runner.id && j.state === "assigned" && j.flow === "migrated",
        );
        if (job && !session.messages.some((m) => m.jobId === job.jobId && m.messageType === "RunnerJobRequest")) {
          const m = this.#enqueue(session, "RunnerJobRequest", this.#jobRef(job), job.jobId);
          m.delivered = false;
        }
        return session.messages.find((m) => m.messageType === "RunnerJobRequest" && !m.delivered);
      }
      if (via === "broker") return session.messages.find((m) => !m.delivered);
      return session.messages.find((m) => !m.deleted && m.messageType !== "RunnerJobRequest" && m.messageId > lastId);
    };
    let msg = next();
    if (!msg) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#changes.off("change", onChange);
          this.#changes.off("close", done);
          closed.removeEventListener("abort", done);
          resolve();
        };
        const onChange = () => {
          if (runner.deleted || next()) done();
        };
        const timer = setTimeout(done, this.#opts.pollHoldMs);
        this.#changes.on("change", onChange);
        this.#changes.once("close", done);
        closed.addEventListener("abort", done, { once: true });
      });
      this.#runnerOf(req); // the registration may have gone while the poll was held
      msg = next();
    }
    if (!msg || closed.aborted) return via === "broker" ? { status: 200, raw: "" } : undefined;
    msg.delivered = true;
    if (via === "broker" || msg.messageType === "RunnerJobRequest")
      return { messageId: msg.messageId, messageType: msg.messageType, body: msg.body };
    const iv = randomBytes(16);
    const cipher = createCipheriv("aes-256-cbc", session.aesKey!, iv);
    // The classic service's CryptoStream writes a UTF-8 byte-order mark first (spec 5.2).
    const ct = Buffer.concat([cipher.update(Buffer.from(`\uFEFF${msg.body}`, "utf8")), cipher.final()]);
    return {
      messageId: msg.messageId,
      messageType: msg.messageType,
      iv: iv.toString("base64"),
      body: ct.toString("base64"),
    };
  }

  // ---------------------------------------------------------------- run service

  #acquire(req: IncomingMessage, raw: Buffer): unknown {
    const runner = this.#runnerOf(req);
    const body = this.#json(raw);
    const job = [...this.#jobs.values()].find((j) => j.runnerRequestId === body["jobMessageId"]);
    if (!job) throw runError(404, `job message ${String(body["jobMessageId"])} not found`);
    job.acquireAttempts += 1;
    if (this.faults.acquireConflicts > 0) {
      // Another runner won the race for this job.
      this.faults.acquireConflicts -= 1;
      job.state = "acquired";
      job.runnerId = -1;
      job.lockedUntil = Number.POSITIVE_INFINITY;
      throw runError(409, "job assignment is invalid: MissingKey");
    }
    if (job.runnerId !== runner.id || job.state !== "assigned")
      throw runError(409, "job assignment is invalid: MissingKey");
    if (typeof body["runnerOS"] !== "string") throw runError(422, "runnerOS is required");
    job.state = "acquired";
    job.lockedUntil = Date.now() + this.#opts.lockMs;
    return this.#deliveredMessage(job, "v2");
  }

  #renewV2(req: IncomingMessage, raw: Buffer): unknown {
    const job = this.#jobByToken(req);
    const body = this.#json(raw);
    if (body["planId"] !== job.planId || body["jobId"] !== job.jobId)
      throw runError(400, "planId/jobId do not match the token");
    if (job.state !== "acquired") throw runError(404, `job ${job.jobId} not found`);
    if (this.faults.renewFailing) throw new HttpError(500, { message: "internal error" });
    job.lockedUntil = Date.now() + this.#opts.lockMs;
    job.renewals.push(Date.now());
    return { lockedUntil: new Date(job.lockedUntil).toISOString() };
  }

  async #completeV2(req: IncomingMessage, raw: Buffer): Promise<unknown> {
    if (this.faults.completeErrors > 0) {
      this.faults.completeErrors -= 1;
      this.completeRefused += 1;
      throw runError(500, "internal error");
    }
    const job = this.#jobByToken(req);
    const b = this.#json(raw);
    if (job.state !== "acquired") throw runError(404, `job ${job.jobId} not found`);
    const conclusions = ["succeeded", "succeededWithIssues", "failed", "canceled", "skipped", "abandoned"];
    if (!conclusions.includes(String(b["conclusion"])))
      throw runError(400, `conclusion ${String(b["conclusion"])} is not valid`);
    job.conclusion = String(b["conclusion"]);
    job.outputs = (b["outputs"] as FakeJob["outputs"]) ?? {};
    job.stepResults = (b["stepResults"] as Record<string, unknown>[]) ?? [];
    job.annotations = (b["annotations"] as Record<string, unknown>[]) ?? [];
    this.#completed(job);
    if (this.faults.completeAnswerDelayMs > 0)
      await new Promise((resolve) => setTimeout(resolve, this.faults.completeAnswerDelayMs));
    return { status: 200, raw: "" };
  }

  // ---------------------------------------------------------------- Results + blobs

  #results(req: IncomingMessage, method: string, raw: Buffer): unknown {
    const job = this.#jobByToken(req);
    const b = this.#json(raw);
    if (b["workflow_run_backend_id"] !== job.planId || b["workflow_job_run_backend_id"] !== job.jobId)
      throw new HttpError(400, { code: "invalid_argument", msg: "backend ids do not match the token" });
    const signed = (name: string) => {
      const sig = randomBytes(8).toString("hex");
      this.#blobSigs.set(name, sig);
      return `${this.url}/blob/${name}?sv=2023-11-03&sig=${sig}`;
    };
    switch (method) {
      case "github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate": {
        const order = Number(b["change_order"]);
        if (!Number.isSafeInteger(order) || order < 1)
          throw new HttpError(400, { code: "invalid_argument", msg: "change_order must be a positive integer" });
        const steps = b["steps"] as Record<string, unknown>[];
        for (const s of steps)
          if (![0, 3, 5, 6].includes(Number(s["status"])) || ![0, 2, 3, 4, 7].includes(Number(s["conclusion"])))
            throw new HttpError(400, { code: "invalid_argument", msg: "status or conclusion out of range" });
        // change_order orders a job's updates (the official runner counts from 1 per process, with
        // gaps after failed calls): one not above the last accepted is an old update, dropped.
        const last = job.stepUpdates.at(-1)?.changeOrder ?? 0;
        if (order <= last) {
          job.ignoredStepUpdates.push({ changeOrder: order, steps });
          return { ok: true };
        }
        job.stepUpdates.push({ changeOrder: order, steps });
        for (const s of steps) {
          const id = String(s["external_id"]);
          job.stepView.set(id, { ...job.stepView.get(id), ...s });
        }
        return { ok: true };
      }
      case "results.services.receiver.Receiver/GetStepLogsSignedBlobURL":
        return {
          logs_url: signed(`${job.jobId}/${String(b["step_backend_id"])}.log`),
          blob_storage_type: "BLOB_STORAGE_TYPE_AZURE",
          soft_size_limit: "104857600",
        };
      case "results.services.receiver.Receiver/CreateStepLogsMetadata": {
        const name = `${job.jobId}/${String(b["step_backend_id"])}.log`;
        const content = this.#blobs.get(name);
        if (content === undefined) throw new HttpError(400, { code: "failed_precondition", msg: "no blob uploaded" });
        job.stepLogs.set(String(b["step_backend_id"]), { content, lineCount: Number(b["line_count"]) });
        return { ok: true };
      }
      case "results.services.receiver.Receiver/GetJobLogsSignedBlobURL":
        return { logs_url: signed(`${job.jobId}/job.log`), blob_storage_type: "BLOB_STORAGE_TYPE_AZURE" };
      case "results.services.receiver.Receiver/CreateJobLogsMetadata": {
        const content = this.#blobs.get(`${job.jobId}/job.log`);
        if (content === undefined) throw new HttpError(400, { code: "failed_precondition", msg: "no blob uploaded" });
        job.jobLog = { content, lineCount: Number(b["line_count"]) };
        return { ok: true };
      }
      default:
        throw new HttpError(404, { code: "bad_route", msg: `no method ${method}` });
    }
  }

  /** Applies `faults.results` to one Twirp call: waits while stalled, then refuses while failing. */
  async #resultsFault(closed: AbortSignal): Promise<void> {
    while (this.faults.results === "stalled" && !closed.aborted && !this.#closed)
      await new Promise((resolve) => setTimeout(resolve, 20));
    if (this.faults.results === "failing") {
      this.resultsRefused += 1;
      throw new HttpError(500, { code: "internal", msg: "the Results service failed" });
    }
  }

  #blob(req: IncomingMessage, url: URL, raw: Buffer, name: string): unknown {
    if (url.searchParams.get("sig") !== this.#blobSigs.get(name))
      throw new HttpError(403, { message: "AuthenticationFailed: the signature does not match" });
    if (req.headers["x-ms-blob-type"] !== "BlockBlob")
      throw new HttpError(400, { message: "x-ms-blob-type is required" });
    if (this.#blobs.has(name)) throw new HttpError(409, { message: "BlobAlreadyExists" });
    this.#blobs.set(name, raw.toString("utf8"));
    if (this.faults.uploadFailuresAfterStore > 0) {
      this.faults.uploadFailuresAfterStore -= 1;
      throw new HttpError(500, { message: "the connection broke after the blob was stored" });
    }
    return { status: 201, raw: "" };
  }

  // ---------------------------------------------------------------- classic tenant

  /** The route templates this tenant lists in connectionData (spec 3.8). */
  #serviceDefinitions() {
    const hub = "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}";
    const defs: [string, string, string][] = [
      ["a8c47e17-4d56-4a56-92bb-de7ea7dc65be", "pools", "_apis/{area}/pools/{poolId}"],
      ["e298ef32-5878-4cab-993c-043836571f42", "agents", "_apis/{area}/pools/{poolId}/agents/{agentId}"],
      ["134e239e-2df3-4794-a6f6-24f1f19ec8dc", "sessions", "_apis/{area}/pools/{poolId}/sessions/{sessionId}"],
      ["c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7", "messages", "_apis/{area}/pools/{poolId}/messages/{messageId}"],
      ["fc825784-c92a-4299-9221-998a02d1b54f", "jobrequests", "_apis/{area}/pools/{poolId}/jobrequests/{requestId}"],
      ["8893bc5b-35b2-4be7-83cb-99e683551db4", "records", `${hub}/timelines/{timelineId}/records`],
      ["858983e4-19bd-4c5e-864c-507b59b58b12", "feed", `${hub}/timelines/{timelineId}/records/{recordId}/feed`],
      ["46f5667d-263a-4684-91b1-dff7fdcf64e2", "logs", `${hub}/logs/{logId}`],
      ["557624af-b29e-4c20-8ab0-0399d2204f3f", "events", `${hub}/events`],
    ];
    return defs.map(([identifier, displayName, relativePath]) => ({
      serviceType: "distributedtask",
      identifier,
      displayName,
      relativeToSetting: "context",
      relativePath,
      resourceVersion: 1,
      minVersion: "1.0",
      maxVersion: "7.1",
      releasedVersion: "0.0",
    }));
  }

  async #classic(req: IncomingMessage, url: URL, raw: Buffer, p: string, closed: AbortSignal): Promise<unknown> {
    const m = req.method ?? "GET";
    let g: RegExpExecArray | null;
    if (p === "_apis/connectionData" && m === "GET")
      return {
        authenticatedUser: { id: ZERO_GUID },
        instanceId: randomUUID(),
        locationServiceData: { serviceDefinitions: this.#serviceDefinitions() },
      };
    if (p === "_apis/distributedtask/pools" && m === "GET") {
      this.#configToken(req);
      const pools = this.#groups().map((gr) => ({
        id: gr.id,
        name: gr.name,
        isHosted: gr.is_hosted,
        isInternal: gr.default,
        poolType: "automation",
        size: 0,
      }));
      return { count: pools.length, value: pools };
    }
    if (p === "_apis/distributedtask/pools/0/agents" && m === "GET") {
      this.#configToken(req);
      const name = url.searchParams.get("agentName") ?? "";
      const agents = this.runners().filter((r) => r.name.toLowerCase() === name.toLowerCase());
      return { count: agents.length, value: agents.map((r) => this.#agentJson(r)) };
    }
    g = /^_apis\/distributedtask\/pools\/(\d+)\/agents(?:\/(\d+))?$/.exec(p);
    if (g && (m === "POST" || m === "PUT" || m === "DELETE"))
      return this.#agentWrite(req, raw, m, Number(g[1]), g[2] ? Number(g[2]) : undefined);
    g = /^_apis\/distributedtask\/pools\/(\d+)\/sessions$/.exec(p);
    if (g && m === "POST") return this.#createSession(req, raw, "classic");
    g = /^_apis\/distributedtask\/pools\/(\d+)\/sessions\/([^/]+)$/.exec(p);
    if (g && m === "DELETE") {
      const runner = this.#runnerOf(req);
      const s = this.#sessions.get(g[2]!);
      if (s && s.runnerId === runner.id) this.#sessions.delete(s.id);
      return { status: 200, raw: "" };
    }
    g = /^_apis\/distributedtask\/pools\/(\d+)\/messages$/.exec(p);
    if (g && m === "GET") return this.#poll(req, url, "classic", closed);
    g = /^_apis\/distributedtask\/pools\/(\d+)\/messages\/(\d+)$/.exec(p);
    if (g && m === "DELETE") {
      const runner = this.#runnerOf(req);
      const s = this.#sessions.get(url.searchParams.get("sessionId") ?? "");
      if (!s || s.runnerId !== runner.id) throw vssError(404, "TaskAgentSessionExpiredException", "no such session");
      const msg = s.messages.find((x) => x.messageId === Number(g![2]));
      if (!msg) throw vssError(404, "TaskAgentMessageNotFoundException", "no such message");
      msg.deleted = true;
      return { status: 200, raw: "" };
    }
    g = /^_apis\/distributedtask\/pools\/(\d+)\/jobrequests\/(\d+)$/.exec(p);
    if (g && m === "PATCH") return this.#classicJobRequest(req, url, raw, Number(g[2]));
    g = /^([0-9a-f-]{36})\/_apis\/distributedtask\/hubs\/([^/]+)\/plans\/([0-9a-f-]{36})\/(.+)$/.exec(p);
    if (g) return this.#hub(req, raw, m, g[3]!, g[4]!);
    throw vssError(404, "RouteNotFoundException", `the fake tenant has no route ${m} ${p}`);
  }

  #agentJson(r: FakeRunner): Record<string, unknown> {
    const jwk = r.publicKey.export({ format: "jwk" });
    return {
      id: r.id,
      name: r.name,
      version: r.version,
      ephemeral: r.ephemeral,
      disableUpdate: r.disableUpdate,
      maxParallelism: 1,
      status: "offline",
      labels: r.labels.map((name, i) => ({ id: i + 1, name, type: i === 0 ? "system" : "user" })),
      authorization: {
        authorizationUrl: r.authorizationUrl,
        clientId: r.clientId,
        publicKey: { exponent: b64urlToB64(String(jwk.e)), modulus: b64urlToB64(String(jwk.n)) },
      },
      properties:
        this.#opts.requireFips === undefined
          ? {}
          : { RequireFipsCryptography: { $type: "System.Boolean", $value: this.#opts.requireFips } },
    };
  }

  #agentWrite(req: IncomingMessage, raw: Buffer, method: string, poolId: number, agentId: number | undefined): unknown {
    const kind = this.#configToken(req);
    if (method === "DELETE") {
      if (kind !== "remove") throw vssError(403, "AccessDeniedException", "a removal token is needed");
      const r = agentId === undefined ? undefined : this.#runners.get(agentId);
      if (!r || r.deleted) throw vssError(404, "TaskAgentNotFoundException", `agent ${agentId} not found`);
      this.#remove(r);
      return { status: 204, raw: "" };
    }
    const b = this.#json(raw);
    const pool = this.#groups().find((gr) => gr.id === poolId && !gr.is_hosted);
    if (!pool) throw vssError(404, "TaskAgentPoolNotFoundException", `pool ${poolId} not found`);
    const pk = (b["authorization"] as { publicKey?: { exponent?: string; modulus?: string } } | undefined)?.publicKey;
    if (!pk?.exponent || !pk.modulus || typeof b["name"] !== "string" || typeof b["version"] !== "string")
      throw vssError(400, "ArgumentException", "name, version and authorization.publicKey are required");
    const publicKey = createPublicKey({
      format: "jwk",
      key: {
        kty: "RSA",
        n: Buffer.from(pk.modulus, "base64").toString("base64url"),
        e: Buffer.from(pk.exponent, "base64").toString("base64url"),
      },
    });
    const labels = ((b["labels"] as { name: string }[] | undefined) ?? []).map((l) => l.name);
    const existing = this.runners().find((r) => r.name.toLowerCase() === String(b["name"]).toLowerCase());
    if (method === "POST" && existing) throw vssError(409, "TaskAgentExistsException", `agent ${existing.name} exists`);
    if (method === "PUT") {
      if (!existing || existing.id !== agentId) throw vssError(404, "TaskAgentNotFoundException", "no such agent");
      existing.publicKey = publicKey;
      existing.labels = labels;
      existing.version = String(b["version"]);
      existing.ephemeral = b["ephemeral"] === true;
      return this.#agentJson(existing);
    }
    const runner = this.#newRunner({
      name: String(b["name"]),
      labels,
      ephemeral: b["ephemeral"] === true,
      disableUpdate: b["disableUpdate"] === true,
      version: String(b["version"]),
      groupId: poolId,
      publicKey,
      flow: "classic",
    });
    return this.#agentJson(runner);
  }

  #classicJobRequest(req: IncomingMessage, url: URL, raw: Buffer, requestId: number): unknown {
    const runner = this.#runnerOf(req);
    if (url.searchParams.get("lockToken") !== ZERO_GUID)
      throw vssError(400, "ArgumentException", "lockToken is required");
    const job = [...this.#jobs.values()].find((j) => j.requestId === requestId);
    if (!job || job.runnerId !== runner.id)
      throw vssError(404, "TaskAgentJobNotFoundException", `job request ${requestId} not found`);
    this.#checkLock(job);
    const b = this.#json(raw);
    if (b["result"] !== undefined && b["finishTime"] !== undefined) {
      if (job.state !== "acquired") throw vssError(404, "TaskAgentJobNotFoundException", "the job is not running");
      job.conclusion = String(b["result"]);
      this.#completed(job);
      return { requestId, result: b["result"] };
    }
    if (job.state === "lost") throw vssError(400, "TaskAgentJobTokenExpiredException", "the job's lock has expired");
    if (job.state !== "acquired") throw vssError(404, "TaskAgentJobNotFoundException", "the job is not running");
    if (this.faults.renewFailing) throw new HttpError(500, { message: "internal error" });
    job.lockedUntil = Date.now() + this.#opts.lockMs;
    job.renewals.push(Date.now());
    return {
      requestId,
      lockedUntil: new Date(job.lockedUntil).toISOString(),
      reservedAgent: { id: runner.id, name: runner.name },
      planId: job.planId,
      jobId: job.jobId,
    };
  }

  #hub(req: IncomingMessage, raw: Buffer, method: string, planId: string, rest: string): unknown {
    const job = this.#jobByToken(req);
    if (job.planId !== planId) throw vssError(403, "AccessDeniedException", "the token is for another plan");
    let g: RegExpExecArray | null;
    g = /^timelines\/([0-9a-f-]{36})\/records$/.exec(rest);
    if (g && method === "PATCH") {
      const b = this.#json(raw) as { value?: TimelineRecordSeen[] };
      const records = b.value ?? [];
      job.timelinePatches.push(records);
      for (const r of records) job.timeline.set(r.id, { ...job.timeline.get(r.id), ...r });
      return { count: records.length, value: records };
    }
    g = /^timelines\/([0-9a-f-]{36})\/records\/([0-9a-f-]{36})\/feed$/.exec(rest);
    if (g && method === "POST") {
      const b = this.#json(raw);
      job.feed.push({ stepId: String(b["stepId"]), startLine: Number(b["startLine"]), lines: b["value"] as string[] });
      return { status: 200, raw: "" };
    }
    if (rest === "logs" && method === "POST") {
      const b = this.#json(raw);
      const id = this.#nextLogId++;
      job.classicLogs.set(id, { path: String(b["path"]), lines: [] });
      return { id, path: b["path"], lineCount: 0, createdOn: b["createdOn"] };
    }
    if (rest === "logs" && method === "GET") {
      const value = [...job.classicLogs.entries()].map(([id, l]) => ({ id, path: l.path, lineCount: l.lines.length }));
      return { count: value.length, value };
    }
    g = /^logs\/(\d+)$/.exec(rest);
    if (g && method === "POST") {
      const log = job.classicLogs.get(Number(g[1]));
      if (!log) throw vssError(404, "TaskLogNotFoundException", "no such log");
      if (req.headers["content-type"] !== "application/octet-stream")
        throw vssError(415, "UnsupportedMediaType", "octet-stream");
      const text = raw.toString("utf8");
      log.lines.push(...text.replace(/\n$/, "").split("\n"));
      if (this.faults.uploadFailuresAfterStore > 0) {
        this.faults.uploadFailuresAfterStore -= 1;
        throw new HttpError(500, { message: "the connection broke after the log was stored" });
      }
      return { id: Number(g[1]), path: log.path, lineCount: log.lines.length };
    }
    if (rest === "events" && method === "POST") {
      const b = this.#json(raw);
      if (b["name"] !== "JobCompleted" || b["jobId"] !== job.jobId || Number(b["requestId"]) !== job.requestId)
        throw vssError(400, "ArgumentException", "a JobCompleted event for this job is expected");
      if (job.state !== "acquired") throw vssError(404, "TaskOrchestrationPlanNotFoundException", "the job is over");
      job.conclusion = String(b["result"]);
      job.outputs = (b["outputs"] as FakeJob["outputs"]) ?? {};
      this.#completed(job);
      return { status: 204, raw: "" };
    }
    throw vssError(404, "RouteNotFoundException", `no hub route ${method} ${rest}`);
  }
}

/** Starts the fake for one test; it is closed when the test ends. */
export async function startFakeGitHub(
  t: TestContext | undefined,
  opts: FakeGitHubOptions = {},
): Promise<FakeGitHubServer> {
  const fake = await FakeGitHubServer.start(opts);
  t?.after(() => fake.close());
  return fake;
}
