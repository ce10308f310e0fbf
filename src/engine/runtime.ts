// The state of one running job (global env, PATH additions, job status, post steps, what the
// machine has) and of one scope of steps within it (the job's steps, or a composite action's),
// and how both become the contexts and functions expressions see.
import type { StepStage } from "../contract/job-event.js";
import type { JobContexts, JobSpec } from "../contract/job-request.js";
import type { Secrets } from "../contract/sealed-secrets.js";
import type { Executor } from "../executor/executor.js";
import type { Contexts, Functions, Json, Scope } from "../workflow/expressions.js";
import { statusFunctions } from "../workflow/expressions.js";
import type { NodeLocation, NodeLocator, NodeMajor } from "./action-node.js";
import type { HostGit } from "./git-fetch.js";
import type { HashFiles } from "./hash-files.js";
import type { HostActionCache } from "./host-actions.js";
import type { JobLog } from "./job-log.js";

export type Conclusion = "success" | "failure" | "cancelled" | "skipped";
export type Status = "success" | "failure" | "cancelled";

export interface StepRecord {
  readonly outputs: Readonly<Record<string, string>>;
  readonly outcome: Conclusion;
  readonly conclusion: Conclusion;
}

/** What the machine has, found once per job. */
export interface MachineFacts {
  readonly hasBash: boolean;
  readonly python: string;
  /** Path of `node`, when there is one. */
  readonly node?: string;
  readonly hasGit: boolean;
  /** PATH of the executor's base environment. */
  readonly basePath: string;
}

export interface JobPaths {
  /** GITHUB_WORKSPACE. */
  readonly workspace: string;
  /** RUNNER_WORKSPACE: the workspace's parent. */
  readonly runnerWorkspace: string;
  readonly temp: string;
  readonly toolCache: string;
  /** Where remote actions are fetched to. */
  readonly actions: string;
  /** Where the per-step file-command files live. */
  readonly fileCommands: string;
  readonly eventPath: string;
}

/** How actions/checkout gets the repository: a copy of a local directory, or git from the forge. */
export type CheckoutSource =
  /** Copy this folder (gnomon exec); `skip` leaves out paths relative to it, e.g. what git ignores. */
  | { readonly kind: "local"; readonly dir: string; readonly skip?: (relativePath: string) => boolean }
  | { readonly kind: "git" };

export interface PostStep {
  /** Index of the job step that registered it (the composite's, for nested actions). */
  readonly index: number;
  readonly name: string;
  /** The post-if condition (default always()). */
  readonly condition: string;
  readonly frame: Frame;
  readonly run: (frame: Frame, signal: AbortSignal) => Promise<Conclusion>;
}

export interface JobRuntimeInit {
  readonly spec: JobSpec;
  readonly contexts: JobContexts;
  readonly secrets: Secrets;
  readonly actionsUrl: string;
  /** ACTIONS_RUNTIME_URL and friends, for JavaScript actions only. */
  readonly runtimeEnv: Readonly<Record<string, string>>;
  readonly executor: Executor;
  readonly log: JobLog;
  readonly paths: JobPaths;
  readonly facts: MachineFacts;
  readonly checkout: CheckoutSource;
  /** git on the gnomon host, for fetches a machine without git cannot do. */
  readonly hostGit?: HostGit;
  /** The host's action cache: remote actions are fetched there and copied into the machine. */
  readonly actionCache?: HostActionCache;
  /** A URL of the job's forge as the machine reaches it; default: as it is. */
  readonly machineUrl?: (url: string) => string;
  /** Node.js beyond the machine's PATH (gnomon's runtime disks, an image's declared node). */
  readonly nodeLocator?: NodeLocator;
  readonly runnerName: string;
  /** Lowest-precedence environment, visible in the env context (e.g. ACT=true for exec). */
  readonly baseEnv: Readonly<Record<string, string>>;
  /** Aborts when the job is cancelled or times out. */
  readonly signal: AbortSignal;
  /** How long steps that still run after a cancellation may take. */
  readonly cancelTimeoutMs: number;
  readonly hashFiles: HashFiles;
}

