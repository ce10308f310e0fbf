// Pure: a GitHub job message (spec 7) → the contract's JobRequest, plus the facts about the job the
// daemon keeps for itself (ids, endpoints, the step table, what to mask). Steps and their inputs stay
// template tokens with `${{ }}` unevaluated; secrets are sealed. No I/O, no clock (both passed in).
import { JobRequest, type JobSpec, type StepSpec } from "../../contract/job-request.js";
import { MASK_HINT_PREFIX, sealSecrets } from "../../contract/sealed-secrets.js";
import type { SerializedToken } from "../../contract/template-token.js";
import { DOCUMENT_LIMITS } from "../../workflow/document-limits.js";
import { JobMessageLimitError } from "./errors.js";
import { derivedGuid } from "./guid.js";
import { type AgentJobRequestMessage, decodeContextData, type WireStep } from "./wire.js";

/** Which service a job talks to: the run service (v2) or the classic plan hub. */
export type JobFlow = "run-service" | "classic";

export interface JobStepRef {
  /** The step's timeline record id (GUID) and `external_id`. */
  readonly recordId: string;
  /** What the UI shows until the engine reports the evaluated name. */
  readonly displayName: string;
  /** `actions/checkout` or "" for scripts; the run service's `action_name`. */
  readonly actionName: string;
  /** The ref of a repository action ("v4"), else "". */
  readonly ref: string;
  /** The `steps.<id>` key: the user's `id:` or GitHub's generated `__run_2`. */
  readonly contextName: string;
}

/** What the daemon needs to drive the job on GitHub, apart from what goes on the queue. */
export interface GitHubJob {
  readonly flow: JobFlow;
  /** The JobRequest id on the queue: GitHub's job id when it is a valid UUID, else derived from it. */
  readonly contractId: string;
  readonly jobId: string;
  readonly planId: string;
  readonly timelineId: string;
  readonly scopeIdentifier: string;
  /** `hubName` of the classic routes. */
  readonly planType: string;
  readonly planVersion: number;
  readonly requestId: number;
  readonly displayName: string;
  readonly billingOwnerId: string | undefined;
  /** SystemVssConnection: the run-service URL (v2) or the classic tenant URL. */
  readonly serviceUrl: string;
  /** The job's access token (SystemVssConnection AccessToken): renew, complete, timeline, results. */
  readonly accessToken: string;
  readonly resultsUrl: string | undefined;
  readonly feedStreamUrl: string | undefined;
  /** The cache service for actions/cache (CacheServerUrl), when GitHub gives one. */
  readonly cacheUrl: string | undefined;
  /** GitHub's flag for the v2 cache service (variable actions_uses_cache_service_v2). */
  readonly cacheServiceV2?: boolean;
  readonly steps: readonly JobStepRef[];
  /** Every value to mask before anything leaves the daemon (secrets, tokens), longest first. */
  readonly maskValues: readonly string[];
  /** Regex mask hints of the message. */
  readonly maskPatterns: readonly string[];
}

export type DescribeResult = { ok: true; job: GitHubJob } | { ok: false; reason: string };

const ZERO_GUID = "00000000-0000-0000-0000-000000000000";

/** Variables that are secret but never part of the `secrets` context (spec 7.2). */
const NOT_IN_SECRETS_CONTEXT = new Set(["system.accesstoken", "system.github.token", "github_token"]);

/** The job message variables GitHub sets when a run is re-run with debug logging (spec 7.2). */
const DEBUG_LOGGING_VARIABLES = ["ACTIONS_RUNNER_DEBUG", "ACTIONS_STEP_DEBUG"];

/** Prefix of sealed entries that are mask hints, not secrets (the contract's MASK_HINT_PREFIX). */
export const MASK_ENTRY_PREFIX = MASK_HINT_PREFIX;

function variable(msg: AgentJobRequestMessage, name: string): { value: string; isSecret: boolean } | undefined {
  const vars = msg.variables ?? {};
  const key = Object.keys(vars).find((k) => k.toLowerCase() === name.toLowerCase());
  if (key === undefined) return undefined;
  const v = vars[key]!;
  return { value: v.value ?? "", isSecret: v.isSecret === true };
}

