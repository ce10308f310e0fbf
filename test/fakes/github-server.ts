// A faithful fake of the GitHub services a self-hosted runner talks to, built from
// ../shared/spec/github-runner-protocol.md: REST registration (runner-registration, runner-admin),
// the OAuth token endpoint (verifies every JWT client assertion's signature and claims), the broker,
// the run service, the Results service with signed blob URLs, and a classic tenant (pools, agents,
// RSA-OAEP session keys, AES-CBC messages, job requests, timeline, logs, feed, plan events). It keeps
// the books a real service keeps (lock expiry, change orders, acknowledged log lines), offers fault
// injection, and a scripting API for tests. As strict as GitHub where it matters to a runner: an
// ephemeral runner is handed one job and is deleted once that job completes; sessions, polls and
// acknowledgements without a runner version are refused; every live-console frame is kept for the
// leak checks. Real HTTP on 127.0.0.1; no part of gnomon is imported. This file is the front door:
// the scripting API and the routing; each service lives in github/ (registration, token, broker and
// sessions, run service, Results, live feed, classic tenant) over the books they share (books.ts).
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { TestContext } from "node:test";
import { WebSocketServer } from "ws";
import { GitHubBooks, TENANT } from "./github/books.js";
import { brokerRoute } from "./github/broker.js";
import { classicRoute } from "./github/classic-tenant.js";
import { decodedStrings, HttpError, noRoute } from "./github/http-error.js";
import { deliveredMessage, jobMessage } from "./github/job-message.js";
import { acceptLiveFeed } from "./github/live-feed.js";
import { restRoute } from "./github/registration.js";
import { FakeRepos } from "./github/repos.js";
import { blob, resultsRoute } from "./github/results.js";
import { runServiceRoute } from "./github/run-service.js";
import type {
  FakeFaults,
  FakeGitHubOptions,
  FakeJob,
  FakeRunner,
  JobScript,
  LiveMessage,
  RecordedRequest,
  RepoApiCall,
} from "./github/shapes.js";
import { exchangeToken } from "./github/token.js";
import { FakeUsers } from "./github/users.js";

export type {
  FakeFaults,
  FakeFlow,
  FakeGitHubOptions,
  FakeJob,
  FakeRunner,
  JobScript,
  LiveMessage,
  RecordedRequest,
  RepoApiCall,
  StepScript,
  TimelineRecordSeen,
} from "./github/shapes.js";

export class FakeGitHubServer {
  readonly url: string;
  /** The repository URL to register against. */
  readonly repoUrl: string;
  readonly tenantUrl: string;
  readonly #b: GitHubBooks;
  readonly #repos = new FakeRepos();
  readonly #users = new FakeUsers();
  readonly #server: Server;
  #sockets: WebSocketServer | undefined;

  private constructor(server: Server, url: string, opts: FakeGitHubOptions) {
    this.#server = server;
    this.#b = new GitHubBooks(url, opts);
    this.url = url;
    this.repoUrl = this.#b.repoUrl;
    this.tenantUrl = this.#b.tenantUrl;
  }

