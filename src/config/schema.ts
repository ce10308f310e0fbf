// The configuration schema: every option and every default, nothing else. Parsed once at start;
// nothing reads configuration at import time. Unknown keys are errors, so a typo never passes.
import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

function toMs(s: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(s);
  return m ? Number(m[1]) * UNITS[m[2]!]! : Number.NaN;
}

/**
 * A duration written as `30s`, `500ms`, `10m`, `1h`; the parsed value is milliseconds. `least`
 * (written the same way) is the smallest value allowed.
 */
export const duration = (fallback: string, least?: string) =>
  z
    .string()
    .regex(/^\d+(ms|s|m|h)$/, 'must be a number with ms, s, m or h, e.g. "30s"')
    .refine((s) => least === undefined || !(toMs(s) < toMs(least)), `must be at least ${least}`)
    .default(fallback)
    .transform(toMs);

const url = (what: string) => z.string().url(`must be a URL (${what})`);

export const LogLevel = z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

export const OrchestratorConfig = z
  .object({
    /** Most VMs this host runs at once. */
    maxVms: z.number().int().min(1).default(2),
    /** CPU and memory budget for VMs on this host; 0 = the host's own count and 75 % of its memory. */
    cpus: z.number().int().min(0).default(0),
    memoryMiB: z.number().int().min(0).default(0),
    /** Labels to serve; empty = every label of the image catalog. */
    labels: z.array(z.string().min(1)).default([]),
    leaseTtl: duration("30s"),
    /** How often a running job's orchestrator tells its forge runner it is alive (a heartbeat event). */
    heartbeatInterval: duration("10s", "100ms"),
    drainTimeout: duration("10m"),
    /** host:port for /healthz and /metrics; empty = off. */
    metricsListen: z.string().default(""),
    /** Allows `host` labels that run steps directly on this machine (tests, trusted repos only). */
    allowHostLabels: z.boolean().default(false),
  })
  .strict();

export const ForgejoConfig = z
  .object({
    /** Where `gnomon forgejo register` writes and `run` reads the runner's credentials. */
    credentialsFile: z.string().default(".runner"),
    /** Labels to declare (name[:vm[:image]] or name:host); empty = the labels in the credentials file. */
    labels: z.array(z.string().min(1)).default([]),
    capacity: z.number().int().min(1).default(1),
    fetchInterval: duration("2s"),
    fetchIntervalMax: duration("60s"),
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
    orchestratorSilence: duration("50s", "1s"),
    orchestrator: OrchestratorConfig.default(OrchestratorConfig.parse({})),
    forgejo: ForgejoConfig.default(ForgejoConfig.parse({})),
    github: GithubConfig.default(GithubConfig.parse({})),
    images: ImagesConfig.default(ImagesConfig.parse({})),
  })
  .strict();

export type Config = z.output<typeof Config>;
