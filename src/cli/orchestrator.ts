// `gnomon orchestrator`: runs jobs from the queue in VMs on this host, and `gnomon up`: the
// orchestrator plus the configured forge runners in one process, on the embedded queue and
// database unless AMQP_URL / DATABASE_URL are set.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Config } from "../config/schema.js";
import { readRegistration } from "../forge/github/credentials.js";
import { createGitHubRunner } from "../forge/github/runner.js";
import { runServices, type Service, type ServiceLayer } from "../lifecycle/service.js";
import { Slots } from "../lifecycle/slots.js";
import { orchestratorHealth } from "../orchestrator/health.js";
import type { Orchestrator } from "../orchestrator/orchestrator.js";
import type { JobBus } from "../queue/bus.js";
import type { Store } from "../store/store.js";
import type { Logger } from "../telemetry/log.js";
import { createMetrics, type Metrics } from "../telemetry/metrics.js";
import { MetricsServer } from "../telemetry/metrics-server.js";
import { type Command, type CommandContext, UsageError } from "./command.js";
import { EXIT, exitCodeOf } from "./exit-codes.js";
import { createForgejoRunner } from "./forgejo.js";
import { githubInFlightFile } from "./github.js";
import { clusterKeyOf, createBus, createDebugSsh, createOrchestrator, createStore } from "./infrastructure.js";
import { VERSION } from "./version.js";

const ORCHESTRATOR_FLAGS = {
  "max-vms": "orchestrator.maxVms",
  labels: "orchestrator.labels",
  "metrics-listen": "orchestrator.metricsListen",
} as const;

const ORCHESTRATOR_OPTIONS = {
  "max-vms": { type: "string" },
  labels: { type: "string" },
  "metrics-listen": { type: "string" },
} as const;

function metricsEndpoint(
  config: Readonly<Config>,
  metrics: Metrics,
  parts: {
    orchestrator: Orchestrator;
    bus: JobBus;
    store: Store;
    debugSsh?: Service;
    runners?: readonly Service[];
  },
): Service[] {
  if (!config.orchestrator.metricsListen) return [];
  return [
    new MetricsServer({
      listen: config.orchestrator.metricsListen,
      metrics,
      // From every service of the process: unhealthy while one is not ready (the queue, the
      // database or a forge out of reach: no job can start or finish through it then).
      health: orchestratorHealth(parts),
    }),
  ];
}

async function serve(
  layers: ServiceLayer[],
  stopTimeoutMs: number,
  ctx: CommandContext,
  log: Logger,
  name: string,
): Promise<number> {
  const { stderr } = ctx;
  const why = await runServices(layers, ctx.stopRequested, stopTimeoutMs, ctx.forceRequested);
  if (why === undefined) {
    log.info("stopped");
    return EXIT.ok;
  }
  stderr.write(`gnomon ${name}: ${why.message}\n`);
  return exitCodeOf(why);
}

/** Flag values arrive as strings; the schema wants numbers and lists. */
function normaliseFlags(values: Record<string, unknown>): void {
  if (typeof values["max-vms"] === "string") values["max-vms"] = Number(values["max-vms"]);
  // Empty entries are kept for the schema to refuse: "--labels ,," must not mean every label.
  if (typeof values["labels"] === "string") values["labels"] = values["labels"].split(",").map((s) => s.trim());
}

export const orchestratorCommand: Command = {
  name: "orchestrator",
  summary: "run jobs from the queue in VMs on this host",
  usage: `Usage: gnomon orchestrator [--max-vms N] [--labels a,b] [--metrics-listen HOST:PORT]

Consumes jobs for the labels of the image catalog (or orchestrator.labels), at most as many as this
host has free VM slots, runs each in a fresh VM and reports its events back to the forge runner.
With RabbitMQ (AMQP_URL) and PostgreSQL (DATABASE_URL) any number of hosts share the work; set the
same GNOMON_CLUSTER_KEY everywhere.`,
  options: ORCHESTRATOR_OPTIONS,
  configFlags: ORCHESTRATOR_FLAGS,
  secondSignal: "hurry",
  async run(args, ctx) {
    normaliseFlags(args.values as Record<string, unknown>);
    const config = args.config();
    const log = args.logger();
    const clusterKey = clusterKeyOf(config);
    const metrics = createMetrics();
    const bus = createBus(config, log, "orchestrator");
    const store = createStore(config, log);
    const debugSsh = createDebugSsh(config, { store, log, metrics });
    const orchestrator = await createOrchestrator(config, { bus, store, log, metrics, clusterKey, debugSsh });
    // The endpoint first: an address it cannot listen on fails before the database is opened, and
    // /healthz answers (503) while the rest starts. The debug SSH endpoint stops after the
    // orchestrator, whose stop ends every debug window first.
    return serve(
      [
        ...metricsEndpoint(config, metrics, { orchestrator, bus, store, debugSsh }),
        store,
        bus,
        ...(debugSsh ? [debugSsh] : []),
        orchestrator,
      ],
      config.shutdownTimeout,
      ctx,
      log,
      "orchestrator",
    );
  },
};

