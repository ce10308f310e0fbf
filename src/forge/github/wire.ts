// Zod schemas for the GitHub runner protocol's JSON, as read from and written to the wire (names,
// casing and enum values as in ../shared/spec/github-runner-protocol.md). Classic (VSS) objects are
// read case-insensitively; dictionaries keep their keys. Nothing here does I/O.
import { z } from "zod";
import type { SerializedToken } from "../../contract/template-token.js";
import { DOCUMENT_LIMITS } from "../../workflow/document-limits.js";
import { JobMessageLimitError } from "./errors.js";

// ---------------------------------------------------------------- helpers

/**
 * An object schema whose property names match case-insensitively (`SessionId`, `sessionId` and
 * `sessionid` all fill `sessionId`), as the classic service and JIT config files need. Unknown
 * properties are dropped.
 */
export function caseless<T extends z.ZodRawShape>(shape: T) {
  const byLower = new Map(Object.keys(shape).map((k) => [k.toLowerCase(), k]));
  return z.preprocess((v) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return v;
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) {
      const key = byLower.get(k.toLowerCase());
      if (key !== undefined && !(key in out)) out[key] = val;
    }
    return out;
  }, z.object(shape));
}

/** A boolean that may arrive as `true`, `"True"`, `"true"`, `1` or `"1"` (JIT files, property bags). */
export const looseBool = z.union([z.boolean(), z.string(), z.number()]).transform((v) => {
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  return /^(true|1|yes)$/i.test(v.trim());
});

/** An integer that may arrive as a number or a numeric string (int64 ids, JIT files). */
export const looseInt = z.union([z.number().int(), z.string().regex(/^-?\d+$/)]).transform((v) => Number(v));

const str = z.string();
const nstr = z.string().nullish();

/** The `{"count": N, "value": [...]}` wrapper of classic collections. */
export const vssList = <T extends z.ZodType>(item: T) =>
  caseless({ count: z.number().optional(), value: z.array(item).default([]) });

// ---------------------------------------------------------------- error bodies (spec 2.4)

export const VssErrorBody = caseless({
  message: str.default(""),
  typeKey: str.default(""),
  typeName: str.optional(),
  errorCode: z.number().optional(),
});

export const BrokerErrorBody = z.object({
  source: z.literal("actions-broker-listener"),
  errorKind: str.default(""),
  statusCode: z.number().optional(),
  errorMessage: str.default(""),
});

export const RunServiceErrorBody = z.object({
  source: z.literal("actions-run-service"),
  statusCode: z.number().optional(),
  errorMessage: str.default(""),
});

export const OAuthErrorBody = z.object({ error: str, error_description: str.default("") });

// ---------------------------------------------------------------- registration (spec 3)

/** `POST <api>/actions/runner-registration` answer. */
export const RunnerRegistrationResponse = z.object({
  url: str,
  token_schema: str.default("OAuthAccessToken"),
  token: str,
  use_v2_flow: z.boolean().default(false),
});
export type RunnerRegistrationResponse = z.infer<typeof RunnerRegistrationResponse>;

export const RunnerGroupList = z.object({
  total_count: z.number().optional(),
  runner_groups: z
    .array(
      z.object({
        id: z.number().int(),
        name: str,
        default: z.boolean().default(false),
        is_hosted: z.boolean().default(false),
      }),
    )
    .default([]),
});

export const RunnerList = z.object({
  total_count: z.number().optional(),
  runners: z.array(z.object({ id: z.number().int(), name: str })).default([]),
});

/** `POST <api>/actions/runners/register` answer (runner-admin). */
export const RunnerAdminResponse = z.object({
  id: z.number().int(),
  name: str,
  authorization: z.object({
    authorization_url: str,
    server_url: str,
    client_id: str,
    legacy_authorization_url: nstr,
  }),
});
export type RunnerAdminResponse = z.infer<typeof RunnerAdminResponse>;

export const AgentLabel = z.object({ id: z.number().int().default(0), name: str, type: z.enum(["system", "user"]) });
export type AgentLabel = z.infer<typeof AgentLabel>;

export const TaskAgentPool = caseless({
  id: z.number().int(),
  name: str,
  isHosted: z.boolean().default(false),
  isInternal: z.boolean().default(false),
});
export type TaskAgentPool = z.infer<typeof TaskAgentPool>;

