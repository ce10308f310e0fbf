// executeJob: one Actions job over an Executor, as GitHub runs it: set up (machine facts, paths,
// job env and defaults), pre steps, the steps, post steps in reverse, job outputs, and the
// result. Emits contract JobEvents (masked) through `emit`; knows no forge, queue or VM, and
// never closes the executor (its owner does).
import type { JobResult } from "../contract/job-event.js";
import type { JobContexts, JobRequest, JobSpec } from "../contract/job-request.js";
import type { Secrets } from "../contract/sealed-secrets.js";
import type { Executor } from "../executor/executor.js";
import { WorkflowError } from "../workflow/errors.js";
import {
  coerceString,
  evaluateCondition,
  evaluateStringMap,
  evaluateToken,
  type Json,
} from "../workflow/expressions.js";
import type { NodeLocator } from "./action-node.js";
import { HostGit } from "./git-fetch.js";
import { HashFiles } from "./hash-files.js";
import type { HostActionCache } from "./host-actions.js";
import { type Emit, JobLog } from "./job-log.js";
import { Masker, splitMaskHints } from "./masker.js";
import {
  type CheckoutSource,
  type Conclusion,
  Frame,
  type JobPaths,
  JobRuntime,
  type MachineFacts,
} from "./runtime.js";
import { annotate } from "./step-output.js";
import { errorMessage, evaluateIn, runSteps } from "./step-runner.js";
import { runPreSteps } from "./uses-step.js";

/** The job to run: a JobRequest's spec, contexts and actions URL, with its secrets opened. */
export interface JobInput {
  readonly spec: JobSpec;
  readonly contexts: JobContexts;
  readonly secrets: Secrets;
  /** Where `uses: owner/repo@ref` is fetched from. */
  readonly actionsUrl: string;
  /** The forge's Actions service URLs for JavaScript actions (JobRequest.runtime). */
  readonly runtime?: JobRequest["runtime"];
}

/** The engine's input for a queued JobRequest, given its secrets opened with openSecrets(). */
export function jobInputOf(request: JobRequest, secrets: Secrets): JobInput {
  return {
    spec: request.spec,
    contexts: request.contexts,
    secrets,
    actionsUrl: request.actionsUrl,
    runtime: request.runtime,
  };
}

export interface EngineOptions {
  readonly executor: Executor;
  /** Receives every event body in order; the caller stamps them (src/orchestrator/event-stream.ts). */
  readonly emit: Emit;
  /** Cancels the job: running steps stop, always()/cancelled() steps and post steps still run. */
  readonly signal: AbortSignal;
  /** How actions/checkout gets the code (default: git from github.server_url). */
  readonly checkout?: CheckoutSource;
  /**
   * An executor on the gnomon host, made only when needed: a machine without git then has
   * actions/checkout and remote actions fetched on the host and uploaded (the host needs git).
   */
  readonly hostGit?: () => Promise<Executor>;
  /**
   * The gnomon host's action cache: `uses: owner/repo@ref` is fetched there once per commit and
   * copied into the machine (no git or network needed in it). Without it, actions are fetched with
   * git where git runs (the machine, or the host for a machine without git).
   */
  readonly actionCache?: HostActionCache;
  /**
   * A URL of the job's forge as the machine reaches it, when that differs from the forge's own (its
   * forge on the host, forwarded into a VM on another port). Steps, their env and git on the
   * machine get these; what runs on this host uses the forge's own URLs. Default: as it is.
   */
  readonly machineUrl?: (url: string) => string;
  /**
   * Node.js for JavaScript actions beyond the machine's PATH: the runtime gnomon delivered into the
   * VM, or an image's declared one. Without it, a JavaScript action needs the right node on PATH.
   */
  readonly node?: NodeLocator;
  /** Environment below workflow env, in the env context too (e.g. ACT=true, FORGEJO_ACTIONS=true). */
  readonly baseEnv?: Readonly<Record<string, string>>;
  /**
   * What to do with `container:`/`services:`. "fail" (default): VMs run no job containers, so
   * the job fails saying so. "run-on-executor": run the steps directly on the executor with the
   * container's env and default shell, after a warning (explicit host runs only).
   */
  readonly jobContainer?: "fail" | "run-on-executor";
  /** runner.name. */
  readonly runnerName?: string;
  readonly now?: () => number;
}