export class JobRuntime {
  readonly spec: JobSpec;
  readonly contexts: JobContexts;
  readonly secrets: Secrets;
  readonly actionsUrl: string;
  /** ACTIONS_RUNTIME_URL and friends, for JavaScript actions only. */
  readonly runtimeEnv: Readonly<Record<string, string>>;
  readonly executor: Executor;
  readonly log: JobLog;
  readonly paths: JobPaths;
  readonly facts: MachineFacts;
  readonly checkout: CheckoutSource;
  readonly hostGit: HostGit | undefined;
  readonly actionCache: HostActionCache | undefined;
  /** A URL of the job's forge as the machine reaches it (forwarded into a VM, maybe on another port). */
  readonly machineUrl: (url: string) => string;
  /**
   * The `github` context as the machine sees it: its URLs (server_url, api_url …) as machineUrl()
   * gives them. `contexts.github` keeps the forge's own, for what runs on this host.
   */
  readonly machineGithub: Readonly<Record<string, unknown>>;
  readonly nodeLocator: NodeLocator | undefined;
  readonly runnerName: string;
  readonly signal: AbortSignal;
  readonly cancelTimeoutMs: number;
  readonly hashFiles: HashFiles;
  readonly debug: boolean;
  /** Workflow env, job env and everything set through GITHUB_ENV since, in that precedence. */
  env: Record<string, string>;
  /** GITHUB_PATH additions, newest first. */
  prependPath: string[] = [];
  /** defaults.run, job over workflow. */
  defaultShell: string | undefined;
  defaultWorkingDirectory: string | undefined;
  status: Status = "success";
  /** The name of the first job step that failed, for the job's reason. */
  firstFailure: string | undefined;
  /** The job was cancelled (or timed out); steps see cancelled(). */
  cancelled = false;
  readonly posts: PostStep[] = [];
  /** Remote actions fetched in this job: "owner/repo@ref" → their directory on the executor. */
  readonly fetchedActions = new Map<string, Promise<string>>();
  /** State saved by the pre stage of an action step, for its main and post stages (step index → state). */
  readonly preState = new Map<number, Readonly<Record<string, string>>>();
  /** Where each Node.js major is on the machine, looked up at its first JavaScript step (action-node.ts). */
  readonly nodes = new Map<NodeMajor, Promise<NodeLocation>>();

  constructor(init: JobRuntimeInit) {
    this.spec = init.spec;
    this.contexts = init.contexts;
    this.secrets = init.secrets;
    this.actionsUrl = init.actionsUrl;
    this.runtimeEnv = init.runtimeEnv;
    this.executor = init.executor;
    this.log = init.log;
    this.paths = init.paths;
    this.facts = init.facts;
    this.checkout = init.checkout;
    this.hostGit = init.hostGit;
    this.actionCache = init.actionCache;
    const machineUrl = init.machineUrl ?? ((url: string) => url);
    this.machineUrl = machineUrl;
    this.machineGithub = Object.fromEntries(
      Object.entries(init.contexts.github).map(([k, v]) => [k, typeof v === "string" ? machineUrl(v) : v]),
    );
    this.nodeLocator = init.nodeLocator;
    this.runnerName = init.runnerName;
    this.signal = init.signal;
    this.cancelTimeoutMs = init.cancelTimeoutMs;
    this.hashFiles = init.hashFiles;
    this.env = { ...init.baseEnv };
    const flag = (name: string) => init.secrets[name] === "true" || init.contexts.vars[name] === "true";
    this.debug = flag("ACTIONS_STEP_DEBUG") || flag("ACTIONS_RUNNER_DEBUG");
  }

  /** The `github` context: the job's, plus what the runner knows, plus the token from secrets. */
  githubContext(frame: Frame, extra: Readonly<Record<string, string>> = {}): Record<string, unknown> {
    const token = this.secrets["GITHUB_TOKEN"];
    return {
      ...this.machineGithub,
      workspace: this.paths.workspace,
      event_path: this.paths.eventPath,
      ...(token === undefined ? {} : { token }),
      action: frame.actionName ?? "",
      action_path: frame.action?.path ?? "",
      action_repository: frame.action?.repository ?? "",
      action_ref: frame.action?.ref ?? "",
      ...(frame.parent ? { action_status: frame.status } : {}),
      ...extra,
    };
  }