/** The facts about a job; fails only when the message lacks what reporting on it needs. */
export function describeJob(msg: AgentJobRequestMessage, flow: JobFlow): DescribeResult {
  const endpoint = (msg.resources?.endpoints ?? []).find((e) => e.name.toLowerCase() === "systemvssconnection");
  if (!endpoint) return { ok: false, reason: "the job message has no SystemVssConnection endpoint" };
  const params = endpoint.authorization?.parameters ?? {};
  const accessToken = Object.entries(params).find(([k]) => k.toLowerCase() === "accesstoken")?.[1];
  if (!accessToken) return { ok: false, reason: "the job message carries no access token for the job" };
  const data = endpoint.data ?? {};
  const dataValue = (name: string): string | undefined => {
    const v = Object.entries(data).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
    return v ? v : undefined;
  };

  // Each value's lines and encodings are the masker's business (src/contract/secret-forms.ts).
  const maskValues = new Set<string>();
  const addMask = (v: string) => {
    const t = v.trim();
    if (t !== "") maskValues.add(t);
  };
  for (const v of Object.values(msg.variables ?? {})) if (v.isSecret && v.value) addMask(v.value);
  // git's basic-auth form of the job token, which checkout writes into .git/config as base64.
  const githubToken = variable(msg, "system.github.token") ?? variable(msg, "github_token");
  if (githubToken?.value) addMask(`x-access-token:${githubToken.value}`);
  for (const v of Object.values(params)) if (v) addMask(v);
  const maskPatterns: string[] = [];
  for (const hint of msg.mask ?? [])
    if ((hint.type === "regex" || hint.type === 0 || hint.type === "Regex") && hint.value)
      maskPatterns.push(hint.value);

  const steps = msg.steps.map((s, i) => stepRef(s, i));
  return {
    ok: true,
    job: {
      flow,
      contractId: contractJobId(msg.jobId),
      jobId: msg.jobId.toLowerCase(),
      planId: msg.plan.planId.toLowerCase(),
      timelineId: (msg.timeline?.id ?? msg.plan.planId).toLowerCase(),
      scopeIdentifier: msg.plan.scopeIdentifier || ZERO_GUID,
      planType: msg.plan.planType || "actions",
      planVersion: msg.plan.version,
      requestId: msg.requestId,
      displayName: msg.jobDisplayName || msg.jobName || "job",
      billingOwnerId: msg.billingOwnerId ?? undefined,
      serviceUrl: endpoint.url,
      accessToken,
      resultsUrl: variable(msg, "system.github.results_endpoint")?.value || dataValue("ResultsServiceUrl"),
      feedStreamUrl: dataValue("FeedStreamUrl"),
      cacheUrl: dataValue("CacheServerUrl"),
      cacheServiceV2: variable(msg, "actions_uses_cache_service_v2")?.value.toLowerCase() === "true",
      steps,
      maskValues: [...maskValues].sort((a, b) => b.length - a.length),
      maskPatterns,
    },
  };
}

/**
 * GitHub's job GUID as the contract's job id. .NET GUIDs made from hashes need not carry an RFC 4122
 * version, which the contract insists on; those get a stable UUIDv8 derived from them, so a
 * redelivered job message still maps to the same id.
 */
export function contractJobId(jobId: string): string {
  const id = jobId.toLowerCase();
  if (JobRequest.shape.id.safeParse(id).success) return id;
  return derivedGuid(`github-job:${id}`);
}

function stepRef(s: WireStep, i: number): JobStepRef {
  const r = s.reference;
  const kind = referenceKind(r.type);
  const actionName = kind === "repository" ? (r.repositoryType === "self" ? (r.path ?? "") : (r.name ?? "")) : "";
  return {
    recordId: s.id.toLowerCase(),
    displayName: s.displayName || literalOf(s.displayNameToken) || defaultStepName(s, i),
    actionName,
    ref: kind === "repository" && r.repositoryType !== "self" ? (r.ref ?? "") : "",
    contextName: s.contextName || `__${i}`,
  };
}

