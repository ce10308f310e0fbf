// The connect-rpc client for Forgejo's runner protocol: base URL, the runner's auth headers, the
// request key, per-call deadlines. The ONLY importer of src/gen: everything else in forge/forgejo
// sees the plain shapes below, and nothing generated travels past forge/forgejo.
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { PingService } from "../../gen/ping/v1/services_pb.js";
import { LogRowSchema, Result, StepStateSchema, type Task, TaskStateSchema } from "../../gen/runner/v1/messages_pb.js";
import { RunnerService } from "../../gen/runner/v1/services_pb.js";

/** A task as Forgejo sends it; only to-job-request.ts and the reporter read it. */
export type ForgejoTask = Task;
export type { JsonObject };

export type TaskResult = "unspecified" | "success" | "failure" | "cancelled" | "skipped";

export interface StepReport {
  readonly result: TaskResult;
  readonly startedAtMs?: number;
  readonly stoppedAtMs?: number;
  /** Absolute row number of the step's first log row. */
  readonly logIndex: number;
  readonly logLength: number;
}

export interface TaskReport {
  readonly id: bigint;
  readonly result: TaskResult;
  readonly startedAtMs?: number;
  readonly stoppedAtMs?: number;
  readonly steps: readonly StepReport[];
}

export interface LogRowOut {
  readonly timeMs: number;
  readonly content: string;
}

export interface RunnerRecord {
  readonly id: bigint;
  readonly uuid: string;
  /** Only set in the answer to Register. */
  readonly token: string;
  readonly name: string;
  readonly version: string;
  readonly labels: readonly string[];
  readonly ephemeral: boolean;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** The call's own deadline, below `signal`. Default: the client's defaultTimeoutMs. */
  readonly timeoutMs?: number;
}

export interface FetchedTasks {
  readonly tasks: readonly ForgejoTask[];
  readonly tasksVersion: bigint;
}

export interface ForgejoClient {
  /** The instance URL as configured (the credentials file's `address`). */
  readonly instance: string;
  ping(data: string, opts?: CallOptions): Promise<string>;
  register(
    req: { name: string; token: string; version: string; labels: readonly string[]; ephemeral?: boolean },
    opts?: CallOptions,
  ): Promise<RunnerRecord>;
  declare(req: { version: string; labels: readonly string[] }, opts?: CallOptions): Promise<RunnerRecord>;
  /**
   * One short poll. `requestKey` goes in x-runner-request-key (Forgejo 15+ replays tasks of a call
   * whose answer was lost when it sees the same key again); `taskCapacity` lets Forgejo 14+ hand
   * out several tasks. Older servers ignore both.
   */
  fetchTask(
    req: { tasksVersion: bigint; taskCapacity: number; requestKey: string },
    opts?: CallOptions,
  ): Promise<FetchedTasks>;
  updateTask(
    state: TaskReport,
    outputs: Readonly<Record<string, string>>,
    opts?: CallOptions,
  ): Promise<{ result: TaskResult; sentOutputs: readonly string[] }>;
  updateLog(
    req: { taskId: bigint; index: number; rows: readonly LogRowOut[]; noMore: boolean },
    opts?: CallOptions,
  ): Promise<{ ackIndex: number }>;
}

export interface ClientOptions {
  /** The instance root URL, e.g. https://forgejo.example.org/ (a sub-path is kept). */
  readonly instance: string;
  /** Absent before registration. */
  readonly credentials?: { readonly uuid: string; readonly token: string };
  readonly userAgent: string;
  /** Deadline of every call that does not bring its own; forgejo-runner uses 60 s. */
  readonly defaultTimeoutMs?: number;
}

const RESULT_TO_WIRE: Readonly<Record<TaskResult, Result>> = {
  unspecified: Result.UNSPECIFIED,
  success: Result.SUCCESS,
  failure: Result.FAILURE,
  cancelled: Result.CANCELLED,
  skipped: Result.SKIPPED,
};

export function resultFromWire(r: Result): TaskResult {
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
      return "unspecified";
  }
}

/** `<instance>/api/actions`, with the instance's trailing slashes removed. */
export function apiBaseUrl(instance: string): string {
  return `${instance.replace(/\/+$/, "")}/api/actions`;
}

