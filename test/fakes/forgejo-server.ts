// A faithful fake of Forgejo's side of the runner protocol, for tests: connect-rpc over real HTTP
// on loopback, with the server's rules as ../shared/spec/forgejo-runner-protocol.md describes them
// (registration tokens, the runner headers, task assignment by label, tasks_version, request keys
// with their lock and replay, log index checks, task states, cancellation, ephemeral runners, the
// zombie reaper), older servers (one task per call, request keys ignored), fault injection (failed
// or slow calls), and a scripting API (queue a job, cancel it, read log rows and states, wait for
// calls).
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestContext } from "node:test";
import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { parseDocument } from "yaml";
import { PingService } from "../../src/gen/ping/v1/services_pb.js";
import {
  type FetchTaskResponseSchema,
  Result,
  type Runner,
  RunnerSchema,
  type Task,
  TaskSchema,
} from "../../src/gen/runner/v1/messages_pb.js";
import { RunnerService } from "../../src/gen/runner/v1/services_pb.js";
import { GitRepos, gitRequestOf, seedActions, tokenOf } from "./git-http.js";

export type FakeMethod = "Ping" | "Register" | "Declare" | "FetchTask" | "FetchSingleTask" | "UpdateTask" | "UpdateLog";
export type TaskStatus = "running" | "success" | "failure" | "cancelled" | "skipped";
type JobStatus = "waiting" | TaskStatus;

export interface Faults {
  readonly methods: readonly FakeMethod[];
  /** Share of calls that fail, 0…1. */
  readonly rate: number;
  /**
   * before: a proxy answers 503 and the server never sees the call; after: the server applies the
   * call and the answer is lost (503); either: a coin decides per fault. Default: either.
   */
  readonly mode?: "before" | "after" | "either";
  /** Seed of the fault dice, for reproducible runs. */
  readonly seed?: number;
}

export interface FakeForgejoOptions {
  /** false: a server older than 1.21, without Declare. */
  readonly declare?: boolean;
  /** false: a server without task_capacity / additional_tasks (before Forgejo 14, and Gitea). */
  readonly multiTask?: boolean;
  /** false: a server that ignores x-runner-request-key (before Forgejo 15, and Gitea). */
  readonly requestKeys?: boolean;
  /** ZOMBIE_TASK_TIMEOUT: a running task not updated for this long is failed by reap(). */
  readonly zombieTimeoutMs?: number;
  /** Run the reaper on a timer with this period; default: only when a test calls reap(). */
  readonly reapEveryMs?: number;
  readonly faults?: Faults;
  /** DEFAULT_ACTIONS_URL: "self" is this instance, as on Forgejo; default https://data.forgejo.org. */
  readonly defaultActionsUrl?: string;
}

/** One call of the fake's REST API (/api/v1), as answered. */
export interface ApiCall {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** The task whose token authenticated it, if one did. */
  readonly taskId?: number;
}

export interface StepView {
  readonly name: string;
  status: TaskStatus | "waiting";
  logIndex: number;
  logLength: number;
  startedMs?: number;
  stoppedMs?: number;
}

export interface TaskView {
  readonly id: number;
  readonly jobId: number;
  readonly runnerUuid: string;
  status: TaskStatus;
  token: string;
  readonly createdMs: number;
  updatedMs: number;
  startedMs?: number;
  stoppedMs?: number;
  readonly steps: StepView[];
  readonly outputs: Map<string, string>;
  /** Rows as the server stores them: content only (it prefixes the time when rendering). */
  readonly rows: string[];
  readonly rowTimes: number[];
  /** When the server stored each row (its clock, ms): what a log viewer could show from then on. */
  readonly rowsStoredMs: number[];
  /** UpdateLog and UpdateTask calls of this task the server holds right now, and the most it ever held at once. */
  callsInFlight: number;
  maxCallsInFlight: number;
  logArchived: boolean;
  /** Whether the log was archived (final UpdateLog with no_more stored) when the final UpdateTask came. */
  archivedAtFinal?: boolean;
}

export interface RunnerView {
  readonly id: number;
  readonly uuid: string;
  name: string;
  version: string;
  labels: string[];
  readonly ephemeral: boolean;
  readonly tokenHash: Buffer;
  readonly salt: string;
  lastOnlineMs: number;
}

interface JobRow {
  readonly id: number;
  readonly key: string;
  readonly runsOn: readonly string[];
  readonly payload: string;
  readonly stepNames: readonly string[];
  status: JobStatus;
  taskId?: number;
  readonly runId: number;
  readonly queuedMs: number;
  readonly secrets: Readonly<Record<string, string>>;
  readonly vars: Readonly<Record<string, string>>;
  readonly needs: Readonly<Record<string, { result: TaskStatus; outputs: Record<string, string> }>>;
  readonly eventName: string;
  readonly event: JsonObject;
  readonly repository: string;
  readonly file: string;
  readonly contextExtra: JsonObject;
}