/** A property bag value: a bare scalar or `{"$type": "System.Boolean", "$value": true}`. */
const PropertyValue = z
  .unknown()
  .transform((v): unknown =>
    typeof v === "object" && v !== null && "$value" in v ? (v as { $value: unknown }).$value : v,
  );

export const TaskAgent = caseless({
  id: z.number().int(),
  name: str,
  ephemeral: z.boolean().nullish(),
  disableUpdate: z.boolean().nullish(),
  authorization: caseless({ authorizationUrl: nstr, clientId: nstr }).nullish(),
  properties: z.record(z.string(), PropertyValue).nullish(),
});
export type TaskAgent = z.infer<typeof TaskAgent>;

/** What we send to create (id 0) or replace a classic agent. */
export interface TaskAgentBody {
  readonly id: number;
  readonly name: string;
  readonly version: string;
  readonly osDescription: string;
  readonly maxParallelism: 1;
  readonly ephemeral: boolean;
  readonly disableUpdate: boolean;
  readonly enabled: true;
  readonly status: "online";
  readonly provisioningState: "Provisioned";
  readonly createdOn: string;
  readonly authorization: { readonly publicKey: { readonly exponent: string; readonly modulus: string } };
  readonly labels: readonly AgentLabel[];
}

// ---------------------------------------------------------------- OAuth (spec 4)

export const TokenResponse = z.object({
  access_token: str.min(1),
  token_type: str.optional(),
  expires_in: z
    .union([z.number(), z.string().regex(/^\d+$/)])
    .transform(Number)
    .default(3600),
});

// ---------------------------------------------------------------- sessions and messages (spec 5, 6)

export const TaskAgentSessionResponse = caseless({
  sessionId: str,
  encryptionKey: caseless({ encrypted: z.boolean().default(false), value: str }).nullish(),
  useFipsEncryption: z.boolean().nullish(),
});
export type TaskAgentSessionResponse = z.infer<typeof TaskAgentSessionResponse>;

/** A message from the classic queue or the broker; `body` is decrypted by the session. */
export const TaskAgentMessage = caseless({
  messageId: looseInt,
  messageType: str,
  iv: nstr,
  body: str.default(""),
});
export type TaskAgentMessage = z.infer<typeof TaskAgentMessage>;

export const RunnerJobRequestRef = z.object({
  id: nstr,
  runner_request_id: str.min(1),
  should_acknowledge: z.boolean().default(false),
  run_service_url: nstr,
  billing_owner_id: nstr,
});
export type RunnerJobRequestRef = z.infer<typeof RunnerJobRequestRef>;

/** `"hh:mm:ss"`, optionally with days (`"1.00:00:00"`) and fractions, in milliseconds. */
export const TimeSpan = z
  .string()
  .regex(/^(?:(\d+)\.)?(\d+):(\d{2}):(\d{2})(?:\.\d+)?$/)
  .transform((s) => {
    const m = /^(?:(\d+)\.)?(\d+):(\d{2}):(\d{2})/.exec(s)!;
    return ((Number(m[1] ?? 0) * 24 + Number(m[2])) * 3600 + Number(m[3]) * 60 + Number(m[4])) * 1000;
  });

export const JobCancelMessage = caseless({ jobId: str, timeout: TimeSpan.nullish() });
export const BrokerMigrationMessage = caseless({ brokerBaseUrl: str });

// ---------------------------------------------------------------- job lifecycle (spec 6.4, 8)

export const RenewJobResponse = caseless({ lockedUntil: str });
export const TaskAgentJobRequest = caseless({ requestId: looseInt.optional(), lockedUntil: nstr });

export const TaskLog = caseless({ id: z.number().int(), lineCount: looseInt.nullish(), path: nstr });
export type TaskLog = z.infer<typeof TaskLog>;

export const ConnectionData = caseless({
  locationServiceData: caseless({
    serviceDefinitions: z
      .array(
        caseless({
          serviceType: str.default(""),
          identifier: str,
          displayName: str.default(""),
          relativePath: str.default(""),
          resourceVersion: z.number().default(0),
        }),
      )
      .default([]),
  }).nullish(),
});
export type ConnectionData = z.infer<typeof ConnectionData>;