export interface JobOutcome {
  readonly result: JobResult;
  readonly outputs: Readonly<Record<string, string>>;
  readonly reason?: string;
}

const PROBE = String.raw`printf 'path=%s\n' "$PATH"
command -v bash >/dev/null 2>&1 && echo bash=yes
if command -v python >/dev/null 2>&1; then echo python=python; elif command -v python3 >/dev/null 2>&1; then echo python=python3; fi
n=$(command -v node 2>/dev/null) && echo "node=$n"
command -v git >/dev/null 2>&1 && echo git=yes
exit 0
`;

async function machineFacts(executor: Executor, signal: AbortSignal): Promise<MachineFacts> {
  const found: Record<string, string> = {};
  const r = await executor.run({
    argv: ["sh", "-c", PROBE],
    env: {},
    cwd: executor.platform.tempDir,
    signal,
    onLine: (stream, line) => {
      const eq = line.indexOf("=");
      if (stream === "stdout" && eq > 0) found[line.slice(0, eq)] = line.slice(eq + 1);
    },
  });
  if (r.exitCode !== 0)
    throw new Error(
      `the machine could not run sh (exit ${r.exitCode ?? r.signal}); gnomon needs a POSIX sh on the executor`,
    );
  return {
    hasBash: found["bash"] === "yes",
    python: found["python"] ?? "python",
    node: found["node"] || undefined,
    hasGit: found["git"] === "yes",
    basePath: found["path"] ?? "/usr/bin:/bin",
  };
}

function jobPaths(executor: Executor, contexts: JobContexts, spec: JobSpec): JobPaths {
  const p = executor.platform;
  const repo = String(contexts.github["repository"] ?? "");
  const name = (repo.split("/")[1] ?? "") || spec.job.id;
  const runnerWorkspace = `${p.workDir}/${name}`;
  return {
    workspace: `${runnerWorkspace}/${name}`,
    runnerWorkspace,
    temp: p.tempDir,
    toolCache: p.toolCacheDir,
    actions: `${p.workDir}/_actions`,
    fileCommands: `${p.tempDir}/_runner_file_commands`,
    eventPath: `${p.tempDir}/_github_workflow/event.json`,
  };
}

const reasonOf = (signal: AbortSignal, fallback: string) =>
  signal.reason instanceof Error && !(signal.reason.name === "AbortError" || signal.reason.name === "TimeoutError")
    ? signal.reason.message
    : fallback;

/** What JavaScript actions get to reach the forge's Actions services, as the official runner sets it. */
function runtimeEnv(
  runtime: NonNullable<JobInput["runtime"]>,
  secrets: Readonly<Record<string, string>>,
  machineUrl: (url: string) => string,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (runtime.url) env["ACTIONS_RUNTIME_URL"] = machineUrl(runtime.url);
  if (runtime.resultsUrl) env["ACTIONS_RESULTS_URL"] = machineUrl(runtime.resultsUrl);
  if (runtime.cacheUrl) env["ACTIONS_CACHE_URL"] = machineUrl(runtime.cacheUrl);
  if (runtime.cacheServiceV2) env["ACTIONS_CACHE_SERVICE_V2"] = "True";
  const token = secrets["ACTIONS_RUNTIME_TOKEN"];
  if (token && runtime.url) env["ACTIONS_RUNTIME_TOKEN"] = token;
  return env;
}

/** Runs one job to its end; never throws for anything the job did (that is its result). */
export async function executeJob(input: JobInput, opts: EngineOptions): Promise<JobOutcome> {
  const hostGit = opts.hostGit ? new HostGit(opts.hostGit) : undefined;
  try {
    return await execute(input, opts, hostGit);
  } finally {
    await hostGit?.close();
  }
}