function literalOf(t: SerializedToken | null | undefined): string | undefined {
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && t.type === 0) return t.lit;
  return undefined;
}

function defaultStepName(s: WireStep, i: number): string {
  const kind = referenceKind(s.reference.type);
  if (kind === "repository") return `Run ${usesOf(s) ?? s.reference.name ?? "action"}`;
  if (kind === "containerRegistry") return `Run docker://${s.reference.image ?? ""}`;
  if (kind === "script") {
    const script = literalOf(mappingValue(s.inputs, "script"));
    if (script) return `Run ${script.split("\n")[0]!.slice(0, 80)}`;
  }
  return s.contextName ?? `step ${i + 1}`;
}

type RefKind = "repository" | "containerRegistry" | "script" | "unknown";

function referenceKind(t: string | number): RefKind {
  switch (typeof t === "number" ? t : t.toLowerCase()) {
    case 1:
    case "repository":
      return "repository";
    case 2:
    case "containerregistry":
      return "containerRegistry";
    case 3:
    case "script":
      return "script";
    default:
      return "unknown";
  }
}

function usesOf(s: WireStep): string | undefined {
  const r = s.reference;
  switch (referenceKind(r.type)) {
    case "repository": {
      if ((r.repositoryType ?? "").toLowerCase() === "self") {
        const p = r.path ?? "";
        return p.startsWith("./") || p.startsWith("../") ? p : `./${p}`;
      }
      if (!r.name) return undefined;
      const path = r.path ? `/${r.path.replace(/^\/+/, "")}` : "";
      return `${r.name}${path}@${r.ref ?? ""}`;
    }
    case "containerRegistry":
      return r.image ? `docker://${r.image}` : undefined;
    default:
      return undefined;
  }
}

/** The value of `key` in a mapping token whose keys are literals. */
function mappingValue(t: SerializedToken | null | undefined, key: string): SerializedToken | undefined {
  if (!t || typeof t !== "object" || t.type !== 2) return undefined;
  for (const pair of t.map) if (literalOf(pair.Key)?.toLowerCase() === key.toLowerCase()) return pair.Value;
  return undefined;
}

function nonNull(t: SerializedToken | null | undefined): SerializedToken | undefined {
  if (t === null || t === undefined) return undefined;
  if (typeof t === "object" && t.type === 7) return undefined;
  return t;
}

type StepResult = { ok: true; step: StepSpec } | { ok: false; reason: string };

function toStep(s: WireStep, ref: JobStepRef, i: number): StepResult {
  const stepType = typeof s.type === "number" ? s.type : s.type.toLowerCase();
  if (stepType !== "action" && stepType !== 4)
    return {
      ok: false,
      reason: `step ${i + 1} (${ref.displayName}) is of type ${JSON.stringify(s.type)}, which gnomon cannot run yet`,
    };
  const name = nonNull(s.displayNameToken) ?? (s.displayName ? s.displayName : undefined);
  const common = {
    id: s.contextName || `__${i}`,
    ...(name !== undefined ? { name } : {}),
    if: s.condition?.trim() || "success()",
    ...(nonNull(s.continueOnError) !== undefined ? { continueOnError: nonNull(s.continueOnError) } : {}),
    ...(nonNull(s.timeoutInMinutes) !== undefined ? { timeoutMinutes: nonNull(s.timeoutInMinutes) } : {}),
    ...(nonNull(s.environment) !== undefined ? { env: nonNull(s.environment) } : {}),
  };
  const kind = referenceKind(s.reference.type);
  if (kind === "script") {
    const run = mappingValue(s.inputs, "script");
    if (run === undefined)
      return { ok: false, reason: `step ${i + 1} (${ref.displayName}) is a script without a script` };
    const shell = mappingValue(s.inputs, "shell");
    const workingDirectory = mappingValue(s.inputs, "workingDirectory");
    return {
      ok: true,
      step: {
        ...common,
        kind: "run",
        run,
        ...(shell !== undefined ? { shell } : {}),
        ...(workingDirectory !== undefined ? { workingDirectory } : {}),
      },
    };
  }
  const uses = usesOf(s);
  if (uses === undefined)
    return {
      ok: false,
      reason: `step ${i + 1} (${ref.displayName}) refers to an action gnomon cannot read (${JSON.stringify(s.reference)})`,
    };
  const inputs = nonNull(s.inputs);
  return { ok: true, step: { ...common, kind: "uses", uses, ...(inputs !== undefined ? { with: inputs } : {}) } };
}

