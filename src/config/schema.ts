// The configuration schema: every option and every default, nothing else. Parsed once at start;
// nothing reads configuration at import time. Unknown keys are errors, so a typo never passes.
import { isIP } from "node:net";
import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** A duration written as `30s`, `500ms`, `10m`, `1h`; the parsed value is milliseconds. */
export const duration = (fallback: string) =>
  z
    .string()
    .regex(/^\d+(ms|s|m|h)$/, 'must be a number with ms, s, m or h, e.g. "30s"')
    .default(fallback)
    .transform((s) => {
      const m = /^(\d+)(ms|s|m|h)$/.exec(s)!;
      return Number(m[1]) * UNITS[m[2]!]!;
    });

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
    drainTimeout: duration("10m"),
    /** host:port for /healthz and /metrics; empty = off. */
    metricsListen: z.string().default(""),
    /** Allows `host` labels that run steps directly on this machine (tests, trusted repos only). */
    allowHostLabels: z.boolean().default(false),
    egress: EgressConfig.default(EgressConfig.parse({})),
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
    orchestrator: OrchestratorConfig.default(OrchestratorConfig.parse({})),
    forgejo: ForgejoConfig.default(ForgejoConfig.parse({})),
    github: GithubConfig.default(GithubConfig.parse({})),
    images: ImagesConfig.default(ImagesConfig.parse({})),
  })
  .strict();

export type Config = z.output<typeof Config>;
