// `gnomon forgejo register | run`: the Forgejo runner's commands. Register writes the credentials
// file in forgejo-runner's `.runner` format (0600); run declares the labels and serves tasks through
// the job bus until stopped. createForgejoRunner is what `gnomon up` calls to build the same role.
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline/promises";
import type { Config } from "../config/schema.js";
import { parseClusterKey } from "../contract/sealed-secrets.js";
import { localCapacity, type TaskCapacity } from "../forge/forgejo/capacity.js";
import { forgejoClient } from "../forge/forgejo/client.js";
import { readCredentials } from "../forge/forgejo/credentials-file.js";
import { CredentialsFileError } from "../forge/forgejo/errors.js";
import { parseLabels, splitLabelList } from "../forge/forgejo/labels.js";
import { registerRunner } from "../forge/forgejo/registration.js";
import { ForgejoRunner } from "../forge/forgejo/runner.js";
import { runServices } from "../lifecycle/service.js";
import { Slots } from "../lifecycle/slots.js";
import type { JobBus } from "../queue/bus.js";
import type { Logger } from "../telemetry/log.js";
import { type Command, type ParsedArgs, UsageError } from "./command.js";
import { EXIT, exitCodeOf } from "./exit-codes.js";
import { amqpBus } from "./infrastructure.js";
import { VERSION } from "./version.js";

const CONFIG_FLAGS = { "credentials-file": "forgejo.credentialsFile" } as const;

function str(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;
}

async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}

export const forgejoRegisterCommand: Command = {
  name: "forgejo register",
  summary: "register this runner with a Forgejo instance",
  usage: `Usage: gnomon forgejo register --instance URL --token TOKEN --labels LABEL[,LABEL…] [--name NAME]

Registers a runner like \`forgejo-runner register\`: take the registration token from Forgejo
(site administration, organisation, user or repository → Settings → Actions → Runners → Create new
runner). Labels are NAME (a VM from the image catalog entry NAME), NAME:vm:IMAGE (a VM from catalog
entry IMAGE) or NAME:host (steps on the orchestrator's host, only where it allows host labels).
The credentials go to forgejo.credentialsFile (default .runner, mode 0600). On a terminal, missing
values are asked for unless --no-interactive is given.`,
  options: {
    instance: { type: "string" },
    token: { type: "string" },
    name: { type: "string" },
    labels: { type: "string" },
    "no-interactive": { type: "boolean" },
    replace: { type: "boolean" },
    "credentials-file": { type: "string" },
  },
  configFlags: CONFIG_FLAGS,
  async run(args, ctx) {
    const config = args.config();
    const file = resolve(config.forgejo.credentialsFile);
    const interactive = args.values["no-interactive"] !== true && process.stdin.isTTY === true;
    if (existsSync(file) && args.values["replace"] !== true)
      throw new UsageError(
        `${file} already holds a runner registration; pass --replace to register a new runner in its place ` +
          "(the old one stays listed in Forgejo until deleted there), or choose another --credentials-file",
      );
    const value = async (flag: string, question: string): Promise<string | undefined> =>
      str(args, flag) ?? (interactive ? (await ask(question)) || undefined : undefined);

    const instance = await value("instance", "Forgejo instance URL (e.g. https://forgejo.example.org/): ");
    if (!instance) throw new UsageError("--instance is needed: the Forgejo instance's URL, as in the browser");
    try {
      new URL(instance);
    } catch {
      throw new UsageError(
        `--instance ${JSON.stringify(instance)} is not a URL; give it as https://forgejo.example.org/`,
      );
    }
    const token = await value("token", "Registration token: ");
    if (!token)
      throw new UsageError(
        "--token is needed: copy the registration token from Forgejo's Settings → Actions → Runners → Create new runner",
      );
    const labelText = await value("labels", "Labels, comma-separated (e.g. linux:vm:debian-12): ");
    const labels = splitLabelList(labelText ?? "");
    if (labels.length === 0)
      throw new UsageError(
        "--labels is needed: the runs-on labels this runner serves, e.g. --labels linux:vm:debian-12",
      );
    const name = str(args, "name") ?? hostname();

    // A refused token, a wrong URL or a bad label ends in main.ts with its sentence and exit code 2.
    const creds = await registerRunner({
      client: forgejoClient({ instance, userAgent: `gnomon/${VERSION}` }),
      token,
      name,
      labels,
      version: `gnomon ${VERSION}`,
      credentialsFile: file,
    });
    ctx.stdout.write(
      `registered runner ${creds.name} (${creds.uuid}) with Forgejo at ${instance}, labels ${parseLabels(creds.labels)
        .map((l) => l.name)
        .join(",")}; credentials in ${file} (mode 0600). Start it with \`gnomon forgejo run\` or \`gnomon up\`.\n`,
    );
    return EXIT.ok;
  },
};

