// `gnomon github register | run | remove`: the GitHub runner's commands. Register writes the
// official runner's three files (0600) into github.credentialsDir; run serves jobs through the
// job bus until stopped; remove deregisters on GitHub and deletes the files.
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import type { Config } from "../config/schema.js";
import { parseClusterKey } from "../contract/sealed-secrets.js";
import {
  decodeJitConfig,
  deleteRegistration,
  describeRunner,
  type Registration,
  readRegistration,
  registrationExists,
  writeRegistration,
} from "../forge/github/credentials.js";
import { HttpClient } from "../forge/github/http.js";
import { register, remove, SYSTEM_LABELS } from "../forge/github/registration.js";
import { createGitHubRunner, platformLabels } from "../forge/github/runner.js";
import { runServices } from "../lifecycle/service.js";
import { Slots } from "../lifecycle/slots.js";
import { type Command, type ParsedArgs, UsageError } from "./command.js";
import { EXIT, exitCodeOf } from "./exit-codes.js";
import { amqpBus } from "./infrastructure.js";
import { VERSION } from "./version.js";

const CONFIG_FLAGS = { "credentials-dir": "github.credentialsDir", "runner-version": "github.runnerVersion" } as const;

function str(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === "string" && v !== "" ? v : undefined;
}

function labelsOf(args: ParsedArgs): string[] {
  return (str(args, "labels") ?? "")
    .split(",")
    .map((l) => l.trim())
    .filter(Boolean);
}

function http(config: Readonly<Config>): HttpClient {
  const { os, arch } = platformLabels();
  return new HttpClient({
    userAgent: `GitHubActionsRunner-${os.toLowerCase()}-${arch.toLowerCase()}/${config.github.runnerVersion} gnomon/${VERSION}`,
  });
}

/**
 * Runs a register or remove call. Whatever GitHub refused or could not take there (a token, a
 * URL, a group, an endpoint that does not answer) changed nothing and is for the person at the
 * keyboard to fix: exit 2, as for `gnomon forgejo register`, with GitHub's sentence.
 */
async function oneShot<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === "string" && code.startsWith("github."))
      throw new UsageError((err as Error).message, { cause: err });
    throw err;
  }
}

function abortOn(stopRequested: Promise<void>): AbortSignal {
  const ctl = new AbortController();
  void stopRequested.then(() => ctl.abort(new Error("stopped by a signal")));
  return ctl.signal;
}

export const githubRegisterCommand: Command = {
  name: "github register",
  summary: "register this runner with GitHub (github.com or GitHub Enterprise Server)",
  usage: `Usage: gnomon github register --url https://github.com/OWNER[/REPO] --token TOKEN --labels LABEL[,LABEL…]
       gnomon github register --jitconfig ENCODED --labels LABEL

Registers a self-hosted runner like the official runner's config.sh: take the URL and the token from
the repository's (or organization's) Settings → Actions → Runners → New self-hosted runner. The
first label is the image label whose VMs run this runner's jobs (runs-on: [self-hosted, LABEL]).
The credentials go to github.credentialsDir (.runner, .credentials, .credentials_rsaparams, 0600).`,
  options: {
    url: { type: "string" },
    token: { type: "string" },
    name: { type: "string" },
    labels: { type: "string" },
    ephemeral: { type: "boolean" },
    "runner-group": { type: "string" },
    replace: { type: "boolean" },
    jitconfig: { type: "string" },
    "credentials-dir": { type: "string" },
    "runner-version": { type: "string" },
  },
  configFlags: CONFIG_FLAGS,
  async run(args, ctx) {
    const config = args.config();
    const dir = resolve(config.github.credentialsDir);
    const labels = labelsOf(args);
    const replace = args.values["replace"] === true;
    if (registrationExists(dir) && !replace) {
      let who = "a runner";
      try {
        who = `runner ${describeRunner(readRegistration(dir))}`;
      } catch {
        // unreadable files: still refuse to overwrite them silently
      }
      throw new UsageError(
        `${dir} already holds the registration of ${who}; run \`gnomon github remove\` first, pass --replace, or choose another --credentials-dir`,
      );
    }
    const jit = str(args, "jitconfig");
    if (jit) {
      if (labels.length === 0)
        throw new UsageError("--jitconfig needs --labels with the image label whose VMs run the job");
      const reg = decodeJitConfig(jit);
      writeRegistration(dir, { ...reg, settings: { ...reg.settings, labels } });
      ctx.stdout.write(`stored the JIT runner ${describeRunner(reg)} in ${dir}; start it with \`gnomon github run\`\n`);
      return EXIT.ok;
    }
    const url = str(args, "url");
    const token = str(args, "token");
    if (!url || !token)
      throw new UsageError(
        "--url and --token are needed: copy them from Settings → Actions → Runners → New self-hosted runner",
      );
    const result = await oneShot(() =>
      register({
        url,
        token,
        name: str(args, "name") ?? hostname(),
        labels,
        ephemeral: args.values["ephemeral"] === true,
        runnerGroup: str(args, "runner-group"),
        replace,
        runnerVersion: config.github.runnerVersion,
        http: http(config),
        signal: abortOn(ctx.stopRequested),
      }),
    );
    writeRegistration(dir, result.registration);
    const reg = result.registration;
    ctx.stdout.write(
      `registered runner ${describeRunner(reg)} with ${reg.settings.gitHubUrl} (${result.flow} flow, group ${result.group}, ` +
        `labels ${[...SYSTEM_LABELS, ...labels].join(",")}${reg.settings.ephemeral ? ", ephemeral" : ""}); ` +
        `credentials in ${dir}\n`,
    );
    return EXIT.ok;
  },
};