export function forgejoClient(options: ClientOptions): ForgejoClient {
  const auth: Interceptor = (next) => (req) => {
    if (options.credentials) {
      req.header.set("x-runner-uuid", options.credentials.uuid);
      req.header.set("x-runner-token", options.credentials.token);
    }
    req.header.set("user-agent", options.userAgent);
    return next(req);
  };
  // JSON, not binary: Forgejo's connect-go handlers accept both, and JSON names fields instead of
  // numbering them, so the Forgejo-only fields whose numbers are unconfirmed (proto/README.md) are
  // safe; unknown fields from newer servers are ignored.
  const transport = createConnectTransport({
    baseUrl: apiBaseUrl(options.instance),
    httpVersion: "1.1",
    useBinaryFormat: false,
    jsonOptions: { ignoreUnknownFields: true },
    interceptors: [auth],
  });
  const runner = createClient(RunnerService, transport);
  const ping = createClient(PingService, transport);
  const defaultTimeoutMs = options.defaultTimeoutMs ?? 60_000;
  const call = (o: CallOptions | undefined, headers?: Record<string, string>) => ({
    signal: o?.signal,
    timeoutMs: o?.timeoutMs ?? defaultTimeoutMs,
    headers,
  });

  return {
    instance: options.instance,

    async ping(data, opts) {
      return (await ping.ping({ data }, call(opts))).data;
    },

    async register(req, opts) {
      const res = await runner.register(
        {
          name: req.name,
          token: req.token,
          version: req.version,
          labels: [...req.labels],
          agentLabels: [...req.labels], // servers before Gitea 1.20 read only this
          ephemeral: req.ephemeral ?? false,
        },
        call(opts),
      );
      return runnerRecord(res.runner);
    },

    async declare(req, opts) {
      const res = await runner.declare({ version: req.version, labels: [...req.labels] }, call(opts));
      return runnerRecord(res.runner);
    },

    async fetchTask(req, opts) {
      const res = await runner.fetchTask(
        { tasksVersion: req.tasksVersion, taskCapacity: BigInt(req.taskCapacity) },
        call(opts, { "x-runner-request-key": req.requestKey }),
      );
      // Forgejo 14.0.0–14.0.1 could send additional_tasks without task: take them all as one list.
      const tasks = [...(res.task ? [res.task] : []), ...res.additionalTasks];
      return { tasks, tasksVersion: res.tasksVersion };
    },

    async updateTask(state, outputs, opts) {
      const res = await runner.updateTask({ state: taskStateMessage(state), outputs: { ...outputs } }, call(opts));
      return { result: resultFromWire(res.state?.result ?? Result.UNSPECIFIED), sentOutputs: res.sentOutputs };
    },

    async updateLog(req, opts) {
      const res = await runner.updateLog(
        {
          taskId: req.taskId,
          index: BigInt(req.index),
          rows: req.rows.map((r) => create(LogRowSchema, { time: timestampFromMs(r.timeMs), content: r.content })),
          noMore: req.noMore,
        },
        call(opts),
      );
      return { ackIndex: Number(res.ackIndex) };
    },
  };
}

function runnerRecord(
  r:
    | { id: bigint; uuid: string; token: string; name: string; version: string; labels: string[]; ephemeral: boolean }
    | undefined,
): RunnerRecord {
  if (!r) return { id: 0n, uuid: "", token: "", name: "", version: "", labels: [], ephemeral: false };
  return {
    id: r.id,
    uuid: r.uuid,
    token: r.token,
    name: r.name,
    version: r.version,
    labels: r.labels,
    ephemeral: r.ephemeral,
  };
}

function taskStateMessage(s: TaskReport) {
  const ts = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));
  return create(TaskStateSchema, {
    id: s.id,
    result: RESULT_TO_WIRE[s.result],
    startedAt: ts(s.startedAtMs),
    stoppedAt: ts(s.stoppedAtMs),
    steps: s.steps.map((st, i) =>
      create(StepStateSchema, {
        id: BigInt(i),
        result: RESULT_TO_WIRE[st.result],
        startedAt: ts(st.startedAtMs),
        stoppedAt: ts(st.stoppedAtMs),
        logIndex: BigInt(st.logIndex),
        logLength: BigInt(st.logLength),
      }),
    ),
  });
}

/** The task's workflow payload as text (Forgejo sends UTF-8 YAML). */
export function taskPayloadText(task: ForgejoTask): string | undefined {
  return task.workflowPayload ? new TextDecoder().decode(task.workflowPayload) : undefined;
}

/** Needs of a task as plain data. */
export function taskNeeds(task: ForgejoTask): Record<string, { result: TaskResult; outputs: Record<string, string> }> {
  const out: Record<string, { result: TaskResult; outputs: Record<string, string> }> = {};
  for (const [id, need] of Object.entries(task.needs))
    out[id] = { result: resultFromWire(need.result), outputs: { ...need.outputs } };
  return out;
}
