// Builds the shared pieces of every long-running command from Config: the bus (RabbitMQ or the
// in-process one), the store (PostgreSQL or PGlite), the cluster key, and the orchestrator with
// its provisioner. Each stage gets its own small options object; only this file sees Config.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { CacheService } from "../cache/service.js";
import type { Config } from "../config/schema.js";
import { parseClusterKey } from "../contract/sealed-secrets.js";
import { DebugSshServer } from "../debug-ssh/debug-ssh-server.js";
import { hostKeyPath, loadOrCreateHostKey } from "../debug-ssh/host-key.js";
import { egressPolicy } from "../egress/policy.js";
import { ActionCache } from "../orchestrator/action-cache.js";
import { Orchestrator } from "../orchestrator/orchestrator.js";
import { createVmProvisioner } from "../orchestrator/provisioner.js";
import { AmqpBus } from "../queue/amqp.js";
import type { JobBus } from "../queue/bus.js";
import { MemoryBus } from "../queue/memory.js";
import { Store } from "../store/store.js";
import type { Logger } from "../telemetry/log.js";
import type { Metrics } from "../telemetry/metrics.js";
import { UsageError } from "./command.js";
import { catalogOf, imagesDir, nodeRuntimes } from "./images.js";

export function createBus(config: Readonly<Config>, log: Logger, role: string): JobBus {
  return config.amqpUrl ? amqpBus(config.amqpUrl, config, log, role) : new MemoryBus({ log });
}

export function amqpBus(url: string, config: Readonly<Config>, log: Logger, role: string): AmqpBus {
  return new AmqpBus({ url, prefix: config.amqpPrefix, connectionName: role, log });
}

export function createStore(config: Readonly<Config>, log: Logger): Store {
  return new Store({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log });
}

/**
 * The cluster key: from configuration, or, for a single process on the embedded queue, generated
 * once under the data directory (0600). Several hosts on RabbitMQ must share one configured key.
 */
export function clusterKeyOf(config: Readonly<Config>): Buffer {
  if (config.clusterKey) return parseClusterKey(config.clusterKey);
  if (config.amqpUrl)
    throw new UsageError(
      "with RabbitMQ (amqpUrl) every host must seal job secrets with the same key: set clusterKey or GNOMON_CLUSTER_KEY (create one with `openssl rand -hex 32`)",
    );
  const file = join(config.dataDir, "cluster.key");
  if (existsSync(file)) return parseClusterKey(readFileSync(file, "utf8"));
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 }); // private, like the embedded database in it
  writeFileSync(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return parseClusterKey(readFileSync(file, "utf8"));
}

/**
 * The debug SSH endpoint when orchestrator.debugSsh.enabled allows it (docs/debug-ssh.md), with its
 * host key under the data directory; undefined when it is off, and then no job is ever held.
 */
export function createDebugSsh(
  config: Readonly<Config>,
  deps: { store: Store; log: Logger; metrics: Metrics },
): DebugSshServer | undefined {
  const d = config.orchestrator.debugSsh;
  if (!d.enabled) return undefined;
  return new DebugSshServer({
    listen: d.listen,
    host: d.host,
    hostKey: loadOrCreateHostKey(hostKeyPath(config.dataDir)),
    policy: { windowMs: d.window, maxWindowMs: d.maxWindow, mode: d.mode, onDebugLogging: d.onDebugLogging },
    store: deps.store,
    metrics: deps.metrics,
    log: deps.log,
  });
}

/** The host's action cache under the data directory, pruned by orchestrator.actionCache. */
export function createActionCache(config: Readonly<Config>, log: Logger, metrics?: Metrics): ActionCache {
  return new ActionCache({
    dir: join(config.dataDir, "actions"),
    maxAgeMs: config.orchestrator.actionCache.maxAge,
    maxBytes: config.orchestrator.actionCache.maxSizeMiB * 1024 * 1024,
    log,
    metrics,
  });
}

/**
 * The Actions cache of this process (one per process: it holds the jobs' credentials), under
 * <dataDir>/cache; undefined when orchestrator.cache.enabled is false.
 */
export function createCacheService(config: Readonly<Config>, log: Logger, metrics?: Metrics): CacheService | undefined {
  const c = config.orchestrator.cache;
  if (!c.enabled) return undefined;
  return new CacheService({
    dir: join(config.dataDir, "cache"),
    limits: { maxBytes: c.maxSize, repositoryMaxBytes: c.repositoryMaxSize, unusedExpiryMs: c.unusedExpiry },
    log: log.child({ component: "cache" }),
    metrics,
  });
}

export async function createOrchestrator(
  config: Readonly<Config>,
  deps: {
    bus: JobBus;
    store: Store;
    log: Logger;
    metrics: Metrics;
    clusterKey: Buffer;
    debugSsh?: DebugSshServer;
  },
): Promise<Orchestrator> {
  const o = config.orchestrator;
  const hostLabels = o.labels.filter((l) => l.endsWith(":host"));
  if (hostLabels.length > 0 && !o.allowHostLabels)
    throw new UsageError(
      `orchestrator.labels has ${hostLabels.join(", ")}, which would run jobs on this host without a VM; set orchestrator.allowHostLabels (GNOMON_ALLOW_HOST_LABELS=true) only if you trust every workflow`,
    );
  const catalog = await catalogOf(config);
  const provisioner = createVmProvisioner({
    catalog,
    imagesDir: imagesDir(config),
    runDir: join(config.dataDir, "vms"),
    labels: o.labels.filter((l) => !l.endsWith(":host")),
    hostLabels,
    hostWorkDir: join(config.dataDir, "host-jobs"),
    egress: egressPolicy(o.egress),
    actionCache: createActionCache(config, deps.log, deps.metrics),
    nodeRuntimes: nodeRuntimes(config, deps.log),
  });
  const unknown = o.labels.filter((l) => !l.endsWith(":host") && !provisioner.labels.includes(l));
  if (o.labels.length > 0 && unknown.length > 0)
    throw new UsageError(
      `orchestrator.labels names ${unknown.join(", ")}, which no image in ${catalog.path} serves; add an image for it (docs/images.md) or remove it`,
    );
  const poolLabels = Object.entries(o.pool.labels).map(([label, size]) => ({ label, ...size }));
  const unpooled = poolLabels.filter((p) => !provisioner.labels.includes(p.label) || p.label.endsWith(":host"));
  if (unpooled.length > 0)
    throw new UsageError(
      `orchestrator.pool.labels names ${unpooled.map((p) => p.label).join(", ")}, which this orchestrator serves no VM for; ` +
        `pool only labels of orchestrator.labels that run in VMs (served here: ${provisioner.labels.join(", ")})`,
    );
  const memoryMiB = o.memoryMiB || Math.floor((totalmem() / 1024 / 1024) * 0.75);
  return new Orchestrator({
    bus: deps.bus,
    store: deps.store,
    provisioner,
    budget: {
      maxVms: o.maxVms,
      cpus: o.cpus || availableParallelism(),
      memoryMiB,
    },
    pool: { labels: poolLabels, memoryMiB: o.pool.memoryMiB || Math.floor(memoryMiB / 4), idleTtlMs: o.pool.idleTtl },
    clusterKey: deps.clusterKey,
    leaseTtlMs: o.leaseTtl,
    heartbeatIntervalMs: o.heartbeatInterval,
    drainTimeoutMs: o.drainTimeout,
    metrics: deps.metrics,
    log: deps.log,
    services: { cache: createCacheService(config, deps.log, deps.metrics) },
    debugSsh: deps.debugSsh,
  });
}