export const githubRunCommand: Command = {
  name: "github run",
  summary: "take jobs from GitHub and queue them for the orchestrators",
  usage: `Usage: gnomon github run [--jitconfig ENCODED --labels LABEL]

Listens for the registered runner's jobs (github.credentialsDir) and puts each on the job bus for
the orchestrators serving its label; reports steps, logs and results back to GitHub. Needs RabbitMQ
(amqpUrl) and the cluster key shared with the orchestrators; \`gnomon up\` runs everything in one process.`,
  options: {
    jitconfig: { type: "string" },
    labels: { type: "string" },
    "credentials-dir": { type: "string" },
    "runner-version": { type: "string" },
  },
  configFlags: CONFIG_FLAGS,
  secondSignal: "hurry",
  async run(args, ctx) {
    const config = args.config();
    const log = args.logger();
    const dir = resolve(config.github.credentialsDir);
    const jit = str(args, "jitconfig");
    let registration: Registration;
    if (jit) {
      const labels = labelsOf(args);
      if (labels.length === 0)
        throw new UsageError("--jitconfig needs --labels with the image label whose VMs run the job");
      const reg = decodeJitConfig(jit);
      registration = { ...reg, settings: { ...reg.settings, labels } };
    } else registration = readRegistration(dir);
    if (!config.amqpUrl)
      throw new UsageError(
        "github run hands jobs to orchestrators over RabbitMQ: set amqpUrl (AMQP_URL), or run `gnomon up` for one process",
      );
    if (!config.clusterKey)
      throw new UsageError(
        "set clusterKey (GNOMON_CLUSTER_KEY) to the orchestrators' cluster key: job secrets are sealed with it",
      );
    const bus = amqpBus(config.amqpUrl, config, log, "github-runner");
    const runner = createGitHubRunner({
      registration,
      bus,
      clusterKey: parseClusterKey(config.clusterKey),
      capacity: new Slots(config.github.capacity),
      runnerVersion: config.github.runnerVersion,
      gnomonVersion: VERSION,
      log,
      timings: { orchestratorSilenceMs: config.orchestratorSilence },
      inFlightFile: githubInFlightFile(config.dataDir, registration),
    });
    const why = await runServices([bus, runner], ctx.stopRequested, config.shutdownTimeout, ctx.forceRequested);
    if (runner.finishedEphemeral) {
      // GitHub removes an ephemeral registration after its job; the local files are useless now.
      if (!jit) deleteRegistration(dir);
      ctx.stderr.write(
        runner.ephemeralEnd === "job-lost"
          ? `gnomon github run: GitHub gave the one job of the ephemeral runner ${describeRunner(registration)} to another runner, which used the registration up; register a new one\n`
          : `gnomon github run: the ephemeral runner ${describeRunner(registration)} finished its job\n`,
      );
      return EXIT.ok;
    }
    if (why === undefined) return EXIT.ok;
    ctx.stderr.write(`gnomon github run: ${why.message}\n`);
    return exitCodeOf(why);
  },
};

export const githubRemoveCommand: Command = {
  name: "github remove",
  summary: "deregister this runner from GitHub and delete its credentials",
  usage: `Usage: gnomon github remove --token TOKEN

Removes the registered runner on GitHub (take the token from the runner's page: Settings → Actions
→ Runners → the runner → Remove) and deletes the files in github.credentialsDir.`,
  options: {
    token: { type: "string" },
    "credentials-dir": { type: "string" },
    "runner-version": { type: "string" },
  },
  configFlags: CONFIG_FLAGS,
  async run(args, ctx) {
    const config = args.config();
    const dir = resolve(config.github.credentialsDir);
    const token = str(args, "token");
    if (!token) throw new UsageError("--token is needed: take a removal token from the runner's settings page");
    const registration = readRegistration(dir);
    const outcome = await oneShot(() =>
      remove({ registration, token, http: http(config), signal: abortOn(ctx.stopRequested) }),
    );
    deleteRegistration(dir);
    ctx.stdout.write(
      outcome === "removed"
        ? `removed runner ${describeRunner(registration)} from ${registration.settings.gitHubUrl} and deleted its files in ${dir}\n`
        : `runner ${describeRunner(registration)} was already gone on GitHub; deleted its files in ${dir}\n`,
    );
    return EXIT.ok;
  },
};

/** Where a GitHub runner keeps the jobs it holds, for its successor after a crash. */
export function githubInFlightFile(dataDir: string, registration: Registration): string {
  return join(resolve(dataDir), "github-jobs", `${registration.settings.agentId}.json`);
}