async function execute(input: JobInput, opts: EngineOptions, hostGit: HostGit | undefined): Promise<JobOutcome> {
  const { spec, contexts } = input;
  const { secrets, patterns } = splitMaskHints(input.secrets);
  const masker = new Masker();
  for (const v of Object.values(secrets)) masker.add(v);
  for (const p of patterns) masker.addPattern(p);
  const log = new JobLog(opts.emit, masker, { now: opts.now });
  const jobLine = (text: string) => log.line(null, "main", text);
  const timeout = AbortSignal.timeout(spec.timeoutMinutes * 60_000);
  const signal = AbortSignal.any([opts.signal, timeout]);
  // The reason travels in job-finished only: every reporter shows it there (Forgejo's closing line,
  // GitHub's error, exec's summary), so a log line of it here would show it twice.
  const finish = (result: JobResult, outputs: Readonly<Record<string, string>>, reason?: string): JobOutcome => {
    log.event({ kind: "job-finished", result, outputs: { ...outputs }, reason });
    log.flush();
    return { result, outputs, reason: reason === undefined ? undefined : masker.mask(reason) };
  };

  const executor = opts.executor;
  const p = executor.platform;
  jobLine(`Runner: ${opts.runnerName ?? executor.name} (${p.os} ${p.arch}, executor ${executor.name})`);
  let job: JobRuntime;
  try {
    const facts = await machineFacts(executor, signal);
    const paths = jobPaths(executor, contexts, spec);
    for (const dir of [paths.workspace, paths.temp, paths.fileCommands, paths.actions]) await executor.mkdirp(dir);
    await executor.writeFile(paths.eventPath, JSON.stringify(contexts.github["event"] ?? {}));
    job = new JobRuntime({
      spec,
      contexts,
      secrets,
      actionsUrl: input.actionsUrl,
      runtimeEnv: runtimeEnv(input.runtime ?? {}, secrets, opts.machineUrl ?? ((url) => url)),
      executor,
      log,
      paths,
      facts,
      checkout: opts.checkout ?? { kind: "git" },
      hostGit,
      actionCache: opts.actionCache,
      machineUrl: opts.machineUrl,
      nodeLocator: opts.node,
      runnerName: opts.runnerName ?? executor.name,
      baseEnv: opts.baseEnv ?? {},
      signal,
      cancelTimeoutMs: spec.cancelTimeoutMinutes * 60_000,
      hashFiles: new HashFiles(executor, paths.workspace),
    });
  } catch (err) {
    if (opts.signal.aborted) return finish("cancelled", {}, reasonOf(opts.signal, "the job was cancelled"));
    return finish("failure", {}, `setting up the job failed: ${errorMessage(err)}`);
  }
  const top = new Frame(job, 0, "main");
  const onAbort = () => {
    job.cancelled = true;
    job.status = "cancelled";
  };
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();

  try {
    const setupError = await setUp(job, top, opts.jobContainer ?? "fail");
    if (setupError) return finish("failure", {}, setupError);
    await runPreSteps(top, spec.steps);
    top.stage = "main";
    await runSteps(top, spec.steps, true);
    await runPostSteps(job);
    const outputs = await jobOutputs(job, top);
    if (opts.signal.aborted) return finish("cancelled", outputs, reasonOf(opts.signal, "the job was cancelled"));
    if (timeout.aborted)
      return finish(
        "failure",
        outputs,
        `The job has exceeded the maximum execution time of ${spec.timeoutMinutes} minutes.`,
      );
    if (job.status === "success") return finish("success", outputs);
    return finish("failure", outputs, job.firstFailure ? `the step '${job.firstFailure}' failed` : undefined);
  } catch (err) {
    // A bug or a lost executor: the job still ends with a result and a reason.
    return finish(signal.aborted ? "cancelled" : "failure", {}, `the job stopped: ${errorMessage(err)}`);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Job env, defaults.run and job containers; returns why the job cannot start, if it cannot. */
async function setUp(job: JobRuntime, top: Frame, containers: "fail" | "run-on-executor"): Promise<string | undefined> {
  const spec = job.spec;
  const where = `${spec.workflow.file ?? spec.workflow.name}: jobs.${spec.job.id}`;
  try {
    for (const token of spec.env) {
      const env = await evaluateIn(top, job.env, (s) => evaluateStringMap(token, s), job.signal);
      job.env = { ...job.env, ...env };
    }
  } catch (err) {
    return `${where}.env: ${errorMessage(err)}`;
  }
  if (spec.container !== undefined || spec.services !== undefined) {
    const what = spec.container !== undefined ? "a job container (`container:`)" : "service containers (`services:`)";
    if (containers === "fail" || spec.services !== undefined)
      return `${where} asks for ${what}; gnomon runs each job directly on a fresh VM, with no container runtime there. Remove it and pick a runs-on label whose image has what the job needs.`;
    const container = evaluateToken(spec.container ?? null, top.scope(job.env));
    const image =
      typeof container === "string"
        ? container
        : coerceString((container as Record<string, Json> | null)?.["image"] ?? "");
    annotate(
      top,
      "warning",
      `${where} asks for the job container ${image}; this host executor has no container runtime, so the steps run directly on the host with the container's env and \`sh\` as their default shell.`,
    );
    const env = isRecord(container) ? container["env"] : undefined;
    if (env !== undefined && isRecord(env))
      for (const [k, v] of Object.entries(env)) job.env = { ...job.env, [k]: coerceString(v ?? null) };
    job.defaultShell = "sh";
  }
  try {
    for (const token of spec.defaults) {
      const d = evaluateToken(token, top.scope(job.env));
      const run = isRecord(d) ? d["run"] : undefined;
      if (run === undefined || !isRecord(run)) continue;
      if (run["shell"] !== undefined) job.defaultShell = coerceString(run["shell"]);
      if (run["working-directory"] !== undefined) job.defaultWorkingDirectory = coerceString(run["working-directory"]);
    }
  } catch (err) {
    return `${where}.defaults: ${errorMessage(err)}`;
  }
  return undefined;
}

function isRecord(v: Json): v is { [key: string]: Json } {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Post steps, last registered first, each with its post-if (always() by default). */
async function runPostSteps(job: JobRuntime): Promise<void> {
  for (const post of [...job.posts].reverse()) {
    const frame = post.frame;
    frame.index = post.index;
    frame.stage = "post";
    job.log.event({ kind: "step-started", step: post.index, stage: "post", name: post.name });
    let result: Conclusion = "skipped";
    try {
      const run = evaluateCondition(post.condition, frame.scope(frame.baseEnv()));
      if (run) {
        const signal = job.cancelled ? AbortSignal.timeout(job.cancelTimeoutMs) : job.signal;
        result = await post.run(frame, signal);
      }
    } catch (err) {
      annotate(frame, "error", errorMessage(err));
      result = "failure";
    }
    if (result === "failure" && job.status === "success") job.status = "failure";
    job.log.event({
      kind: "step-finished",
      step: post.index,
      stage: "post",
      outcome: result,
      conclusion: result,
      outputs: {},
    });
  }
}

/** The job's `outputs:`, evaluated at its end; an output that would reveal a secret is dropped. */
async function jobOutputs(job: JobRuntime, top: Frame): Promise<Record<string, string>> {
  if (job.spec.outputs === undefined) return {};
  top.stage = "main";
  const out: Record<string, string> = {};
  let raw: Record<string, string>;
  try {
    raw = evaluateStringMap(job.spec.outputs, top.scope(top.baseEnv()));
  } catch (err) {
    const reason = err instanceof WorkflowError ? err.message : errorMessage(err);
    for (const line of `the job's outputs could not be evaluated: ${reason}`.split(/\r?\n/))
      job.log.line(null, "main", `##[error]${line}`);
    job.status = job.status === "cancelled" ? "cancelled" : "failure";
    return {};
  }
  for (const [k, v] of Object.entries(raw)) {
    if (job.log.masker.reveals(v)) {
      job.log.line(null, "main", `##[warning]Skip output '${k}' since it may contain secret.`);
      continue;
    }
    out[k] = v;
  }
  return out;
}