export const SignedLogUrl = z.object({
  logs_url: str.min(1),
  blob_storage_type: str.default("BLOB_STORAGE_TYPE_UNSPECIFIED"),
  soft_size_limit: z.union([z.string(), z.number()]).optional(),
});

/** TaskResult, as both the classic service and the run service spell it (spec 8.7). */
export type TaskResult = "succeeded" | "succeededWithIssues" | "failed" | "canceled" | "skipped" | "abandoned";
export type TimelineRecordState = "pending" | "inProgress" | "completed";

export interface TimelineIssue {
  readonly type: "error" | "warning" | "notice";
  readonly category: "General";
  readonly message: string;
  readonly isInfrastructureIssue: boolean;
  readonly data: Readonly<Record<string, string>>;
}

export interface TimelineRecordBody {
  readonly id: string;
  readonly parentId: string | null;
  readonly type: "Job" | "Task";
  readonly name: string;
  readonly refName: string;
  readonly order: number;
  readonly state: TimelineRecordState;
  readonly result: TaskResult | null;
  readonly startTime: string | null;
  readonly finishTime: string | null;
  readonly workerName: string;
  readonly log: { readonly id: number } | null;
  readonly errorCount: number;
  readonly warningCount: number;
  readonly noticeCount: number;
  readonly issues: readonly TimelineIssue[];
}

/** Results service step states and conclusions (integers, spec 6.5). */
export const ResultsStatus = { unknown: 0, inProgress: 3, pending: 5, completed: 6 } as const;
export const ResultsConclusion = { unknown: 0, success: 2, failure: 3, cancelled: 4, skipped: 7 } as const;

export interface RunServiceAnnotation {
  readonly level: "NOTICE" | "WARNING" | "FAILURE";
  readonly message: string;
  readonly title?: string;
  readonly path?: string;
  readonly isInfrastructureIssue: boolean;
  readonly startLine?: number;
  readonly endLine?: number;
  readonly startColumn?: number;
  readonly endColumn?: number;
  readonly stepNumber?: number;
}

// ---------------------------------------------------------------- template tokens and context data (spec 7.3, 7.5)

/** Why a token could not be read, or the token in the contract's serialized form. */
export type TokenResult = { ok: true; token: SerializedToken } | { ok: false; problem: string };