/** Values in a token (its mappings and sequences, keys and scalars), counting up to `max` + 1. */
function tokenNodes(t: SerializedToken | null | undefined, max: number): number {
  if (t === null || t === undefined || typeof t !== "object") return 1;
  let n = 1;
  if (t.type === 1) for (const item of t.seq) if (n <= max) n += tokenNodes(item, max - n);
  if (t.type === 2)
    for (const { Key, Value } of t.map) if (n <= max) n += tokenNodes(Key, max - n) + tokenNodes(Value, max - n);
  return n;
}

/**
 * The job's template tokens (steps, env, defaults, outputs, containers) hold at most
 * DOCUMENT_LIMITS.maxNodes values together, as a workflow file does once its aliases are expanded.
 */
function tokensOverLimit(msg: AgentJobRequestMessage): JobMessageLimitError | undefined {
  const max = DOCUMENT_LIMITS.maxNodes;
  const tokens: (SerializedToken | null | undefined)[] = [
    msg.jobOutputs,
    msg.jobContainer,
    msg.jobServiceContainers,
    ...(msg.environmentVariables ?? []),
    ...(msg.defaults ?? []),
  ];
  for (const s of msg.steps)
    tokens.push(s.displayNameToken, s.inputs, s.environment, s.continueOnError, s.timeoutInMinutes);
  let n = 0;
  for (const t of tokens) {
    n += tokenNodes(t, max - n);
    if (n > max)
      return new JobMessageLimitError("maxNodes", max, `the job's steps and settings hold more than ${max} values`);
  }
  return undefined;
}

export interface JobRequestContext {
  /** `https://github.com/o/r`, or the server URL when the registration has none (JIT). */
  readonly instance: string;
  /** The registered runner's id. */
  readonly runnerId: string;
  /** The event stream of this runner instance. */
  readonly replyTo: string;
  /** The label the job is queued under. */
  readonly runsOn: string;
  readonly clusterKey: Buffer;
  /** ISO time, passed in so the function stays pure. */
  readonly now: string;
}

