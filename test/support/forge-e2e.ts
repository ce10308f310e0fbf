// The shared stage of the forge end-to-end tests (test/e2e/forgejo.test.ts, github.test.ts): the
// real orchestrator on the test file's PostgreSQL database, two RabbitMQ connections under a prefix
// of the test's own (the forge runner's and the orchestrator's, as two processes would have), QEMU
// processes found by what their command line names, and waits on polled state. Whatever a stage
// starts is stopped, and its queues deleted, when the test ends.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import type { CacheService } from "../../src/cache/service.js";
import { createForgejoRunner } from "../../src/cli/forgejo.js";
import { Config } from "../../src/config/schema.js";
import type { DebugSshPolicy } from "../../src/debug-ssh/debug-request.js";
import type { DebugSshServer } from "../../src/debug-ssh/debug-ssh-server.js";
import type { ForgejoRunner } from "../../src/forge/forgejo/runner.js";
import type { Orchestrator, WarmPoolSettings } from "../../src/orchestrator/orchestrator.js";
import { AmqpBus } from "../../src/queue/amqp.js";
import type { Store } from "../../src/store/store.js";
import type { VmRecord } from "../../src/store/vms.js";
import { createRootLogger, type Logger, rootLogger } from "../../src/telemetry/log.js";
import type { Metrics } from "../../src/telemetry/metrics.js";
import { startOrchestrator } from "./orchestrators.js";
import { qemuPids, until } from "./qemu-processes.js";
import { deleteTopology, RABBIT_URL, testPrefix } from "./rabbit.js";
import { SAMPLE_CLUSTER_KEY } from "./samples.js";
import { TEST_IMAGES_DIR } from "./test-image.js";

let logger: Logger | undefined;

/** GNOMON_TEST_LOG=debug shows what the runners and the orchestrator log (default: nothing). */
export function testLogger(): Logger {
  const level = process.env["GNOMON_TEST_LOG"];
  logger ??= level ? createRootLogger({ level: level as "debug", pretty: false }) : rootLogger();
  return logger;
}

export interface Stage {
  readonly prefix: string;
  /** The forge runner's connection. */
  readonly forgeBus: AmqpBus;
  readonly orchestrator: Orchestrator;
  readonly store: Store;
  /** The orchestrator's metrics (its /metrics). */
  readonly metrics: Metrics;
  /** Its debug SSH endpoint, when the stage allows debug SSH. */
  readonly debugSsh: DebugSshServer | undefined;
  /** Registers a forge runner's stop: runs before the orchestrator and the buses stop. */
  beforeTeardown(stop: () => Promise<unknown>): void;
}

export interface StageOptions {
  readonly databaseUrl: string;
  readonly name: string;
  readonly labels?: readonly string[];
  readonly hostLabels?: readonly string[];
  readonly maxVms?: number;
  /** The Actions cache the orchestrator serves its jobs; default none. */
  readonly cache?: CacheService;
  /** Allow debug SSH, with this policy over the defaults (startOrchestrator's debugSsh); default off. */
  readonly debugSsh?: Partial<DebugSshPolicy>;
  /** How long running jobs may finish when the orchestrator stops; default startOrchestrator's. */
  readonly drainTimeoutMs?: number;
  /** Warm pools (orchestrator.pool); default none. */
  readonly pool?: WarmPoolSettings;
}

export async function startStage(t: TestContext, o: StageOptions): Promise<Stage> {
  const prefix = testPrefix(o.name);
  const log = testLogger();
  const forgeBus = new AmqpBus({ url: RABBIT_URL, prefix, connectionName: `${o.name}-forge`, log });
  const orchestratorBus = new AmqpBus({ url: RABBIT_URL, prefix, connectionName: `${o.name}-orchestrator`, log });
  await forgeBus.start();
  await orchestratorBus.start();
  // Hooks run in the order they were added: forge runners first, then the orchestrator, then the buses.
  const stops: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const stop of stops.reverse()) await stop();
  });
  const { orchestrator, store, metrics, debugSsh } = await startOrchestrator(t, {
    bus: orchestratorBus,
    databaseUrl: o.databaseUrl,
    labels: o.labels ?? ["test"],
    hostLabels: o.hostLabels ?? [],
    maxVms: o.maxVms ?? 1,
    cache: o.cache,
    debugSsh: o.debugSsh,
    drainTimeoutMs: o.drainTimeoutMs,
    pool: o.pool,
  });
  t.after(async () => {
    await forgeBus.stop(AbortSignal.timeout(5_000));
    await orchestratorBus.stop(AbortSignal.timeout(5_000));
    await deleteTopology(prefix);
  });
  return { prefix, forgeBus, orchestrator, store, metrics, debugSsh, beforeTeardown: (stop) => stops.push(stop) };
}