export interface ForgejoRunnerDeps {
  readonly bus: JobBus;
  readonly clusterKey: Buffer;
  readonly log: Logger;
  /** Default: forgejo.capacity local slots. The orchestrator may later pass the fleet's capacity. */
  readonly capacity?: TaskCapacity;
}

/**
 * The Forgejo runner role from configuration: reads the credentials file, takes the labels from
 * forgejo.labels or else the file, and builds the Service (not started). Throws CredentialsFileError
 * or LabelError with the fix in the message.
 */
export function createForgejoRunner(config: Readonly<Config>, deps: ForgejoRunnerDeps): ForgejoRunner {
  const file = resolve(config.forgejo.credentialsFile);
  const credentials = readCredentials(file);
  const labels = parseLabels(config.forgejo.labels.length > 0 ? config.forgejo.labels : credentials.labels);
  if (labels.length === 0)
    throw new CredentialsFileError(
      file,
      "lists no labels and forgejo.labels is empty, so no job could reach this runner",
    );
  return new ForgejoRunner({
    credentials,
    credentialsFile: file,
    labels,
    bus: deps.bus,
    capacity: deps.capacity ?? localCapacity(new Slots(config.forgejo.capacity)),
    clusterKey: deps.clusterKey,
    version: VERSION,
    log: deps.log.child({ component: "forgejo-runner" }),
    fetchIntervalMs: config.forgejo.fetchInterval,
    fetchIntervalMaxMs: config.forgejo.fetchIntervalMax,
    fetchTimeoutMs: config.forgejo.fetchTimeout,
    reportIntervalMs: config.forgejo.reportInterval,
    orchestratorSilenceMs: config.orchestratorSilence,
    inFlightFile: join(resolve(config.dataDir), "forgejo-tasks", `${credentials.uuid}.json`),
  });
}

export const forgejoRunCommand: Command = {
  name: "forgejo run",
  summary: "take jobs from Forgejo and queue them for the orchestrators",
  usage: `Usage: gnomon forgejo run

Declares the registered runner's labels (forgejo.credentialsFile, forgejo.labels), fetches tasks while
it has room for them (forgejo.capacity), puts each on the job bus for the orchestrators serving its
label, and reports logs, step states and results back to Forgejo. Needs RabbitMQ (amqpUrl) and the
cluster key shared with the orchestrators; \`gnomon up\` runs everything in one process.`,
  options: { "credentials-file": { type: "string" } },
  configFlags: CONFIG_FLAGS,
  secondSignal: "hurry",
  async run(args, ctx) {
    const config = args.config();
    const log = args.logger();
    if (!config.amqpUrl)
      throw new UsageError(
        "forgejo run hands jobs to orchestrators over RabbitMQ: set amqpUrl (AMQP_URL), or run `gnomon up` for one process",
      );
    if (!config.clusterKey)
      throw new UsageError(
        "set clusterKey (GNOMON_CLUSTER_KEY) to the orchestrators' cluster key: job secrets are sealed with it",
      );
    const bus = amqpBus(config.amqpUrl, config, log, "forgejo-runner");
    const runner = createForgejoRunner(config, { bus, clusterKey: parseClusterKey(config.clusterKey), log });
    const why = await runServices([bus, runner], ctx.stopRequested, config.shutdownTimeout, ctx.forceRequested);
    if (why === undefined) return EXIT.ok;
    ctx.stderr.write(`gnomon forgejo run: ${why.message}\n`);
    return exitCodeOf(why);
  },
};