export interface QueueJobInput {
  /** YAML of a workflow with exactly one job, as Forgejo stores it per job. */
  readonly workflow: string;
  readonly secrets?: Readonly<Record<string, string>>;
  readonly vars?: Readonly<Record<string, string>>;
  readonly needs?: Readonly<Record<string, { result: TaskStatus; outputs?: Record<string, string> }>>;
  readonly eventName?: string;
  readonly event?: JsonObject;
  readonly repository?: string;
  /** The workflow's path in the repository (default .forgejo/workflows/ci.yml). */
  readonly file?: string;
  /** Merged over the generated task context (e.g. to drop the default actions URL). */
  readonly context?: JsonObject;
}

const RESULT_OF: Readonly<Record<TaskStatus, Result>> = {
  running: Result.UNSPECIFIED,
  success: Result.SUCCESS,
  failure: Result.FAILURE,
  cancelled: Result.CANCELLED,
  skipped: Result.SKIPPED,
};

function statusOf(r: Result): TaskStatus | undefined {
  switch (r) {
    case Result.SUCCESS:
      return "success";
    case Result.FAILURE:
      return "failure";
    case Result.CANCELLED:
      return "cancelled";
    case Result.SKIPPED:
      return "skipped";
    default:
      return undefined;
  }
}

const FINAL = (s: string): boolean => s === "success" || s === "failure" || s === "cancelled" || s === "skipped";

