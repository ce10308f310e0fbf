// The books the fake GitHub keeps, shared by its services (registration, token, broker and
// sessions, run service, Results, live feed, classic tenant): runners, tokens, sessions and their
// messages, jobs with their locks, blobs; the faults a test injects; and what every service checks
// the same way (a runner's token, a job's token, the runner version). Knows no HTTP routing.

import type { KeyObject } from "node:crypto";
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import { brokerError, HttpError, versionLess, vssError } from "./http-error.js";
import type {
  FakeFaults,
  FakeFlow,
  FakeGitHubOptions,
  FakeJob,
  FakeRunner,
  LiveMessage,
  QueuedMessage,
  RecordedRequest,
  Session,
} from "./shapes.js";

export const ZERO_GUID = "00000000-0000-0000-0000-000000000000";
export const REPO = "gnomon-org/gnomon-repo";
export const TENANT = "Tn4ntG5nom0n";

export type ResolvedOptions = Required<Omit<FakeGitHubOptions, "requireFips" | "minRunnerVersion">> &
  Pick<FakeGitHubOptions, "requireFips" | "minRunnerVersion">;

export class GitHubBooks {
  readonly url: string;
  readonly repoUrl: string;
  readonly tenantUrl: string;
  readonly opts: ResolvedOptions;
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
  readonly liveMessages: LiveMessage[] = [];
  readonly assertions: { alg: string; claims: Record<string, unknown> }[] = [];
  /** Emits "change" after every request and scripted change, "close" when the fake closes. */
  readonly changes = new EventEmitter();
  readonly registrationTokens = new Set<string>();
  readonly removalTokens = new Set<string>();
  readonly configTokens = new Map<string, "register" | "remove">();
  readonly runners = new Map<number, FakeRunner>();
  readonly accessTokens = new Map<string, { runnerId: number; expiresAt: number }>();
  readonly jtis = new Set<string>();
  readonly sessions = new Map<string, Session>();
  readonly jobs = new Map<string, FakeJob>();
  readonly blobSigs = new Map<string, string>();
  readonly blobs = new Map<string, string>();
  nextRunnerId = 41;
  nextMessageId = 100;
  nextRequestId = 7000;
  nextLogId = 1;
  closed = false;

  constructor(url: string, opts: FakeGitHubOptions) {
    this.url = url;
    this.repoUrl = `${url}/${REPO}`;
    this.tenantUrl = `${url}/_services/pipelines/${TENANT}`;
    this.opts = {
      flow: opts.flow ?? "v2",
      lockMs: opts.lockMs ?? 10 * 60_000,
      tokenLifetimeS: opts.tokenLifetimeS ?? 3600,
      pollHoldMs: opts.pollHoldMs ?? 2_000,
      useFipsEncryption: opts.useFipsEncryption ?? false,
      classicPlanVersion: opts.classicPlanVersion ?? 13,
      requireFips: opts.requireFips,
      minRunnerVersion: opts.minRunnerVersion,
    };
    this.changes.setMaxListeners(0);
  }

  /** The runners GitHub still knows. */
  activeRunners(): FakeRunner[] {
    return [...this.runners.values()].filter((r) => !r.deleted);
  }

  changed(): void {
    this.changes.emit("change");
  }

  /**
   * The registration is gone: its sessions with it, and every call made with its credentials
   * answers 401 (a token exchange: invalid_client), polls held at this moment included.
   */
  remove(runner: FakeRunner): void {
    runner.deleted = true;
    for (const [id, s] of this.sessions) if (s.runnerId === runner.id) this.sessions.delete(id);
    this.changed();
  }

  /** A job's completion was accepted: GitHub removes an ephemeral runner with its one job (spec 9.2). */
  completed(job: FakeJob): void {
    job.state = "completed";
    const runner = job.runnerId === undefined ? undefined : this.runners.get(job.runnerId);
    if (runner?.ephemeral) this.remove(runner);
    this.changed();
  }

  checkLock(job: FakeJob): void {
    if (job.state === "acquired" && Date.now() > job.lockedUntil) {
      job.state = "lost";
      job.lockExpiredAt = job.lockedUntil;
    }
  }

  enqueue(session: Session, messageType: string, body: string, jobId?: string): QueuedMessage {
    const m: QueuedMessage = {
      messageId: this.nextMessageId++,
      messageType,
      body,
      deleted: false,
      delivered: false,
      ...(jobId ? { jobId } : {}),
    };
    session.messages.push(m);
    this.changed();
    return m;
  }

  runnerOf(req: IncomingMessage): FakeRunner {
    const auth = req.headers.authorization ?? "";
    const token = /^Bearer (.+)$/.exec(auth)?.[1];
    const entry = token ? this.accessTokens.get(token) : undefined;
    if (!entry || entry.expiresAt < Date.now()) throw new HttpError(401, { message: "Bad credentials" });
    const runner = this.runners.get(entry.runnerId);
    if (!runner || runner.deleted) throw new HttpError(401, { message: "the runner no longer exists" });
    return runner;
  }

  jobByToken(req: IncomingMessage): FakeJob {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const job = [...this.jobs.values()].find((j) => j.accessToken === token);
    if (!job) throw new HttpError(401, { message: "invalid job token" });
    this.checkLock(job);
    return job;
  }

  /**
   * The version gate of sessions, polls and acknowledgements (spec 9.1): a version below the minimum
   * is deprecated, and so is a call that states none (GitHub has a minimum at all times; a runner
   * that says nothing cannot be above it).
   */
  checkVersion(version: string | null | undefined, kind: "broker" | "classic"): void {
    const min = this.opts.minRunnerVersion;
    const v = version ?? "";
    if (/^\d+\.\d+\.\d+$/.test(v) && !(min && versionLess(v, min))) return;
    const message = `Runner version v${v} is deprecated and cannot receive messages.`;
    throw kind === "broker"
      ? brokerError(403, "RunnerVersionTooOld", message)
      : vssError(403, "AccessDeniedException", message);
  }

  checkRegistrationToken(req: IncomingMessage, kind: "register" | "remove" | "either"): string {
    const token = /^RemoteAuth (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const ok =
      (kind !== "remove" && this.registrationTokens.has(token)) ||
      (kind !== "register" && this.removalTokens.has(token));
    if (!ok) throw new HttpError(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
    return token;
  }

  configToken(req: IncomingMessage): "register" | "remove" {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const kind = this.configTokens.get(token);
    if (kind) return kind;
    // Runner tokens may read pools too (the official runner's connection check).
    this.runnerOf(req);
    return "register";
  }

  groups() {
    return [
      { id: 1, name: "Default", default: true, is_hosted: false },
      { id: 2, name: "gnomon-pool", default: false, is_hosted: false },
      { id: 3, name: "GitHub Actions", default: false, is_hosted: true },
    ];
  }

  newRunner(body: {
    name: string;
    labels: string[];
    ephemeral: boolean;
    disableUpdate: boolean;
    version: string;
    groupId: number;
    publicKey: KeyObject;
    flow: FakeFlow;
  }): FakeRunner {
    const id = this.nextRunnerId++;
    const clientId = randomUUID();
    const alg = body.flow === "v2" || this.opts.requireFips !== false ? "PS256" : "RS256";
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
    this.runners.set(id, runner);
    return runner;
  }

  record(req: IncomingMessage, raw: Buffer): RecordedRequest {
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

  json(raw: Buffer): Record<string, unknown> {
    try {
      const v = JSON.parse(raw.toString("utf8")) as unknown;
      if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new HttpError(400, { message: "the body is not a JSON object" });
  }
}