  static async start(opts: FakeGitHubOptions = {}): Promise<FakeGitHubServer> {
    let fake: FakeGitHubServer | undefined;
    const server = createServer((req, res) => {
      void fake!.#serve(req, res);
    });
    const sockets = new WebSocketServer({ noServer: true });
    server.on("upgrade", (req, socket, head) => acceptLiveFeed(fake!.#b, sockets, req, socket as Socket, head));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeGitHubServer(server, `http://127.0.0.1:${port}`, opts);
    fake.#sockets = sockets;
    return fake;
  }

  // ---------------------------------------------------------------- scripting API

  /** Faults a test injects; each service applies its own. */
  get faults(): FakeFaults {
    return this.#b.faults;
  }

  /** Results calls answered 500 because of `faults.results`. */
  get resultsRefused(): number {
    return this.#b.resultsRefused;
  }

  /** completejob calls answered 500 because of `faults.completeErrors`. */
  get completeRefused(): number {
    return this.#b.completeRefused;
  }

  /** Classic runners get a BrokerMigration message and then their jobs from the broker. */
  get migrateToBroker(): boolean {
    return this.#b.migrateToBroker;
  }

  set migrateToBroker(on: boolean) {
    this.#b.migrateToBroker = on;
  }

  /** Every request, in arrival order, with the status it was answered. */
  get requests(): readonly RecordedRequest[] {
    return this.#b.requests;
  }

  /** Every message the live console WebSockets received, in arrival order (see `everythingReceived`). */
  get liveMessages(): readonly LiveMessage[] {
    return this.#b.liveMessages;
  }

  /**
   * Its git repositories (gnomon-org/gnomon-repo, actions), served over smart HTTP at
   * <url>/<owner>/<repo>(.git): public ones to anyone, private ones to the GITHUB_TOKEN of a running
   * job of that repository, pushes only with that token.
   */
  get git(): FakeRepos["git"] {
    return this.#repos.git;
  }

  /** Makes `user` exist with these public SSH keys (authorized_keys lines), at /api/v3/users/{user}/keys. */
  setUserKeys(user: string, keys: readonly string[]): void {
    this.#users.setKeys(user, keys);
  }

  /** Every request for a user's keys: the login and whether it carried a token. */
  get userKeyCalls(): readonly { readonly user: string; readonly authorized: boolean }[] {
    return this.#users.calls;
  }

  /** Every call of the repository REST API, in order. */
  get repoApiCalls(): readonly RepoApiCall[] {
    return this.#repos.apiCalls;
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
    return this.#repos.create(fullName, commits, o);
  }

  /** Serves the actions under `root` (../shared/actions) as github.com does: public, version and major tags. */
  seedActions(root: string): { repo: string; version: string; commit: string }[] {
    return this.#repos.seedActions(root);
  }

  /** Every JWT assertion the token endpoint verified: algorithm and claims. */
  get assertions(): readonly { alg: string; claims: Record<string, unknown> }[] {
    return this.#b.assertions;
  }

  /** A fresh registration token, as "New self-hosted runner" shows (one hour, one scope). */
  registrationToken(): string {
    const t = `AREG${randomBytes(12).toString("hex").toUpperCase()}`;
    this.#b.registrationTokens.add(t);
    return t;
  }

  removalToken(): string {
    const t = `AREM${randomBytes(12).toString("hex").toUpperCase()}`;
    this.#b.removalTokens.add(t);
    return t;
  }

  runners(): FakeRunner[] {
    return [...this.#b.runners.values()].filter((r) => !r.deleted);
  }

  runner(id: number): FakeRunner | undefined {
    return this.#b.runners.get(id);
  }

  /** Deletes a runner on the server, as GitHub does after 14 days offline. */
  deleteRunner(id: number): void {
    const r = this.#b.runners.get(id);
    if (r) this.#b.remove(r);
  }

  /** Revokes every runner access token (token rotation): the next call with one answers 401. */
  revokeAccessTokens(): void {
    this.#b.accessTokens.clear();
  }

  /** Access-token exchanges the token endpoint granted (each one after verifying a fresh JWT). */
  get tokenExchanges(): number {
    return this.#b.assertions.length;
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
      requestId: this.#b.nextRequestId++,
      runnerRequestId: randomUUID(),
      labels: script.labels ?? ["self-hosted"],
      message: jobMessage(this.#b, jobId, planId, githubToken, accessToken, script),
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
    this.#b.jobs.set(jobId, job);
    this.#b.changed();
    return job;
  }

  job(jobId: string): FakeJob {
    const j = this.#b.jobs.get(jobId);
    if (!j) throw new Error(`no such fake job ${jobId}`);
    this.#b.checkLock(j);
    return j;
  }

  /** The job message as the runner receives it: from acquirejob (v2) or in a classic message. */
  jobMessage(jobId: string, flow: "v2" | "classic"): Record<string, unknown> {
    return deliveredMessage(this.#b, this.job(jobId), flow);
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
    const session = [...this.#b.sessions.values()].find((s) => s.runnerId === job.runnerId);
    if (session) this.#b.enqueue(session, "JobCancellation", JSON.stringify({ jobId, timeout }));
    this.#b.changed();
  }

  /** Requests whose path matches. */
  calls(path: RegExp | string, method?: string): RecordedRequest[] {
    return this.#b.requests.filter(
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
    const requests = this.#b.requests.map(
      (r) =>
        `${r.method} ${r.url}\n${Object.entries(r.headers)
          .map(([k, v]) => `${k}: ${v}`)
          .join("\n")}\n\n${r.body}${decodedStrings(r.body)}`,
    );
    const live = this.#b.liveMessages.map(
      (m) => `WebSocket message (job ${m.jobId})\n${m.data}${decodedStrings(m.data)}`,
    );
    return [...requests, ...live].join("\n----\n");
  }

  /** Waits until `probe` returns something truthy, re-checking on every request the fake serves. */
  waitFor<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        for (const j of this.#b.jobs.values()) this.#b.checkLock(j);
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
        this.#b.changes.off("change", onChange);
      };
      this.#b.changes.on("change", onChange);
      check();
    });
  }

  async close(): Promise<void> {
    if (this.#b.closed) return;
    this.#b.closed = true;
    this.#b.changes.emit("close");
    for (const ws of this.#sockets?.clients ?? []) ws.terminate();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#repos.close();
  }

  // ---------------------------------------------------------------- HTTP

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // git's requests stream (a push can be large): answered before the body is read.
    if (this.#repos.serve(this.#b, req, res, new URL(req.url ?? "/", this.url))) return;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? "/", this.url);
    const recorded = this.#b.record(req, raw);
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
      this.#b.changed();
    }
  }

  /** Which service answers: by path, as GitHub's hosts and path prefixes split them. */
  async #route(req: IncomingMessage, url: URL, raw: Buffer, closed: AbortSignal): Promise<unknown> {
    const b = this.#b;
    const m = req.method ?? "GET";
    const p = url.pathname;
    if (p.startsWith("/api/v3/users/")) {
      const out = this.#users.route(m, url, req.headers.authorization);
      if (out !== undefined) return out;
    }
    if (p.startsWith("/api/v3/")) return restRoute(b, req, url, raw);
    if (
      m === "POST" &&
      (p.startsWith("/_services/vstoken/_apis/oauth2/token/") ||
        p === `/_services/pipelines/${TENANT}/_apis/oauth2/token`)
    )
      return exchangeToken(b, req, url, raw);
    if (p.startsWith("/broker/")) return brokerRoute(b, req, url, raw, closed);
    if (p.startsWith("/run/")) return runServiceRoute(b, req, url, raw);
    if (p.startsWith("/results/twirp/") && m === "POST")
      return resultsRoute(b, req, p.slice("/results/twirp/".length), raw, closed);
    const g = /^\/blob\/([^/]+)\/([^/]+)$/.exec(p);
    if (g && m === "PUT") return blob(b, req, url, raw, `${g[1]}/${g[2]}`);
    const tp = `/_services/pipelines/${TENANT}/`;
    if (p.startsWith(tp)) return classicRoute(b, req, url, raw, p.slice(tp.length), closed);
    throw noRoute(m, p);
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