/** mulberry32: a small seeded generator so fault runs can be repeated. */
function dice(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hashToken = (salt: string, token: string) =>
  createHash("sha256")
    .update(salt + token)
    .digest();
const ms = (t: Timestamp | undefined) => (t ? timestampMs(t) : undefined);

export class FakeForgejo {
  #url = "";
  registrationToken = randomBytes(20).toString("hex");
  readonly #invalidTokens = new Set<string>();
  readonly #server: Server;
  readonly #o: FakeForgejoOptions;
  readonly #runners = new Map<string, RunnerView>();
  readonly #jobs: JobRow[] = [];
  readonly #tasks = new Map<number, TaskView>();
  readonly #calls = new Map<FakeMethod, number>();
  readonly #injected = new Map<FakeMethod, number>();
  readonly #listeners = new Set<() => void>();
  readonly #assignments = new Map<string, number[]>(); // runner uuid/request key → task ids
  /** Request keys a FetchTask is working on right now (Forgejo's MutexMap, held for the whole call). */
  readonly #lockedKeys = new Set<string>();
  readonly #maxRunning = new Map<string, number>();
  readonly #failNext = new Map<FakeMethod, { n: number; mode: "before" | "after" }>();
  readonly #slowNext = new Map<FakeMethod, { n: number; ms: number }>();
  /** task_capacity of every FetchTask, as sent (undefined: not sent). */
  readonly fetchCapacities: (number | undefined)[] = [];
  /** x-runner-request-key of every FetchTask that reached the server, as sent ("" when absent). */
  readonly fetchRequestKeys: string[] = [];
  /** How many tasks each FetchTask handed out (replays included; a slow call's even if nobody got its answer). */
  readonly tasksPerFetch: number[] = [];
  /** FetchTask calls answered "request key is currently locked; retry soon". */
  lockedRefusals = 0;
  #faults: Faults | undefined;
  #roll: () => number = Math.random;
  #version = 0;
  #nextRunnerId = 1;
  #nextJobId = 1;
  #nextTaskId = 100;
  #reaper: NodeJS.Timeout | undefined;
  /**
   * Its git repositories, served over smart HTTP at <url><owner>/<repo>(.git): public ones to anyone,
   * private ones to the job token of a running task of that repository, pushes only with that token.
   */
  readonly git = new GitRepos();
  readonly #publicRepos = new Set<string>();
  /** Every call of the REST API, in order. */
  readonly apiCalls: ApiCall[] = [];
  /** Users' public SSH keys (authorized_keys lines), by lower-case name: GET /api/v1/users/{name}/keys. */
  readonly #userKeys = new Map<string, readonly string[]>();

  private constructor(options: FakeForgejoOptions) {
    this.#o = options;
    const handler = connectNodeAdapter({
      requestPathPrefix: "/api/actions",
      routes: (router: ConnectRouter) => this.#routes(router),
    });
    this.#server = createServer((req, res) => this.#http(req, res, handler));
    this.setFaults(options.faults);
    if (options.reapEveryMs) this.#reaper = setInterval(() => this.reap(), options.reapEveryMs).unref();
  }

  /** The instance URL, with the trailing slash Forgejo puts in server_url. */
  get url(): string {
    return this.#url;
  }

  static async start(options: FakeForgejoOptions = {}): Promise<FakeForgejo> {
    const self = new FakeForgejo(options);
    await new Promise<void>((resolve) => self.#server.listen(0, "127.0.0.1", resolve));
    self.#url = `http://127.0.0.1:${(self.#server.address() as AddressInfo).port}/`;
    return self;
  }

  // ——— scripting API ———

  /**
   * A repository of this instance: one commit per entry on main, private unless `public`. Returns
   * the commits, oldest first.
   */
  createRepository(
    fullName: string,
    commits: readonly { files: Readonly<Record<string, string>>; message?: string }[],
    o: { public?: boolean } = {},
  ): string[] {
    if (o.public) this.#publicRepos.add(fullName.toLowerCase());
    return commits.map((c) => this.git.commit(fullName, c));
  }

  /**
   * Serves the actions under `root` (../shared/actions) from this instance, as Forgejo does with
   * DEFAULT_ACTIONS_URL = self: public repositories tagged with their version and major version.
   */
  seedActions(root: string): { repo: string; version: string; commit: string }[] {
    const seeded = seedActions(this.git, root);
    for (const s of seeded) this.#publicRepos.add(s.repo);
    return seeded;
  }

  /** Makes a repository readable without a token. */
  makePublic(fullName: string): void {
    this.#publicRepos.add(fullName.toLowerCase());
  }

  /** Regenerates the registration token: the old one is refused as "invalidated" from now on. */
  regenerateRegistrationToken(): string {
    this.#invalidTokens.add(this.registrationToken);
    this.registrationToken = randomBytes(20).toString("hex");
    return this.registrationToken;
  }

  setFaults(faults: Faults | undefined): void {
    this.#faults = faults;
    this.#roll = faults?.seed !== undefined ? dice(faults.seed) : Math.random;
  }

  /** Fails the next `n` calls of `method` (before: the server never sees them; after: answers lost). */
  failNext(method: FakeMethod, n: number, mode: "before" | "after"): void {
    this.#failNext.set(method, { n, mode });
  }

  /**
   * The server applies each of the next `n` calls of `method` at once but answers it only `ms` later
   * (a slow commit), whether or not the client still waits. A FetchTask holds its request key's lock
   * until it answers, as Forgejo holds it for the whole call.
   */
  slowNext(method: FakeMethod, n: number, ms: number): void {
    this.#slowNext.set(method, { n, ms });
  }

  /** Queues one job (state waiting) and bumps the tasks version. Returns the job id. */
  queueJob(input: QueueJobInput): number {
    // Aliases are kept as references (no alias budget): a job may hold an alias bomb for gnomon to refuse.
    const doc = parseDocument(input.workflow).toJS({ maxAliasCount: -1 }) as {
      jobs?: Record<string, { "runs-on"?: unknown; steps?: unknown[] }>;
    };
    const keys = Object.keys(doc.jobs ?? {});
    if (keys.length !== 1) throw new Error(`queueJob wants a workflow with exactly one job, got ${keys.length}`);
    const key = keys[0]!;
    const job = doc.jobs![key]!;
    const ro = job["runs-on"];
    const runsOn = typeof ro === "string" ? [ro] : Array.isArray(ro) ? ro.map(String) : [];
    const stepNames = (job.steps ?? [])
      .filter((s) => s !== null && s !== undefined)
      .map((s) => {
        const st = s as Record<string, unknown>;
        return String(st["name"] ?? st["uses"] ?? st["run"] ?? st["id"] ?? "");
      });
    const id = this.#nextJobId++;
    this.#jobs.push({
      id,
      key,
      runsOn,
      payload: input.workflow,
      stepNames,
      status: "waiting",
      runId: 1000 + id,
      queuedMs: Date.now(),
      secrets: input.secrets ?? {},
      vars: input.vars ?? {},
      needs: Object.fromEntries(
        Object.entries(input.needs ?? {}).map(([k, v]) => [k, { result: v.result, outputs: v.outputs ?? {} }]),
      ),
      eventName: input.eventName ?? "push",
      event: input.event ?? {},
      repository: input.repository ?? "alice/demo",
      file: input.file ?? ".forgejo/workflows/ci.yml",
      contextExtra: input.context ?? {},
    });
    this.#version += 1;
    this.#changed();
    return id;
  }

  /** Makes `user` exist with these public SSH keys, as Forgejo lists them to anyone at /api/v1/users/{name}/keys. */
  setUserKeys(user: string, keys: readonly string[]): void {
    this.#userKeys.set(user.toLowerCase(), [...keys]);
  }

  /** Cancels a job as a user would in the UI: its task ends as cancelled, steps still open too. */
  cancelJob(jobId: number): void {
    const job = this.#job(jobId);
    if (FINAL(job.status)) return;
    job.status = "cancelled";
    const task = job.taskId === undefined ? undefined : this.#tasks.get(job.taskId);
    if (task && task.status === "running") this.#stopTask(task, "cancelled", false);
    this.#changed();
  }

  /** The zombie reaper: running tasks not updated for zombieTimeoutMs become failures, logs archived. */
  reap(nowMs = Date.now()): number {
    const limit = this.#o.zombieTimeoutMs ?? 10 * 60_000;
    let n = 0;
    for (const t of this.#tasks.values())
      if (t.status === "running" && nowMs - t.updatedMs >= limit) {
        this.#stopTask(t, "failure", true);
        n += 1;
      }
    if (n > 0) this.#changed();
    return n;
  }

  deleteRunner(uuid: string): void {
    this.#runners.delete(uuid);
  }

  runners(): RunnerView[] {
    return [...this.#runners.values()];
  }

  task(taskId: number): TaskView | undefined {
    return this.#tasks.get(taskId);
  }

  taskOfJob(jobId: number): TaskView | undefined {
    const id = this.#job(jobId).taskId;
    return id === undefined ? undefined : this.#tasks.get(id);
  }

  jobStatus(jobId: number): JobStatus {
    return this.#job(jobId).status;
  }

  tasks(): TaskView[] {
    return [...this.#tasks.values()];
  }

  /** The most tasks a runner held running at once. */
  maxRunning(uuid: string): number {
    return this.#maxRunning.get(uuid) ?? 0;
  }

  calls(method: FakeMethod): number {
    return this.#calls.get(method) ?? 0;
  }

  faultsInjected(method: FakeMethod): number {
    return this.#injected.get(method) ?? 0;
  }

  /** Resolves with the first truthy value of `probe`, checked after every call and change. */
  waitFor<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = probe();
        if (v) {
          this.#listeners.delete(check);
          clearTimeout(timer);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(new Error(`fake forgejo: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  /** Resolves when `method` has been called more often than now. */
  nextCall(method: FakeMethod, timeoutMs?: number): Promise<true> {
    const n = this.calls(method);
    return this.waitFor(() => this.calls(method) > n, `a ${method} call`, timeoutMs);
  }

  async close(): Promise<void> {
    clearInterval(this.#reaper);
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    rmSync(this.git.root, { recursive: true, force: true });
  }

  // ——— transport ———

  #http(req: IncomingMessage, res: ServerResponse, handler: (req: IncomingMessage, res: ServerResponse) => void): void {
    const url = new URL(req.url ?? "/", "http://fake");
    if (!url.pathname.startsWith("/api/actions/")) {
      this.#web(req, res, url);
      return;
    }
    const method = (req.url ?? "").split("/").pop() as FakeMethod;
    const f = this.#faults;
    const next = this.#failNext.get(method);
    const scripted = next !== undefined && next.n > 0 && next.mode === "before";
    if (scripted) next.n -= 1;
    const rolled =
      f?.methods.includes(method) === true &&
      this.#roll() < f.rate &&
      (f.mode === "before" || (f.mode !== "after" && this.#roll() < 0.5));
    if (scripted || rolled) {
      this.#count(method);
      this.#injected.set(method, (this.#injected.get(method) ?? 0) + 1);
      req.resume();
      res.writeHead(503, { "content-type": "text/plain" }).end("503 Service Unavailable (injected by the fake)");
      this.#changed();
      return;
    }
    handler(req, res);
  }

  /** The running task whose job token this request carries, if any. */
  #taskOfRequest(req: IncomingMessage): TaskView | undefined {
    const token = tokenOf(req);
    if (!token) return undefined;
    return [...this.#tasks.values()].find((t) => t.status === "running" && t.token === token);
  }

  /** Git over smart HTTP and the REST API: what a job reaches of its forge besides the runner protocol. */
  #web(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const task = this.#taskOfRequest(req);
    const ownRepo = (repo: string) => task !== undefined && this.#job(task.jobId).repository.toLowerCase() === repo;
    const git = gitRequestOf(req.method ?? "GET", url.pathname, url.search.slice(1));
    if (git) {
      if (!this.git.has(git.repo)) {
        res.writeHead(404, { "content-type": "text/plain" }).end("Not found.\n");
        return;
      }
      const may = git.push ? ownRepo(git.repo) : this.#publicRepos.has(git.repo) || ownRepo(git.repo);
      if (!may) {
        res
          .writeHead(401, { "www-authenticate": 'Basic realm="Gitea"', "content-type": "text/plain" })
          .end("Unauthorized\n");
        return;
      }
      this.git.serve(req, res, url.pathname, url.search.slice(1), task ? `task-${task.id}` : undefined);
      return;
    }
    const answer = (status: number, body: unknown) => {
      this.apiCalls.push({ method: req.method ?? "GET", path: url.pathname, status, taskId: task?.id });
      res.writeHead(status, { "content-type": "application/json;charset=utf-8" }).end(JSON.stringify(body));
      this.#changed();
    };
    // A user's public keys are public on Forgejo (routers/api/v1 users/{username}/keys, no token needed).
    const userKeys = /^\/api\/v1\/users\/([^/]+)\/keys$/.exec(url.pathname);
    if (userKeys && req.method === "GET") {
      const name = decodeURIComponent(userKeys[1]!);
      const keys = this.#userKeys.get(name.toLowerCase());
      if (!keys)
        answer(404, {
          message: `user redirect does not exist [name: ${name.toLowerCase()}]`,
          url: `${this.url}api/swagger`,
        });
      else
        answer(
          200,
          keys.map((key, i) => ({
            id: i + 1,
            key,
            url: `${this.url}api/v1/user/keys/${i + 1}`,
            title: `key ${i + 1}`,
            fingerprint: `SHA256:${createHash("sha256")
              .update(Buffer.from(key.split(" ")[1] ?? "", "base64"))
              .digest("base64")
              .replace(/=+$/, "")}`,
            created_at: "2026-01-01T00:00:00Z",
            read_only: true,
            key_type: "user",
          })),
        );
      return;
    }
    const repo = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (repo && req.method === "GET") {
      const name = `${repo[1]}/${repo[2]}`.toLowerCase();
      if (!this.git.has(name)) answer(404, { message: "The target couldn't be found.", url: `${this.url}api/swagger` });
      else if (!this.#publicRepos.has(name) && !ownRepo(name))
        answer(401, { message: "token is required", url: `${this.url}api/swagger` });
      else
        answer(200, {
          full_name: name,
          private: !this.#publicRepos.has(name),
          default_branch: "main",
          clone_url: `${this.url}${name}.git`,
          html_url: `${this.url}${name}`,
        });
      return;
    }
    answer(404, { message: "Not Found", url: `${this.url}api/swagger` });
  }

  /** A fault after the call took effect: the answer is lost. */
  #lostAnswer(method: FakeMethod): void {
    const next = this.#failNext.get(method);
    if (next && next.n > 0 && next.mode === "after") {
      next.n -= 1;
      this.#injected.set(method, (this.#injected.get(method) ?? 0) + 1);
      throw new ConnectError("the answer was lost (injected by the fake)", Code.Unavailable);
    }
    const f = this.#faults;
    if (!f?.methods.includes(method) || f.mode === "before") return;
    if (this.#roll() < f.rate / (f.mode === "after" ? 1 : 2)) {
      this.#injected.set(method, (this.#injected.get(method) ?? 0) + 1);
      throw new ConnectError("the answer was lost (injected by the fake)", Code.Unavailable);
    }
  }

  #count(method: FakeMethod): void {
    this.#calls.set(method, (this.#calls.get(method) ?? 0) + 1);
  }

  #changed(): void {
    for (const l of [...this.#listeners]) l();
  }

  #routes(router: ConnectRouter): void {
    const wrap =
      <Req, Res>(method: FakeMethod, fn: (req: Req, ctx: HandlerContext) => Res | Promise<Res>) =>
      async (req: Req, ctx: HandlerContext): Promise<Res> => {
        this.#count(method);
        try {
          const out = await fn(req, ctx);
          this.#lostAnswer(method);
          return out;
        } finally {
          queueMicrotask(() => this.#changed());
        }
      };
    router.service(PingService, { ping: wrap("Ping", (req) => ({ data: `Hello, ${req.data}!` })) });
    router.service(RunnerService, {
      register: wrap("Register", (req) => ({ runner: this.#register(req) })),
      ...(this.#o.declare === false
        ? {}
        : {
            declare: wrap("Declare", (req, ctx) => {
              const r = this.#auth(ctx);
              r.labels = [...req.labels];
              r.version = req.version;
              return { runner: this.#runnerMessage(r, "") };
            }),
          }),
      fetchTask: wrap("FetchTask", (req, ctx) => this.#fetchTask(req.tasksVersion, req.taskCapacity, ctx)),
      updateTask: wrap("UpdateTask", (req, ctx) =>
        this.#held("UpdateTask", req.state?.id, () => this.#updateTask(req, ctx)),
      ),
      updateLog: wrap("UpdateLog", (req, ctx) => this.#held("UpdateLog", req.taskId, () => this.#updateLog(req, ctx))),
    });
  }

  // ——— the server's rules ———

  #register(req: {
    name: string;
    token: string;
    version: string;
    labels: string[];
    agentLabels: string[];
    ephemeral: boolean;
  }): Runner {
    if (!req.token || !req.name) throw new ConnectError("missing runner token, name", Code.InvalidArgument);
    if (this.#invalidTokens.has(req.token))
      throw new ConnectError(
        "runner registration token has been invalidated, please use the latest one",
        Code.InvalidArgument,
      );
    if (req.token !== this.registrationToken)
      throw new ConnectError("runner registration token not found", Code.InvalidArgument);
    const token = randomBytes(20).toString("hex");
    const salt = randomBytes(8).toString("hex");
    const r: RunnerView = {
      id: this.#nextRunnerId++,
      uuid: randomUUID(),
      name: req.name.slice(0, 255),
      version: req.version.slice(0, 64),
      labels: req.labels.length > 0 ? [...req.labels] : [...req.agentLabels],
      ephemeral: req.ephemeral,
      salt,
      tokenHash: hashToken(salt, token),
      lastOnlineMs: Date.now(),
    };
    this.#runners.set(r.uuid, r);
    return this.#runnerMessage(r, token);
  }

  #runnerMessage(r: RunnerView, token: string): Runner {
    return create(RunnerSchema, {
      id: BigInt(r.id),
      uuid: r.uuid,
      token,
      name: r.name,
      version: r.version,
      labels: r.labels,
      agentLabels: r.labels,
      ephemeral: r.ephemeral,
    });
  }

  /** The interceptor of every method but Register and Ping. */
  #auth(ctx: HandlerContext): RunnerView {
    const uuid = ctx.requestHeader.get("x-runner-uuid") ?? "";
    const token = ctx.requestHeader.get("x-runner-token") ?? "";
    const r = this.#runners.get(uuid);
    if (!r || !timingSafeEqual(hashToken(r.salt, token), r.tokenHash))
      throw new ConnectError("unregistered runner", Code.Unauthenticated);
    r.lastOnlineMs = Date.now();
    return r;
  }

  /**
   * Forgejo 15+ with a request key: the key is locked for the whole call (a concurrent call with it,
   * e.g. a client's retry while its timed-out call still runs here, is answered `internal` "request
   * key is currently locked; retry soon"), and the tasks an earlier call assigned under it are
   * handed out again. Older servers and Gitea ignore the header.
   */
  async #fetchTask(
    tasksVersion: bigint,
    taskCapacity: bigint | undefined,
    ctx: HandlerContext,
  ): Promise<MessageInitShape<typeof FetchTaskResponseSchema>> {
    const r = this.#auth(ctx);
    this.fetchCapacities.push(taskCapacity === undefined ? undefined : Number(taskCapacity));
    const sentKey = ctx.requestHeader.get("x-runner-request-key") ?? "";
    this.fetchRequestKeys.push(sentKey);
    const key = this.#o.requestKeys === false ? "" : sentKey;
    if (key && this.#lockedKeys.has(key)) {
      this.lockedRefusals += 1;
      throw new ConnectError("request key is currently locked; retry soon", Code.Internal);
    }
    if (key) this.#lockedKeys.add(key);
    try {
      const out = this.#pickTasks(r, key, tasksVersion, taskCapacity);
      this.tasksPerFetch.push((out.task ? 1 : 0) + (out.additionalTasks?.length ?? 0));
      await this.#slow("FetchTask");
      return out;
    } finally {
      if (key) this.#lockedKeys.delete(key);
    }
  }

  /**
   * Applies a call of a task at once and answers it when slowNext says, counting it among the
   * task's calls in flight meanwhile.
   */
  async #held<T>(method: FakeMethod, taskId: bigint | undefined, apply: () => T): Promise<T> {
    const own = taskId === undefined ? undefined : this.#tasks.get(Number(taskId));
    if (own) {
      own.callsInFlight += 1;
      own.maxCallsInFlight = Math.max(own.maxCallsInFlight, own.callsInFlight);
    }
    try {
      const out = apply();
      this.#changed(); // waiters see what a slow call applied while it is held
      await this.#slow(method);
      return out;
    } finally {
      if (own) own.callsInFlight -= 1;
    }
  }

  /** Waits as slowNext said for this call of `method`, if it did. */
  async #slow(method: FakeMethod): Promise<void> {
    const slow = this.#slowNext.get(method);
    if (!slow || slow.n <= 0) return;
    slow.n -= 1;
    await new Promise((resolve) => setTimeout(resolve, slow.ms));
  }

  #pickTasks(
    r: RunnerView,
    key: string,
    tasksVersion: bigint,
    taskCapacity: bigint | undefined,
  ): { task?: Task | undefined; additionalTasks?: Task[]; tasksVersion: bigint } {
    if (key) {
      const earlier = this.#assignments.get(`${r.uuid}/${key}`);
      if (earlier && earlier.length > 0) {
        // Replay the tasks of a call whose answer was lost, with fresh tokens (the server stores hashes).
        const replay = earlier.map((id) => {
          const t = this.#tasks.get(id)!;
          t.token = randomBytes(20).toString("hex");
          return this.#taskMessage(t);
        });
        return { task: replay[0], additionalTasks: replay.slice(1), tasksVersion: 0n };
      }
    }
    if (this.#version === 0) this.#version += 1;
    const latest = BigInt(this.#version);
    if (tasksVersion === latest) return { tasksVersion: latest };
    const want = this.#o.multiTask === false ? 1 : Math.max(1, Number(taskCapacity ?? 1n));
    const picked: Task[] = [];
    for (const job of this.#jobs) {
      if (picked.length >= want) break;
      if (job.status !== "waiting" || job.taskId !== undefined) continue;
      if (r.labels.length === 0 || job.runsOn.length === 0 || !job.runsOn.every((l) => r.labels.includes(l))) continue;
      picked.push(this.#taskMessage(this.#createTask(job, r)));
    }
    if (key && picked.length > 0)
      this.#assignments.set(
        `${r.uuid}/${key}`,
        picked.map((t) => Number(t.id)),
      );
    const running = [...this.#tasks.values()].filter((t) => t.runnerUuid === r.uuid && t.status === "running").length;
    this.#maxRunning.set(r.uuid, Math.max(this.maxRunning(r.uuid), running));
    return { task: picked[0], additionalTasks: picked.slice(1), tasksVersion: latest };
  }

  #createTask(job: JobRow, r: RunnerView): TaskView {
    const now = Date.now();
    const t: TaskView = {
      id: this.#nextTaskId++,
      jobId: job.id,
      runnerUuid: r.uuid,
      status: "running",
      token: randomBytes(20).toString("hex"),
      createdMs: now,
      updatedMs: now,
      steps: job.stepNames.map((name) => ({ name, status: "waiting", logIndex: 0, logLength: 0 })),
      outputs: new Map(),
      rows: [],
      rowTimes: [],
      rowsStoredMs: [],
      callsInFlight: 0,
      maxCallsInFlight: 0,
      logArchived: false,
    };
    this.#tasks.set(t.id, t);
    job.taskId = t.id;
    job.status = "running";
    return t;
  }

  #taskMessage(t: TaskView): Task {
    const job = this.#job(t.jobId);
    const [owner] = job.repository.split("/");
    const actionsUrl =
      this.#o.defaultActionsUrl === "self" ? this.url : (this.#o.defaultActionsUrl ?? "https://data.forgejo.org");
    const context: JsonObject = {
      event: job.event,
      event_name: job.eventName,
      ref: "refs/heads/main",
      ref_name: "main",
      ref_type: "branch",
      sha: "0123456789abcdef0123456789abcdef01234567",
      head_ref: "",
      base_ref: "",
      repository: job.repository,
      repository_owner: owner ?? "",
      repositoryUrl: `${this.url}${job.repository}`,
      actor: "alice",
      triggering_actor: "",
      // The workflow id is its file name; newer servers add workflow_ref with the path.
      workflow: job.file.slice(job.file.lastIndexOf("/") + 1),
      workflow_ref: `${job.repository}/${job.file}@refs/heads/main`,
      job: job.key,
      run_id: String(job.runId),
      run_number: String(job.id),
      run_attempt: "1",
      server_url: this.url,
      api_url: `${this.url}api/v1`,
      graphql_url: "",
      workspace: "",
      action: "",
      action_path: "",
      env: "",
      path: "",
      event_path: "",
      retention_days: "",
      ref_protected: false,
      secret_source: "Actions",
      token: t.token,
      gitea_runtime_token: `runtime-${t.token.slice(0, 8)}`,
      forgejo_runtime_token: `runtime-${t.token.slice(0, 8)}`,
      gitea_default_actions_url: actionsUrl,
      forgejo_default_actions_url: actionsUrl,
      ...job.contextExtra,
    };
    for (const [k, v] of Object.entries(context)) if (v === null) delete context[k];
    return create(TaskSchema, {
      id: BigInt(t.id),
      workflowPayload: new TextEncoder().encode(job.payload),
      context,
      secrets: { ...job.secrets, GITHUB_TOKEN: t.token, GITEA_TOKEN: t.token, FORGEJO_TOKEN: t.token },
      needs: Object.fromEntries(
        Object.entries(job.needs).map(([k, v]) => [k, { result: RESULT_OF[v.result], outputs: v.outputs }]),
      ),
      vars: { ...job.vars },
    });
  }

  #ownTask(taskId: bigint, r: RunnerView): TaskView {
    const t = this.#tasks.get(Number(taskId));
    if (!t) throw new ConnectError(`task with id ${taskId}: resource does not exist`, Code.Internal);
    if (t.runnerUuid !== r.uuid) throw new ConnectError("invalid runner for task", Code.Internal);
    return t;
  }

  #updateTask(
    req: {
      state?: {
        id: bigint;
        result: Result;
        startedAt?: Timestamp;
        stoppedAt?: Timestamp;
        steps: {
          id: bigint;
          result: Result;
          startedAt?: Timestamp;
          stoppedAt?: Timestamp;
          logIndex: bigint;
          logLength: bigint;
        }[];
      };
      outputs: { [k: string]: string };
    },
    ctx: HandlerContext,
  ) {
    const r = this.#auth(ctx);
    if (!req.state) throw new ConnectError("state is required", Code.InvalidArgument);
    const t = this.#ownTask(req.state.id, r);
    if (t.status === "running") {
      const final = statusOf(req.state.result);
      if (final) {
        t.archivedAtFinal = t.logArchived;
        t.status = final;
        t.stoppedMs = ms(req.state.stoppedAt) ?? 0; // an absent stop time becomes the epoch, as on Forgejo
        this.#job(t.jobId).status = final;
        this.#version += 1; // concurrency queueing (on by default) bumps the version when a task ends
      } else t.updatedMs = Date.now();
      t.startedMs ??= ms(req.state.startedAt);
      for (const [i, step] of t.steps.entries()) {
        const s = req.state.steps.find((x) => Number(x.id) === i);
        if (!s) continue;
        step.logIndex = Number(s.logIndex);
        step.logLength = Number(s.logLength);
        step.startedMs = ms(s.startedAt);
        step.stoppedMs = ms(s.stoppedAt);
        const st = statusOf(s.result);
        step.status = st ?? (step.startedMs !== undefined ? "running" : step.status);
      }
      for (const [k, v] of Object.entries(req.outputs)) {
        if (Buffer.byteLength(k) > 255 || Buffer.byteLength(v) > 1024 * 1024) continue;
        if (!t.outputs.has(k)) t.outputs.set(k, v);
      }
      if (final && r.ephemeral) this.#runners.delete(r.uuid);
    }
    return {
      state: { id: BigInt(t.id), result: RESULT_OF[t.status] },
      sentOutputs: [...t.outputs.keys()],
    };
  }

  #updateLog(
    req: { taskId: bigint; index: bigint; rows: { time?: Timestamp; content: string }[]; noMore: boolean },
    ctx: HandlerContext,
  ) {
    const r = this.#auth(ctx);
    const t = this.#ownTask(req.taskId, r);
    const ack = t.rows.length;
    const index = Number(req.index);
    if (req.rows.length === 0 || index > ack || index + req.rows.length <= ack) return { ackIndex: BigInt(ack) };
    if (t.logArchived) throw new ConnectError("log file has been archived", Code.AlreadyExists);
    const now = Date.now();
    for (const row of req.rows.slice(ack - index)) {
      t.rows.push(row.content.length > 65_536 ? row.content.slice(0, 65_536) : row.content);
      t.rowTimes.push(ms(row.time) ?? 0);
      t.rowsStoredMs.push(now);
    }
    t.updatedMs = now;
    if (req.noMore) t.logArchived = true;
    return { ackIndex: BigInt(t.rows.length) };
  }

  #stopTask(t: TaskView, status: TaskStatus, archive: boolean): void {
    t.status = status;
    t.stoppedMs = Date.now();
    for (const s of t.steps) if (!FINAL(s.status)) s.status = "cancelled";
    if (archive) t.logArchived = true;
    const job = this.#job(t.jobId);
    if (!FINAL(job.status)) job.status = status;
    this.#version += 1;
  }

  #job(id: number): JobRow {
    const j = this.#jobs.find((x) => x.id === id);
    if (!j) throw new Error(`fake forgejo: no job ${id}`);
    return j;
  }
}

/** Starts a fake on a free loopback port; closes it when the test ends. */
export async function startFakeForgejo(
  t: TestContext | undefined,
  options: FakeForgejoOptions = {},
): Promise<FakeForgejo> {
  const f = await FakeForgejo.start(options);
  t?.after(() => f.close());
  return f;
}
