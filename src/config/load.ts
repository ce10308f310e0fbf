// Loads configuration: a YAML file, then the explicit environment table, then command-line flags,
// each overriding the one before; parsed once by the schema. A bad value becomes a ConfigError that
// names the key, where it came from, the problem and the fix.
import { readFileSync } from "node:fs";
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { z } from "zod";
import { Config } from "./schema.js";

type Kind = "string" | "int" | "bool" | "list";

/** The whole list of environment variables gnomon reads; docs/configuration.md documents it. */
export const ENV_KEYS: Readonly<Record<string, readonly [path: string, kind: Kind]>> = {
  GNOMON_LOG_LEVEL: ["logLevel", "string"],
  GNOMON_LOG_FORMAT: ["logFormat", "string"],
  GNOMON_DATA_DIR: ["dataDir", "string"],
  AMQP_URL: ["amqpUrl", "string"],
  GNOMON_AMQP_URL: ["amqpUrl", "string"],
  GNOMON_AMQP_PREFIX: ["amqpPrefix", "string"],
  DATABASE_URL: ["databaseUrl", "string"],
  GNOMON_DATABASE_URL: ["databaseUrl", "string"],
  GNOMON_CLUSTER_KEY: ["clusterKey", "string"],
  GNOMON_SHUTDOWN_TIMEOUT: ["shutdownTimeout", "string"],
  GNOMON_ORCHESTRATOR_SILENCE: ["orchestratorSilence", "string"],
  GNOMON_MAX_VMS: ["orchestrator.maxVms", "int"],
  GNOMON_CPUS: ["orchestrator.cpus", "int"],
  GNOMON_MEMORY_MIB: ["orchestrator.memoryMiB", "int"],
  GNOMON_LABELS: ["orchestrator.labels", "list"],
  GNOMON_LEASE_TTL: ["orchestrator.leaseTtl", "string"],
  GNOMON_HEARTBEAT_INTERVAL: ["orchestrator.heartbeatInterval", "string"],
  GNOMON_DRAIN_TIMEOUT: ["orchestrator.drainTimeout", "string"],
  GNOMON_METRICS_LISTEN: ["orchestrator.metricsListen", "string"],
  GNOMON_ALLOW_HOST_LABELS: ["orchestrator.allowHostLabels", "bool"],
  GNOMON_EGRESS_DENY_NETWORKS: ["orchestrator.egress.denyNetworks", "list"],
  GNOMON_EGRESS_ALLOW_NETWORKS: ["orchestrator.egress.allowNetworks", "list"],
  GNOMON_ACTION_CACHE_MAX_AGE: ["orchestrator.actionCache.maxAge", "string"],
  GNOMON_ACTION_CACHE_MAX_SIZE_MIB: ["orchestrator.actionCache.maxSizeMiB", "int"],
  GNOMON_CACHE_ENABLED: ["orchestrator.cache.enabled", "bool"],
  GNOMON_CACHE_MAX_SIZE: ["orchestrator.cache.maxSize", "string"],
  GNOMON_CACHE_REPOSITORY_MAX_SIZE: ["orchestrator.cache.repositoryMaxSize", "string"],
  GNOMON_DEBUG_SSH_ENABLED: ["orchestrator.debugSsh.enabled", "bool"],
  GNOMON_DEBUG_SSH_LISTEN: ["orchestrator.debugSsh.listen", "string"],
  GNOMON_DEBUG_SSH_HOST: ["orchestrator.debugSsh.host", "string"],
  GNOMON_DEBUG_SSH_WINDOW: ["orchestrator.debugSsh.window", "string"],
  GNOMON_DEBUG_SSH_MAX_WINDOW: ["orchestrator.debugSsh.maxWindow", "string"],
  GNOMON_DEBUG_SSH_MODE: ["orchestrator.debugSsh.mode", "string"],
  GNOMON_DEBUG_SSH_ON_DEBUG_LOGGING: ["orchestrator.debugSsh.onDebugLogging", "bool"],
  GNOMON_FORGEJO_CREDENTIALS: ["forgejo.credentialsFile", "string"],
  GNOMON_FORGEJO_CAPACITY: ["forgejo.capacity", "int"],
  GNOMON_FORGEJO_LABELS: ["forgejo.labels", "list"],
  GNOMON_GITHUB_CREDENTIALS: ["github.credentialsDir", "string"],
  GNOMON_GITHUB_CAPACITY: ["github.capacity", "int"],
  GNOMON_GITHUB_RUNNER_VERSION: ["github.runnerVersion", "string"],
  GNOMON_IMAGES_CATALOG: ["images.catalog", "string"],
  GNOMON_IMAGES_DIR: ["images.dir", "string"],
  GNOMON_NODE_REGISTRY: ["runtimes.node.registry", "string"],
};

export interface ConfigProblem {
  /** The key as the user wrote it: `GNOMON_LOG_LEVEL`, `orchestrator.maxVms in gnomon.yaml`, `--log-level`. */
  readonly where: string;
  readonly problem: string;
  readonly fix: string;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly code = "config.invalid";
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map((p) => `${p.where}: ${p.problem}; ${p.fix}`).join("\n"));
  }
}

/** A value set on the command line: the config path it sets and the flag's name for messages. */
export interface FlagValue {
  readonly path: string;
  readonly flag: string;
  readonly value: unknown;
}

export interface LoadInput {
  /** Path of the YAML file, or undefined for none. */
  readonly file?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly flags?: readonly FlagValue[];
}