/**
 * The Forgejo runner role exactly as `gnomon up` builds it from configuration (with `forgejo`
 * settings over a 500 ms fetch interval), started; stopped before the orchestrator.
 */
export async function startForgejoRunner(
  stage: Stage,
  credentialsFile: string,
  forgejo: Record<string, unknown> = {},
): Promise<ForgejoRunner> {
  const config = Config.parse({ forgejo: { credentialsFile, fetchInterval: "500ms", ...forgejo } });
  const runner = createForgejoRunner(config, {
    bus: stage.forgeBus,
    clusterKey: SAMPLE_CLUSTER_KEY,
    log: testLogger(),
  });
  await runner.start();
  stage.beforeTeardown(() => runner.stop(AbortSignal.timeout(20_000)));
  return runner;
}

/**
 * The settings of a `gnomon up` that is one host of a fleet: the test RabbitMQ under `prefix`, its
 * own database, the offline test image for the label "test", room for one VM, JSON logs.
 */
export function fleetUpEnv(o: { databaseUrl: string; prefix: string; dataDir: string }): Record<string, string> {
  return {
    AMQP_URL: RABBIT_URL,
    DATABASE_URL: o.databaseUrl,
    GNOMON_CLUSTER_KEY: randomBytes(32).toString("hex"),
    GNOMON_AMQP_PREFIX: o.prefix,
    GNOMON_DATA_DIR: o.dataDir,
    GNOMON_IMAGES_DIR: TEST_IMAGES_DIR,
    GNOMON_LABELS: "test",
    GNOMON_MAX_VMS: "1",
    GNOMON_LOG_FORMAT: "json",
    GNOMON_LOG_LEVEL: "info",
  };
}

/** When a test ends: a `gnomon up` it left running is killed, and so is any QEMU under its data directory. */
export async function killUp(child: ChildProcess, exited: Promise<unknown>, dataDir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await exited;
  }
  for (const pid of qemuPids(dataDir)) process.kill(pid, "SIGKILL");
}

/** The next VM this stage's orchestrator records once QEMU is spawned (pid known), other than `seen`. */
export function nextVm(
  stage: Stage,
  seen: readonly string[] = [],
  timeoutMs = 120_000,
): Promise<VmRecord & { pid: number }> {
  return until(
    async () => {
      const vms = await stage.store.vms.listOnHost(stage.orchestrator.host);
      const vm = vms.find((v) => v.owner === stage.orchestrator.id && v.pid !== null && !seen.includes(v.id));
      return vm ? (vm as VmRecord & { pid: number }) : undefined;
    },
    "a VM of this orchestrator",
    timeoutMs,
  );
}

/** The QEMU process of a VM record is gone, and so is the record. */
export async function vmGone(stage: Stage, vm: VmRecord, timeoutMs = 30_000): Promise<void> {
  await until(
    async () => {
      const rows = await stage.store.vms.listOnHost(stage.orchestrator.host);
      return qemuPids(vm.id).length === 0 && !rows.some((r) => r.id === vm.id);
    },
    `VM ${vm.id} to be destroyed`,
    timeoutMs,
  );
}

/** No line repeats another one's text, whole or inside it (a boot phase shown twice, or with its message again). */
export function assertEachSaidOnce(lines: readonly string[], what: string): void {
  for (const [i, a] of lines.entries())
    for (const [j, b] of lines.entries())
      if (i !== j && b.includes(a)) throw new Error(`${what} says "${a}" twice:\n${lines.join("\n")}`);
}

export { qemuPids, until };