export const upCommand: Command = {
  name: "up",
  summary: "run the orchestrator and the configured forge runners in one process",
  usage: `Usage: gnomon up [--max-vms N] [--labels a,b] [--metrics-listen HOST:PORT]

Runs everything on one host: the orchestrator, a Forgejo runner when \`gnomon forgejo register\` wrote
its credentials file (forgejo.credentialsFile), and a GitHub runner when \`gnomon github register\`
wrote github.credentialsDir. Without AMQP_URL and DATABASE_URL it uses the embedded queue and the
embedded PostgreSQL under the data directory.`,
  options: ORCHESTRATOR_OPTIONS,
  configFlags: ORCHESTRATOR_FLAGS,
  secondSignal: "hurry",
  async run(args, ctx) {
    normaliseFlags(args.values as Record<string, unknown>);
    const config = args.config();
    const log = args.logger();
    const clusterKey = clusterKeyOf(config);
    const metrics = createMetrics();
    const bus = createBus(config, log, "gnomon-up");
    const store = createStore(config, log);
    const debugSsh = createDebugSsh(config, { store, log, metrics });
    const orchestrator = await createOrchestrator(config, { bus, store, log, metrics, clusterKey, debugSsh });
    const runners: (Service & { readonly queues: readonly string[] })[] = [];
    const forgejoFile = resolve(config.forgejo.credentialsFile);
    if (existsSync(forgejoFile)) runners.push(createForgejoRunner(config, { bus, clusterKey, log }));
    const githubDir = resolve(config.github.credentialsDir);
    if (existsSync(join(githubDir, ".runner"))) {
      const registration = readRegistration(githubDir);
      runners.push(
        createGitHubRunner({
          registration,
          bus,
          clusterKey,
          capacity: new Slots(config.github.capacity),
          runnerVersion: config.github.runnerVersion,
          gnomonVersion: VERSION,
          log,
          timings: { orchestratorSilenceMs: config.orchestratorSilence },
          inFlightFile: githubInFlightFile(config.dataDir, registration),
        }),
      );
    }
    // In one process every job goes to this orchestrator: a label it does not serve would wait for ever.
    for (const r of runners) {
      const unserved = r.queues.filter((q) => !orchestrator.labels.includes(q));
      if (unserved.length > 0)
        throw new UsageError(
          `the ${r.name} declares ${unserved.map((q) => `"${q}"`).join(", ")}, which no image of this host serves (it serves ${orchestrator.labels.join(", ")}); register it with labels of the image catalog (docs/images.md), or add an image for them`,
        );
    }
    if (runners.length === 0)
      log.warn(
        { forgejo: forgejoFile, github: githubDir },
        "no forge runner is registered here: run `gnomon forgejo register` or `gnomon github register` first; serving the queue only",
      );
    // One stop for the whole host: the runners stop fetching and the orchestrator stops consuming
    // at once, and the jobs get the drain time (within shutdownTimeout), then are cancelled and
    // reported; /metrics stays up meanwhile.
    return serve(
      [
        ...metricsEndpoint(config, metrics, { orchestrator, bus, store, debugSsh, runners }),
        store,
        bus,
        ...(debugSsh ? [debugSsh] : []),
        [orchestrator, ...runners],
      ],
      Math.min(config.shutdownTimeout, config.orchestrator.drainTimeout),
      ctx,
      log,
      "up",
    );
  },
};