/** Looks up a property case-insensitively (`Key`/`key`, `Value`/`value`). */
function prop(o: Record<string, unknown>, name: string): unknown {
  if (name in o) return o[name];
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(o)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/**
 * GitHub's template token JSON → the contract's serialized token. Differences handled: position
 * fields are dropped, empty `seq`/`map`/`lit` and default `bool`/`num` may be omitted, mapping pairs
 * may be `Key`/`Value` or `key`/`value`, an insert expression carries `directive`, and an object
 * without `type` is a string. Sequences and mappings may nest DOCUMENT_LIMITS.maxDepth deep, as in
 * a workflow file: deeper is refused before the recursion could exhaust the stack.
 */
export function toSerializedToken(raw: unknown, path = "token", depth = 1): TokenResult {
  if (raw === null || typeof raw === "string" || typeof raw === "number" || typeof raw === "boolean")
    return { ok: true, token: raw };
  if (typeof raw !== "object" || Array.isArray(raw)) return { ok: false, problem: `${path} is not a template token` };
  const o = raw as Record<string, unknown>;
  const type = prop(o, "type");
  const lit = prop(o, "lit");
  const max = DOCUMENT_LIMITS.maxDepth;
  if ((type === 1 || type === 2) && depth > max)
    return {
      ok: false,
      problem: `${path.length > 80 ? `${path.slice(0, 80)}…` : path} nests more than ${max} mappings and sequences deep, over gnomon's limit of ${max} (maxDepth)`,
    };
  switch (type) {
    case undefined:
    case 0:
      return { ok: true, token: typeof lit === "string" ? lit : "" };
    case 1: {
      const seq = prop(o, "seq") ?? [];
      if (!Array.isArray(seq)) return { ok: false, problem: `${path}.seq is not a list` };
      const out: SerializedToken[] = [];
      for (const [i, item] of seq.entries()) {
        const r = toSerializedToken(item, `${path}.seq[${i}]`, depth + 1);
        if (!r.ok) return r;
        out.push(r.token);
      }
      return { ok: true, token: { type: 1, seq: out } };
    }
    case 2: {
      const map = prop(o, "map") ?? [];
      if (!Array.isArray(map)) return { ok: false, problem: `${path}.map is not a list` };
      const out: { Key: SerializedToken; Value: SerializedToken }[] = [];
      for (const [i, pair] of map.entries()) {
        if (typeof pair !== "object" || pair === null) return { ok: false, problem: `${path}.map[${i}] is not a pair` };
        const k = toSerializedToken(prop(pair as Record<string, unknown>, "Key"), `${path}.map[${i}].Key`, depth + 1);
        if (!k.ok) return k;
        const v = toSerializedToken(
          prop(pair as Record<string, unknown>, "Value"),
          `${path}.map[${i}].Value`,
          depth + 1,
        );
        if (!v.ok) return v;
        out.push({ Key: k.token, Value: v.token });
      }
      return { ok: true, token: { type: 2, map: out } };
    }
    case 3: {
      const expr = prop(o, "expr");
      if (typeof expr !== "string") return { ok: false, problem: `${path} is an expression without text` };
      return { ok: true, token: { type: 3, expr } };
    }
    case 4: {
      const directive = prop(o, "directive") ?? prop(o, "expr") ?? "insert";
      return { ok: true, token: { type: 4, expr: String(directive) } };
    }
    case 5:
      return { ok: true, token: { type: 5, bool: prop(o, "bool") === true } };
    case 6: {
      const num = prop(o, "num") ?? 0;
      if (typeof num !== "number") return { ok: false, problem: `${path}.num is not a number` };
      return { ok: true, token: { type: 6, num } };
    }
    case 7:
      return { ok: true, token: { type: 7 } };
    default:
      return { ok: false, problem: `${path} has unknown token type ${JSON.stringify(type)}` };
  }
}

/** A template token field of the job message, converted to the contract's form while parsing. */
export const WireToken = z.unknown().transform((v, ctx): SerializedToken => {
  const r = toSerializedToken(v);
  if (r.ok) return r.token;
  ctx.addIssue({ code: "custom", message: r.problem });
  return z.NEVER;
});

/**
 * PipelineContextData (spec 7.3) → plain JSON. Dictionaries keep their pair order; `t` 0 string,
 * 1 array, 2 and 5 dictionary, 3 boolean, 4 number; an object without `t` is a string. Arrays and
 * dictionaries may nest DOCUMENT_LIMITS.maxDepth deep; deeper throws JobMessageLimitError.
 */
export function decodeContextData(raw: unknown, name = "context", depth = 1): unknown {
  if (raw === null || typeof raw !== "object") return raw;
  const max = DOCUMENT_LIMITS.maxDepth;
  const o = raw as Record<string, unknown>;
  const t = Array.isArray(raw) ? 1 : prop(o, "t");
  if ((t === 1 || t === 2 || t === 5) && depth > max)
    throw new JobMessageLimitError(
      "maxDepth",
      max,
      `the ${name} context of the job message nests more than ${max} arrays and objects deep`,
    );
  const decode = (v: unknown) => decodeContextData(v, name, depth + 1);
  if (Array.isArray(raw)) return raw.map(decode);
  switch (t) {
    case 1: {
      const a = prop(o, "a");
      return Array.isArray(a) ? a.map(decode) : [];
    }
    case 2:
    case 5: {
      const out: Record<string, unknown> = {};
      const d = prop(o, "d");
      if (Array.isArray(d))
        for (const pair of d) {
          if (typeof pair !== "object" || pair === null) continue;
          const k = prop(pair as Record<string, unknown>, "k");
          if (typeof k === "string") out[k] = decode(prop(pair as Record<string, unknown>, "v"));
        }
      return out;
    }
    case 3:
      return prop(o, "b") === true;
    case 4: {
      const n = prop(o, "n");
      return typeof n === "number" ? n : 0;
    }
    default: {
      const s = prop(o, "s");
      return typeof s === "string" ? s : "";
    }
  }
}

// ---------------------------------------------------------------- the job message (spec 7)

export const ServiceEndpoint = caseless({
  name: str,
  url: str,
  authorization: caseless({
    scheme: str.optional(),
    parameters: z.record(z.string(), z.string()).default({}),
  }).nullish(),
  data: z.record(z.string(), z.string().nullable()).nullish(),
});

export const StepReference = caseless({
  type: z.union([z.string(), z.number()]),
  name: nstr,
  ref: nstr,
  repositoryType: nstr,
  path: nstr,
  image: nstr,
});

export const WireStep = caseless({
  type: z.union([z.string(), z.number()]).default("action"),
  id: str,
  name: nstr,
  displayName: nstr,
  displayNameToken: WireToken.nullish(),
  contextName: nstr,
  reference: StepReference,
  inputs: WireToken.nullish(),
  environment: WireToken.nullish(),
  condition: nstr,
  continueOnError: WireToken.nullish(),
  timeoutInMinutes: WireToken.nullish(),
});
export type WireStep = z.infer<typeof WireStep>;

export const AgentJobRequestMessage = caseless({
  messageType: str.default("PipelineAgentJobRequest"),
  plan: caseless({
    scopeIdentifier: str.default("00000000-0000-0000-0000-000000000000"),
    planType: str.default("actions"),
    version: z.number().default(0),
    planId: str,
  }),
  timeline: caseless({ id: str }).nullish(),
  jobId: str,
  jobDisplayName: str.default(""),
  jobName: str.default(""),
  requestId: looseInt.default(0),
  lockedUntil: nstr,
  jobContainer: WireToken.nullish(),
  jobServiceContainers: WireToken.nullish(),
  jobOutputs: WireToken.nullish(),
  resources: caseless({ endpoints: z.array(ServiceEndpoint).default([]) }).nullish(),
  contextData: z.record(z.string(), z.unknown()).nullish(),
  mask: z.array(caseless({ type: z.union([z.string(), z.number()]), value: str })).nullish(),
  environmentVariables: z.array(WireToken).nullish(),
  defaults: z.array(WireToken).nullish(),
  variables: z.record(z.string(), caseless({ value: nstr, isSecret: z.boolean().nullish() })).nullish(),
  steps: z.array(WireStep).default([]),
  fileTable: z.array(str).nullish(),
  billingOwnerId: nstr,
});
export type AgentJobRequestMessage = z.infer<typeof AgentJobRequestMessage>;

// ---------------------------------------------------------------- the local files (spec 3.6, 3.7)

/** `.runner`: written with the official runner's camelCase names, read case-insensitively. */
export const RunnerSettingsFile = caseless({
  agentId: looseInt,
  agentName: str,
  poolId: looseInt.default(0),
  poolName: str.default(""),
  serverUrl: str.default(""),
  gitHubUrl: str.default(""),
  workFolder: str.default("_work"),
  disableUpdate: looseBool.default(true),
  ephemeral: looseBool.default(false),
  useV2Flow: looseBool.default(false),
  useRunnerAdminFlow: looseBool.default(false),
  serverUrlV2: str.default(""),
  /** gnomon's own addition: the labels the runner registered with (the official runner keeps none). */
  labels: z.array(str).default([]),
});
export type RunnerSettingsFile = z.infer<typeof RunnerSettingsFile>;

export const CredentialsFile = caseless({
  scheme: str,
  data: caseless({
    clientId: str,
    authorizationUrl: str,
    oauthEndpointUrl: str.optional(),
    requireFipsCryptography: looseBool.default(true),
    authorizationUrlV2: str.optional(),
    enableAuthMigrationByDefault: looseBool.default(false),
  }),
});
export type CredentialsFile = z.infer<typeof CredentialsFile>;

const b64 = z.string().min(1);
export const RsaParamsFile = caseless({
  d: b64,
  dp: b64,
  dq: b64,
  exponent: b64,
  inverseQ: b64,
  modulus: b64,
  p: b64,
  q: b64,
});
export type RsaParamsFile = z.infer<typeof RsaParamsFile>;

/** The decoded `encoded_jit_config`: file name → base64 of the file. */
export const JitConfig = z.record(z.string(), z.string());