export function loadConfig(input: LoadInput): Readonly<Config> {
  const raw: Record<string, unknown> = {};
  const origin = new Map<string, string>();

  if (input.file !== undefined) {
    const doc = readYaml(input.file);
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== "object" || Array.isArray(doc))
        throw new ConfigError([
          { where: input.file, problem: "is not a mapping of settings", fix: "see `gnomon config example`" },
        ]);
      Object.assign(raw, doc);
      for (const path of leafPaths(doc as Record<string, unknown>)) origin.set(path, `${path} in ${input.file}`);
    }
  }

  const envProblems: ConfigProblem[] = [];
  for (const [name, [path, kind]] of Object.entries(ENV_KEYS)) {
    const text = input.env[name];
    if (text === undefined || text === "") continue;
    if (kind === "list" && text.split(",").some((entry) => entry.trim() === "")) {
      // ",,," used to become the empty list, which means "every label": a typo must not widen what is served.
      envProblems.push({
        where: name,
        problem: `${JSON.stringify(text)} has an empty entry`,
        fix: `set ${name} to names separated by single commas, e.g. a,b; or unset it`,
      });
      continue;
    }
    const value = coerce(text, kind);
    if (value === undefined) {
      envProblems.push({
        where: name,
        problem: `${JSON.stringify(text)} is not ${describeKind(kind)}`,
        fix: `set ${name} to ${describeKind(kind)}`,
      });
      continue;
    }
    setPath(raw, path, value);
    origin.set(path, name);
  }
  if (envProblems.length > 0) throw new ConfigError(envProblems);

  for (const f of input.flags ?? []) {
    setPath(raw, f.path, f.value);
    origin.set(f.path, f.flag);
  }

  const parsed = Config.safeParse(raw, { reportInput: true });
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((i) => describeIssue(i, origin, input.file)));
  return deepFreeze(parsed.data);
}

function readYaml(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([
      {
        where: file,
        problem: code === "ENOENT" ? "does not exist" : `cannot be read (${code})`,
        fix: "pass an existing file with --config or GNOMON_CONFIG",
      },
    ]);
  }
  try {
    return parseYaml(text);
  } catch (err) {
    const where =
      err instanceof YAMLParseError && err.linePos ? `${file}:${err.linePos[0].line}:${err.linePos[0].col}` : file;
    throw new ConfigError([
      {
        where,
        problem: `is not valid YAML (${(err as Error).message.split("\n")[0]})`,
        fix: "fix the syntax; `gnomon config example` prints a valid file",
      },
    ]);
  }
}

function describeIssue(issue: z.core.$ZodIssue, origin: Map<string, string>, file: string | undefined): ConfigProblem {
  const path = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => (path ? `${path}.${k}` : k));
    return {
      where: file ? `${keys.join(", ")} in ${file}` : keys.join(", "),
      problem: keys.length > 1 ? "are not settings gnomon knows" : "is not a setting gnomon knows",
      fix: "check the spelling against `gnomon config example`",
    };
  }
  const where = originOf(path, origin) ?? (file ? `${path} in ${file}` : path);
  const got = valueAt(issue);
  const ownFix = (issue as { params?: { fix?: unknown } }).params?.fix;
  if (issue.code === "custom" && typeof ownFix === "string")
    return { where, problem: `${got ? `${got} ` : ""}${issue.message}`, fix: ownFix };
  let problem: string;
  let fix: string;
  switch (issue.code) {
    case "invalid_value":
      problem = `${got} is not one of ${issue.values.map(String).join(", ")}`;
      fix = `use one of ${issue.values.map(String).join(", ")}`;
      break;
    case "invalid_type":
      problem = `must be ${issue.expected}${got ? `, got ${got}` : ""}`;
      fix = `write it as ${articleFor(issue.expected)}`;
      break;
    case "too_small":
      problem = `must be at least ${String(issue.minimum)}${got ? `, got ${got}` : ""}`;
      fix = `raise it to ${String(issue.minimum)} or more`;
      break;
    default:
      problem = `${got ? `${got} ` : ""}${issue.message}`;
      fix = "see `gnomon config example` for the expected form";
  }
  return { where, problem, fix };
}

/** Where the value at `path` (or the setting holding it: a list entry's list) came from. */
function originOf(path: string, origin: Map<string, string>): string | undefined {
  for (let p = path; p !== ""; p = p.includes(".") ? p.slice(0, p.lastIndexOf(".")) : "") {
    const o = origin.get(p);
    if (o) return o;
  }
  return undefined;
}

function valueAt(issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  return input === undefined ? "" : JSON.stringify(input);
}

function articleFor(expected: string): string {
  return expected === "object" ? "a mapping" : expected === "array" ? "a list" : `a ${expected}`;
}

function coerce(text: string, kind: Kind): unknown {
  switch (kind) {
    case "string":
      return text;
    case "int":
      return /^-?\d+$/.test(text.trim()) ? Number(text) : undefined;
    case "bool":
      return /^(1|true|yes|on)$/i.test(text) ? true : /^(0|false|no|off)$/i.test(text) ? false : undefined;
    case "list":
      return text.split(",").map((s) => s.trim());
  }
}

function describeKind(kind: Kind): string {
  return { string: "a string", int: "a whole number", bool: "true or false", list: "a comma-separated list" }[kind];
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== "object" || next === null || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function leafPaths(obj: Record<string, unknown>, prefix = ""): string[] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? leafPaths(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`],
  );
}

function deepFreeze<T>(o: T): T {
  if (typeof o === "object" && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