export type ToJobRequestResult = { ok: true; request: JobRequest } | { ok: false; reason: string };

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function toJobRequest(msg: AgentJobRequestMessage, job: GitHubJob, ctx: JobRequestContext): ToJobRequestResult {
  const steps: StepSpec[] = [];
  for (const [i, s] of msg.steps.entries()) {
    const r = toStep(s, job.steps[i]!, i);
    if (!r.ok) return r;
    steps.push(r.step);
  }
  const cd = msg.contextData ?? {};
  const decoded = new Map<string, unknown>();
  try {
    for (const [k, v] of Object.entries(cd))
      if (!decoded.has(k.toLowerCase())) decoded.set(k.toLowerCase(), decodeContextData(v, k));
  } catch (err) {
    if (err instanceof JobMessageLimitError) return { ok: false, reason: err.message };
    throw err;
  }
  const context = (name: string): unknown => decoded.get(name);
  const tooMany = tokensOverLimit(msg);
  if (tooMany) return { ok: false, reason: tooMany.message };
  const { token: _token, ...github } = record(context("github"));
  const jobContext = record(context("job"));
  const vars = Object.fromEntries(
    Object.entries(record(context("vars"))).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
  );

  const secrets: Record<string, string> = {};
  const githubToken = variable(msg, "system.github.token") ?? variable(msg, "github_token");
  if (githubToken?.value) secrets["GITHUB_TOKEN"] = githubToken.value;
  for (const [name, v] of Object.entries(msg.variables ?? {}))
    if (v.isSecret && v.value && !NOT_IN_SECRETS_CONTEXT.has(name.toLowerCase())) secrets[name] = v.value;
  // The job's runtime token, as the official runner hands JavaScript actions ACTIONS_RUNTIME_TOKEN.
  secrets["ACTIONS_RUNTIME_TOKEN"] = job.accessToken;
  for (const [i, pattern] of job.maskPatterns.entries()) secrets[`${MASK_ENTRY_PREFIX}${i}`] = pattern;

  const spec: JobSpec = {
    workflow: {
      name: typeof github["workflow"] === "string" ? github["workflow"] : "",
      ...(typeof jobContext["workflow_file_path"] === "string"
        ? { file: jobContext["workflow_file_path"] }
        : msg.fileTable?.[0]
          ? { file: msg.fileTable[0] }
          : {}),
    },
    job: {
      id:
        variable(msg, "system.github.job")?.value ||
        (typeof github["job"] === "string" ? github["job"] : "") ||
        msg.jobName ||
        "job",
      name: job.displayName,
    },
    env: msg.environmentVariables ?? [],
    defaults: msg.defaults ?? [],
    steps,
    ...(nonNull(msg.jobOutputs) !== undefined ? { outputs: nonNull(msg.jobOutputs) } : {}),
    timeoutMinutes: 360,
    cancelTimeoutMinutes: 5,
    continueOnError: false,
    ...(nonNull(msg.jobContainer) !== undefined ? { container: nonNull(msg.jobContainer) } : {}),
    ...(nonNull(msg.jobServiceContainers) !== undefined ? { services: nonNull(msg.jobServiceContainers) } : {}),
  };

  const runtime = (name: string) => {
    const e = (msg.resources?.endpoints ?? []).find((x) => x.name.toLowerCase() === "systemvssconnection");
    return Object.entries(e?.data ?? {}).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1] || undefined;
  };
  const ref: Record<string, string | number> = {
    flow: job.flow,
    planId: job.planId,
    jobId: job.jobId,
    timelineId: job.timelineId,
    requestId: job.requestId,
    serviceUrl: job.serviceUrl,
  };
  for (const [k, v] of [
    ["runtimeUrl", runtime("PipelinesServiceUrl") ?? job.serviceUrl],
    ["resultsUrl", runtime("ResultsServiceUrl")],
    ["cacheUrl", runtime("CacheServerUrl")],
    ["idTokenUrl", runtime("GenerateIdTokenUrl")],
  ] as const)
    if (v) ref[k] = v;

  const serverUrl = typeof github["server_url"] === "string" && github["server_url"] ? github["server_url"] : undefined;
  const parsed = JobRequest.safeParse({
    v: 1,
    id: job.contractId,
    source: { forge: "github", instance: ctx.instance, runner: ctx.runnerId, ref },
    replyTo: ctx.replyTo,
    runsOn: ctx.runsOn,
    spec,
    contexts: {
      github,
      vars,
      matrix: context("matrix") ?? null,
      strategy: context("strategy") ?? null,
      needs: record(context("needs")),
      inputs: record(context("inputs")),
      ...(context("job") !== undefined ? { job: context("job") } : {}),
    },
    secrets: sealSecrets(secrets, ctx.clusterKey, job.contractId),
    actionsUrl: serverUrl ?? "https://github.com",
    // As the official runner hands them to JavaScript actions (artifacts, caches, results).
    runtime: {
      url: job.serviceUrl || undefined,
      resultsUrl: job.resultsUrl || undefined,
      cacheUrl: job.cacheUrl || undefined,
      cacheServiceV2: job.cacheServiceV2 || undefined,
    },
    // "Re-run with debug logging" sets these as plain variables, which reach no context.
    ...(DEBUG_LOGGING_VARIABLES.some((name) => /^true$/i.test(variable(msg, name)?.value.trim() ?? ""))
      ? { debugLogging: true }
      : {}),
    queuedAt: ctx.now,
  });
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return { ok: false, reason: `the job message does not make a valid job (${i?.path.join(".")}: ${i?.message})` };
  }
  return { ok: true, request: parsed.data };
}
