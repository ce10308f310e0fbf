// RabbitMQ for tests: the shared broker on this machine, isolated per test by a queue prefix. A vhost
// per test would need rabbitmqctl add_vhost + set_permissions + delete_vhost (~7 s together here;
// the management plugin is not enabled). Each test deletes what its prefix created, and leftovers()
// lists anything still there, for a leak check at the end of a file.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promisify } from "node:util";
import { type Channel, type ChannelModel, connect } from "amqplib";
import { AmqpBus } from "../../src/queue/amqp.js";
import { type AmqpTopology, amqpTopology } from "../../src/queue/amqp-topology.js";

export const RABBIT_URL = process.env["GNOMON_TEST_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672";

const run = promisify(execFile);

/** Runs rabbitmqctl (the broker runs on this machine); returns stdout. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run("rabbitmqctl", args, { timeout: 120_000 });
  return stdout;
}

/** A prefix no other test uses; all its names start with `${runPrefix}`. */
export function testPrefix(runPrefix: string): string {
  return `${runPrefix}-${randomUUID().slice(0, 8)}`;
}

/** A plain connection and channel for inspecting and injecting, outside any bus. */
export async function rawChannel(): Promise<{ model: ChannelModel; channel: Channel; close(): Promise<void> }> {
  const model = await connect(RABBIT_URL, { noDelay: true });
  model.on("error", () => {});
  const channel = await model.createChannel();
  channel.on("error", () => {});
  return { model, channel, close: () => model.close().catch(() => {}) };
}

/** Ready messages in a queue; 0 when it does not exist. */
export async function readyMessages(queue: string): Promise<number> {
  const raw = await rawChannel();
  try {
    return (await raw.channel.checkQueue(queue)).messageCount;
  } catch {
    return 0;
  } finally {
    await raw.close();
  }
}

/**
 * Deletes what a prefix created. With `used` (the labels and runner instances a test handed out) it
 * deletes exactly those names, which is fast; without it, every queue and exchange the broker lists
 * under the prefix (one rabbitmqctl round, ~1 s).
 */
export async function deleteTopology(
  prefix: string,
  used?: { labels: readonly string[]; instances: readonly string[] },
): Promise<void> {
  const t: AmqpTopology = amqpTopology(prefix);
  const names = used
    ? {
        queues: [...used.labels.map(t.jobQueue), ...used.instances.map(t.eventQueue), t.deadLetterQueue],
        exchanges: [t.deadLetterExchange, t.cancelExchange],
      }
    : await listed(`${prefix}.`);
  const raw = await rawChannel();
  try {
    for (const q of names.queues) await raw.channel.deleteQueue(q);
    for (const x of names.exchanges) await raw.channel.deleteExchange(x);
  } finally {
    await raw.close();
  }
}

async function listed(prefix: string): Promise<{ queues: string[]; exchanges: string[] }> {
  const names = (out: string) =>
    out
      .split("\n")
      .map((s) => s.trim())
      .filter((s) => s.startsWith(prefix));
  const [queues, exchanges] = await Promise.all([
    rabbitmqctl("list_queues", "-q", "--no-table-headers", "name"),
    rabbitmqctl("list_exchanges", "-q", "--no-table-headers", "name"),
  ]);
  return { queues: names(queues), exchanges: names(exchanges) };
}

/** Queues and exchanges whose names start with `prefix`, as the broker lists them. */
export async function leftovers(prefix: string): Promise<string[]> {
  const { queues, exchanges } = await listed(prefix);
  return [...queues, ...exchanges];
}

/**
 * A started AmqpBus on the test broker under `prefix` (default: a fresh one named after `name`),
 * stopped when `t` ends; the prefix's topology is deleted after its first bus stopped.
 */
export async function startTestBus(
  t: { after(fn: () => Promise<void>): unknown },
  name: string,
  prefix: string = testPrefix(name),
): Promise<{ bus: AmqpBus; prefix: string }> {
  const bus = new AmqpBus({ url: RABBIT_URL, prefix, connectionName: name });
  await bus.start();
  t.after(async () => {
    await bus.stop(AbortSignal.timeout(5_000));
    if (!cleaned.has(prefix)) {
      cleaned.add(prefix);
      await deleteTopology(prefix);
    }
  });
  return { bus, prefix };
}

const cleaned = new Set<string>();

/**
 * Applies a queue policy (`definition`, e.g. a length limit) to the queues whose names start with
 * `prefix.`: scoped to one test's prefix, it touches nothing else on the shared broker. Removed again
 * when `t` ends. RabbitMQ applies a policy to a queue declared later too.
 */
export async function queuePolicy(
  t: { after(fn: () => Promise<void>): unknown },
  prefix: string,
  definition: Record<string, unknown>,
): Promise<void> {
  const name = `${prefix}-policy`;
  const pattern = `^${prefix.replace(/[.]/g, "\\.")}\\.`;
  await rabbitmqctl("set_policy", "--apply-to", "queues", name, pattern, JSON.stringify(definition));
  t.after(async () => {
    await rabbitmqctl("clear_policy", name);
  });
}

/** The longest a test may keep the broker's memory alarm up, whatever happens to the test. */
const MAX_ALARM_MS = 30_000;

/**
 * RabbitMQ's memory alarm, raised on purpose: the broker then blocks every connection that publishes,
 * the whole broker's, other tests' too, so keep it up for a few seconds only. The watermark it had is
 * put back when `t` ends (also when the test failed); `clear()` puts it back at once.
 */
export async function memoryAlarm(t: { after(fn: () => Promise<void>): unknown }): Promise<{
  raise(): Promise<void>;
  clear(): Promise<void>;
}> {
  const was = (await rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")).trim();
  const absolute = /^\{absolute,\s*(\d+)\}$/.exec(was);
  if (!absolute && !/^\d+(\.\d+)?(e-?\d+)?$/.test(was))
    throw new Error(`cannot read RabbitMQ's memory watermark to restore it later (got "${was}")`);
  // A run killed while the alarm was up left the tiny watermark behind: never "restore" that.
  if (!absolute && Number(was) < 0.01)
    throw new Error(
      `RabbitMQ's memory watermark is ${was}: a killed test left the alarm up. Restore it first ` +
        "(`rabbitmqctl set_vm_memory_high_watermark 0.4`, the default)",
    );
  const restore = absolute ? ["absolute", absolute[1]!] : [was];
  let raised = false;
  let watchdog: NodeJS.Timeout | undefined;
  const clear = async (): Promise<void> => {
    clearTimeout(watchdog);
    if (!raised) return;
    await rabbitmqctl("set_vm_memory_high_watermark", ...restore);
    raised = false;
  };
  t.after(clear);
  return {
    async raise() {
      raised = true;
      // Even a test stuck before its after-hooks must not block the shared broker for long.
      watchdog = setTimeout(() => void clear().catch(() => {}), MAX_ALARM_MS);
      await rabbitmqctl("set_vm_memory_high_watermark", "0.0000001");
    },
    clear,
  };
}