  runnerContext(): Record<string, string> {
    const p = this.executor.platform;
    return {
      name: this.runnerName,
      os: p.os,
      arch: p.arch,
      temp: this.paths.temp,
      tool_cache: this.paths.toolCache,
      workspace: this.paths.runnerWorkspace,
      environment: "self-hosted",
      ...(this.debug ? { debug: "1" } : {}),
    };
  }

  jobContext(): Record<string, unknown> {
    const given = this.contexts.job;
    const base = given !== null && typeof given === "object" && !Array.isArray(given) ? given : {};
    return { ...base, status: this.status };
  }
}

/** A scope of steps: the job's own, or the steps of one composite action run. */
export class Frame {
  /** This scope's `steps` context. */
  readonly steps = new Map<string, StepRecord>();
  /** The scope's status for success()/failure(): the job's at the top, the action's inside one. */
  private ownStatus: Status = "success";

  constructor(
    readonly job: JobRuntime,
    /** The job step whose log this scope writes to now (steps run one at a time). */
    public index: number,
    /** The stage being run: a scope's post steps run in "post". */
    public stage: StepStage,
    readonly opts: {
      readonly parent?: Frame;
      readonly inputs?: Readonly<Record<string, Json>>;
      /** env of the `uses:` steps this scope runs inside, outermost first, merged. */
      readonly envLayer?: Readonly<Record<string, string>>;
      readonly action?: { readonly path: string; readonly repository: string; readonly ref: string };
      readonly actionName?: string;
      /** Aborts when the `uses:` step running this scope is stopped (its timeout, say). */
      readonly signal?: AbortSignal;
    } = {},
  ) {}

  get parent(): Frame | undefined {
    return this.opts.parent;
  }
  get action() {
    return this.opts.action;
  }
  get actionName(): string | undefined {
    return this.opts.actionName;
  }
  get envLayer(): Readonly<Record<string, string>> {
    return this.opts.envLayer ?? {};
  }
  get signal(): AbortSignal | undefined {
    return this.opts.signal;
  }
  get depth(): number {
    return this.parent ? this.parent.depth + 1 : 0;
  }

  get status(): Status {
    if (this.job.cancelled) return "cancelled";
    return this.parent ? this.ownStatus : this.job.status;
  }

  fail(): void {
    if (this.parent) this.ownStatus = "failure";
    else if (this.job.status === "success") this.job.status = "failure";
  }

  /** A child scope for a composite action run by a step of this one. */
  child(opts: Frame["opts"]): Frame {
    return new Frame(this.job, this.index, this.stage, { ...opts, parent: this });
  }

  /** The env context for a step of this scope before its own env: global env, then enclosing uses: env. */
  baseEnv(): Record<string, string> {
    return { ...this.job.env, ...this.envLayer };
  }

  stepsContext(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [id, r] of this.steps)
      out[id] = { outputs: { ...r.outputs }, outcome: r.outcome, conclusion: r.conclusion };
    return out;
  }

  inputsContext(): Readonly<Record<string, unknown>> {
    return this.opts.inputs ?? this.job.contexts.inputs;
  }

  /** Contexts for expressions of a step in this scope, given its env context. */
  contexts(env: Readonly<Record<string, string>>, extraGithub: Readonly<Record<string, string>> = {}): Contexts {
    const j = this.job;
    return {
      github: j.githubContext(this, extraGithub),
      env,
      vars: j.contexts.vars,
      secrets: j.secrets,
      matrix: j.contexts.matrix ?? {},
      strategy: j.contexts.strategy ?? {},
      needs: j.contexts.needs,
      inputs: this.inputsContext(),
      job: j.jobContext(),
      runner: j.runnerContext(),
      steps: this.stepsContext(),
    };
  }

  /** success(), failure(), cancelled(), always() for this scope. */
  statusFunctions(): Functions {
    return statusFunctions({
      success: () => this.status === "success",
      failure: () => this.status === "failure",
      cancelled: () => this.job.cancelled,
    });
  }

  scope(env: Readonly<Record<string, string>>, functions?: Functions): Scope {
    const fns = new Map(this.statusFunctions());
    for (const [k, v] of functions ?? []) fns.set(k, v);
    return { contexts: this.contexts(env), functions: fns };
  }

  /** Writes a job log line for this scope's step. */
  line(text: string): void {
    this.job.log.line(this.index, this.stage, text);
  }
}
