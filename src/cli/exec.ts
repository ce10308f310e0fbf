// `gnomon exec`: runs the workflows on disk that an event triggers, job by job in `needs` order
// with matrices expanded (workflow/run-schedule.ts decides what runs), on this host
// (`--label NAME=host`) or in a VM (`--label NAME=IMAGE`), and shows the jobs' events to a
// person: grouped, coloured on a TTY, timed, summarised.
// Exit codes: 0 jobs ran and every one succeeded, 1 a job failed or was cancelled, 2 usage or input
// errors, or no job ran at all.
import { execFile } from "node:child_process";
import { randomInt, randomUUID } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import type { CacheService } from "../cache/service.js";
import type { JobEventBody } from "../contract/job-event.js";
import type { NodeLocator } from "../engine/action-node.js";
import { executeJob, type JobOutcome } from "../engine/engine.js";
import { createHostExecutor } from "../executor/host.js";
import { startJobServices } from "../orchestrator/job-services.js";
import { hostNodeLocator } from "../orchestrator/node-delivery.js";
import type { Logger } from "../telemetry/log.js";
import { WorkflowError } from "../workflow/errors.js";
import type { NeedResult, PlannedJob } from "../workflow/job-plan.js";
import { readWorkflowFile } from "../workflow/parse-thread.js";
import { RunSchedule } from "../workflow/run-schedule.js";
import type { Workflow } from "../workflow/workflow.js";
import { type Command, UsageError } from "./command.js";
import { EXIT } from "./exit-codes.js";
import { nodeRuntimes } from "./images.js";
import { createCacheService } from "./infrastructure.js";
import { LocalFleet } from "./local-fleet.js";
import { gitIgnoredPaths } from "./working-tree.js";

const USAGE = `Usage: gnomon exec [--workflows FILE|DIR] [--event NAME] [--job ID] [--workspace DIR]
                   [--label NAME=host|IMAGE]... [--secret K=V]... [--var K=V]... [--matrix K:V]...

Runs the jobs of the workflows in FILE or DIR (default: <workspace>/.github/workflows) that the
event NAME (default: push) triggers, in needs order, with matrices expanded, stopping the jobs
that need a failed one. A job runs where its runs-on labels point: --label ubuntu-latest=host runs
it on this host (no isolation), --label ubuntu-latest=IMAGE in a fresh VM of that image. Jobs
whose labels have no --label are skipped and named in the summary.

actions/checkout copies the workspace (default: the current directory, uncommitted changes
included). --secret K=V sets a secret (--secret K reads it from the environment), --var K=V a
configuration variable, --matrix K:V keeps only the matrix legs where K is V.

Exit codes: 0 jobs ran and every one succeeded, 1 a job failed or was cancelled, 2 bad usage or
input (an invalid workflow is shown with file:line:col), or no job ran at all.`;

/** Where exec's jobs come from, as a JobRequest's source says it (VM jobs carry the same). */
const LOCAL_SOURCE = { forge: "local", instance: "local", runner: "gnomon-exec", ref: {} } as const;
/**
 * `github.token` when no GITHUB_TOKEN secret is given: actions whose inputs default to
 * `${{ github.token }}` (github-script, checkout) then start instead of failing on "Input required".
 * It authorises nothing; an action that calls the API with it gets a 401 from the forge. Never sent
 * with a fetch: only a GITHUB_TOKEN secret is.
 */
export const PLACEHOLDER_TOKEN = "gnomon-exec-placeholder-token";

/** act's marker, which workflows written for act test; exec sets it like act does. */
const ACT_ENV: Readonly<Record<string, string>> = { ACT: "true" };

function pairs(values: readonly string[], sep: string, flag: string, env: NodeJS.ProcessEnv, fromEnv = false) {
  const out: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf(sep);
    if (i <= 0) {
      if (fromEnv && i < 0 && v !== "") {
        const e = env[v];
        if (e === undefined)
          throw new UsageError(`--${flag} ${v}: the environment has no ${v}; pass --${flag} ${v}=VALUE`);
        out[v] = e;
        continue;
      }
      throw new UsageError(`--${flag} ${v}: expected NAME${sep}VALUE`);
    }
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

const list = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : typeof v === "string" ? [v] : [];

async function workflowFiles(path: string): Promise<string[]> {
  const s = await stat(path).catch(() => undefined);
  if (!s) throw new UsageError(`--workflows ${path}: no such file or directory`);
  if (s.isFile()) return [path];
  const names = (await readdir(path)).filter((n) => /\.ya?ml$/.test(n)).sort();
  if (names.length === 0) throw new UsageError(`--workflows ${path}: the directory has no .yml or .yaml files`);
  return names.map((n) => join(path, n));
}

const run = promisify(execFile);
async function git(cwd: string, ...args: string[]): Promise<string | undefined> {
  try {
    return (await run("git", args, { cwd, timeout: 5_000 })).stdout.trim();
  } catch {
    return undefined;
  }
}

/** owner/name from a remote URL (https://host/owner/name.git, git@host:owner/name.git). */
export function repositoryOf(remote: string): { server: string; repository: string } | undefined {
  const m =
    /^(?:https?:\/\/(?:[^@/]+@)?([^/]+)\/|[^@]+@([^:]+):|ssh:\/\/(?:[^@/]+@)?([^/:]+)(?::\d+)?\/)(.+?)(?:\.git)?\/?$/.exec(
      remote,
    );
  if (!m?.[4] || m[4].split("/").length < 2) return undefined;
  const host = m[1] ?? m[2] ?? m[3];
  return { server: `https://${host}`, repository: m[4] };
}

/**
 * The github context of a local run. Outside a git checkout with a remote it uses nektos/act's
 * defaults (repository and actor nektos/act) so that workflows written for act behave the same.
 */
async function localGithub(workspace: string, event: string): Promise<Record<string, unknown>> {
  const remote = await git(workspace, "remote", "get-url", "origin");
  const found = remote ? repositoryOf(remote) : undefined;
  const repository = found?.repository ?? "nektos/act";
  const server = found?.server ?? "https://github.com";
  const sha = (await git(workspace, "rev-parse", "HEAD")) ?? "";
  const ref = (await git(workspace, "symbolic-ref", "-q", "HEAD")) ?? "";
  const api = server === "https://github.com" ? "https://api.github.com" : `${server}/api/v3`;
  return {
    event_name: event,
    event: {},
    repository,
    repository_owner: repository.split("/")[0] ?? "",
    actor: "nektos/act",
    triggering_actor: "nektos/act",
    sha,
    ref,
    ref_name: ref.replace(/^refs\/(heads|tags)\//, ""),
    ref_type: ref.startsWith("refs/tags/") ? "tag" : "branch",
    ref_protected: false,
    head_ref: "",
    base_ref: "",
    server_url: server,
    api_url: api,
    graphql_url: `${api.replace(/\/v3$/, "")}/graphql`,
    run_id: String(randomInt(1, 2 ** 31)),
    run_number: "1",
    run_attempt: "1",
    retention_days: "0",
    secret_source: "None",
    token: PLACEHOLDER_TOKEN,
  };
}

/* ---------- rendering ---------- */

interface Paint {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

function paint(color: boolean): Paint {
  const c = (code: string) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { bold: c("1"), dim: c("2"), red: c("31"), green: c("32"), yellow: c("33"), cyan: c("36") };
}

export const formatDuration = (ms: number): string =>
  ms < 1_000
    ? `${ms}ms`
    : ms < 60_000
      ? `${(ms / 1_000).toFixed(1)}s`
      : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1_000)}s`;

const ICON = { success: "✓", failure: "✗", cancelled: "⊘", skipped: "-" } as const;

/** Prints one job's events for a person. */
class JobRenderer {
  private readonly started = new Map<string, number>();
  private depth = 0;
  private stepName = "";
  /** Inside the engine's step header group (the script and shell), shown only when debugging. */
  private inHeader = false;
  private readonly t0 = Date.now();

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly p: Paint,
    private readonly debug: boolean,
  ) {}

  private write(s: string): void {
    this.out.write(`${s}\n`);
  }

  onEvent = (e: JobEventBody): void => {
    const p = this.p;
    switch (e.kind) {
      case "step-started":
        this.started.set(`${e.step}/${e.stage}`, Date.now());
        this.depth = 0;
        this.stepName = e.name;
        this.write(`  ${p.cyan("▸")} ${p.bold(e.name)}`);
        return;
      case "provisioning":
        if (e.message) this.line(e.message, "  ");
        return;
      case "log":
        for (const l of e.lines) this.line(l.text, e.step === null ? "  " : "    ");
        return;
      case "annotation":
        if (e.file) this.write(p.dim(`      at ${e.file}${e.line ? `:${e.line}${e.col ? `:${e.col}` : ""}` : ""}`));
        return;
      case "step-finished": {
        const t = this.started.get(`${e.step}/${e.stage}`) ?? Date.now();
        const took = formatDuration(Date.now() - t);
        const tone =
          e.conclusion === "success"
            ? p.green
            : e.conclusion === "skipped"
              ? p.dim
              : e.conclusion === "cancelled"
                ? p.yellow
                : p.red;
        const note =
          e.outcome !== e.conclusion
            ? ` (${e.outcome}, continue-on-error)`
            : e.conclusion === "skipped"
              ? " skipped"
              : "";
        this.write(`  ${tone(ICON[e.conclusion])} ${tone(`${e.conclusion}${note}`)} ${p.dim(took)}`);
        return;
      }
      default:
        return;
    }
  };

  private line(text: string, indent: string): void {
    const p = this.p;
    if (this.inHeader && !this.debug) {
      if (text === "##[endgroup]") this.inHeader = false;
      return;
    }
    if (!this.debug && text === `##[group]${this.stepName}`) {
      this.inHeader = true;
      return;
    }
    const pad = indent + "  ".repeat(this.depth);
    const m = /^##\[(group|endgroup|error|warning|notice|debug|command)\](.*)$/.exec(text);
    if (!m) {
      this.write(`${pad}${p.dim("│")} ${text}`);
      return;
    }
    const [, kind, rest = ""] = m;
    switch (kind) {
      case "group":
        this.write(`${pad}${p.cyan("▾")} ${rest}`);
        this.depth += 1;
        return;
      case "endgroup":
        this.depth = Math.max(0, this.depth - 1);
        return;
      case "error":
        this.write(`${pad}${p.red(`✗ ${rest}`)}`);
        return;
      case "warning":
        this.write(`${pad}${p.yellow(`⚠ ${rest}`)}`);
        return;
      case "notice":
        this.write(`${pad}${p.cyan(`ℹ ${rest}`)}`);
        return;
      case "debug":
        if (this.debug) this.write(`${pad}${p.dim(`debug ${rest}`)}`);
        return;
      default:
        this.write(`${pad}${p.dim(`$ ${rest}`)}`);
    }
  }

  get elapsedMs(): number {
    return Date.now() - this.t0;
  }
}

/* ---------- running ---------- */

interface Row {
  readonly name: string;
  readonly result: NeedResult["result"] | "no-runner";
  readonly ms?: number;
  readonly note?: string;
  /** A failure of a job with continue-on-error: shown, but it does not fail the run. */
  readonly tolerated?: boolean;
}

export const execCommand: Command = {
  name: "exec",
  summary: "run a workflow from disk, on this host or in a VM",
  usage: USAGE,
  options: {
    workflows: { type: "string", short: "W" },
    event: { type: "string", short: "e" },
    job: { type: "string", short: "j" },
    workspace: { type: "string", short: "C" },
    label: { type: "string", multiple: true, short: "l" },
    secret: { type: "string", multiple: true, short: "s" },
    var: { type: "string", multiple: true },
    matrix: { type: "string", multiple: true },
  },
  async run(args, ctx) {
    // `gnomon exec | head` closes the pipe early: the jobs still run to their end, unseen.
    const quietPipe = (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") throw err;
    };
    ctx.stdout.on("error", quietPipe);
    const v = args.values;
    const workspace = resolve(typeof v["workspace"] === "string" ? v["workspace"] : ".");
    const wsStat = await stat(workspace).catch(() => undefined);
    if (!wsStat?.isDirectory()) throw new UsageError(`--workspace ${workspace}: not a directory`);
    const event = typeof v["event"] === "string" ? v["event"] : "push";
    const only = typeof v["job"] === "string" ? v["job"] : undefined;
    const labels = pairs(list(v["label"]), "=", "label", ctx.env);
    const secrets = pairs(list(v["secret"]), "=", "secret", ctx.env, true);
    const vars = pairs(list(v["var"]), "=", "var", ctx.env);
    const matrixFilter = pairs(list(v["matrix"]), ":", "matrix", ctx.env);

    const files = await workflowFiles(
      resolve(typeof v["workflows"] === "string" ? v["workflows"] : join(workspace, ".github", "workflows")),
    );
    const workflows: Workflow[] = [];
    let invalid = false;
    for (const file of files) {
      const inWorkspace = relative(workspace, file);
      const shown =
        inWorkspace && !inWorkspace.startsWith("..") ? inWorkspace : relative(process.cwd(), file) || basename(file);
      try {
        workflows.push(await readWorkflowFile(shown, await readFile(file, "utf8")));
      } catch (err) {
        if (!(err instanceof WorkflowError)) throw err;
        invalid = true;
        for (const pr of err.problems) ctx.stderr.write(`${pr.file}:${pr.line ?? 1}:${pr.col ?? 1}: ${pr.message}\n`);
      }
    }
    if (invalid) {
      ctx.stderr.write("gnomon exec: the workflow is invalid; nothing was run\n");
      return EXIT.usage;
    }
    const triggered = workflows.filter((w) => w.events.includes(event));
    if (triggered.length === 0)
      throw new UsageError(
        `no workflow in ${files.length === 1 ? files[0] : "the directory"} runs on '${event}'; pick another --event`,
      );
    if (only && !triggered.some((w) => w.jobs.some((j) => j.id === only)))
      throw new UsageError(`--job ${only}: no workflow that runs on '${event}' has that job`);

    const p = paint(Boolean(ctx.stdout.isTTY) && !ctx.env["NO_COLOR"]);
    const stop = new AbortController();
    void ctx.stopRequested.then(() => stop.abort(new Error("cancelled: gnomon exec was asked to stop")));
    const github = await localGithub(workspace, event);
    let skip: Promise<((relativePath: string) => boolean) | undefined> | undefined;
    const skipOf = () => (skip ??= gitIgnoredPaths(workspace));
    const rows: Row[] = [];
    let fleet: LocalFleet | undefined;
    let hostNode: NodeLocator | undefined;
    // One cache per process, for host jobs and VM jobs alike (it holds their credentials).
    let services: { log: Logger; cache: CacheService | undefined } | undefined;
    const servicesOf = () => {
      if (services) return services;
      const config = args.config();
      // The fleet's own start-up lines are noise here unless asked for.
      const log = args.logger().child({}, { level: config.logLevel === "info" ? "warn" : config.logLevel });
      services = { log, cache: createCacheService(config, log) };
      return services;
    };
    const fleetOf = () => {
      if (fleet) return fleet;
      const { log, cache } = servicesOf();
      fleet = new LocalFleet(args.config(), log, cache);
      return fleet;
    };
    const debug = secrets["ACTIONS_STEP_DEBUG"] === "true" || vars["ACTIONS_STEP_DEBUG"] === "true";

    // The schedule decides what runs and what does not (needs, if:, matrices, fail-fast); this
    // loop runs the legs it hands out and shows every decision.
    for (const w of triggered) {
      const schedule = new RunSchedule(w, { github, vars, only, matrixFilter, targets: labels });
      for (let d = schedule.next(stop.signal.aborted); d; d = schedule.next(stop.signal.aborted)) {
        switch (d.kind) {
          case "invalid":
            ctx.stdout.write(`${p.red("✗")} ${p.bold(d.name)}: ${d.reason}\n`);
            rows.push({ name: d.name, result: "failure", note: d.reason });
            break;
          case "skipped":
            rows.push({ name: d.name, result: "skipped", note: d.note });
            break;
          case "no-runner":
            ctx.stdout.write(`${p.yellow("-")} ${p.bold(d.name)} ${p.dim(`skipped: ${d.hint}`)}\n`);
            rows.push({ name: d.name, result: "no-runner", note: d.hint });
            break;
          case "cancelled":
            rows.push({ name: d.name, result: "cancelled", note: d.note });
            break;
          case "run": {
            const outcome = await runLeg(d.leg, d.target, d.name, {
              workspace,
              skip: await skipOf(),
              secrets,
              stop: stop.signal,
              p,
              out: ctx.stdout,
              debug,
              fleet: fleetOf,
              services: servicesOf,
              node: () =>
                (hostNode ??= hostNodeLocator(nodeRuntimes(args.config(), args.logger()), {
                  log: args.logger(),
                  onObtaining: (what) => ctx.stdout.write(`    ${p.dim(`obtaining ${what} (once for this host)…`)}\n`),
                })),
            });
            schedule.finished(outcome);
            const tolerated = outcome.result === "failure" && d.leg.spec.continueOnError;
            rows.push({
              name: d.name,
              result: outcome.result,
              ms: outcome.ms,
              note: tolerated ? "continue-on-error" : outcome.reason,
              tolerated,
            });
            break;
          }
        }
      }
    }
    await fleet?.stop();
    await services?.cache?.close();
    return summarise(rows, p, ctx.stdout);
  },
};

async function runLeg(
  leg: PlannedJob,
  target: string,
  name: string,
  o: {
    workspace: string;
    skip: ((relativePath: string) => boolean) | undefined;
    secrets: Record<string, string>;
    stop: AbortSignal;
    p: Paint;
    out: NodeJS.WritableStream;
    debug: boolean;
    fleet: () => LocalFleet;
    services: () => { log: Logger; cache: CacheService | undefined };
    node: () => NodeLocator;
  },
): Promise<JobOutcome & { ms: number }> {
  const { p, out } = o;
  out.write(`\n${p.bold(`● ${name}`)} ${p.dim(`runs-on ${leg.runsOn.join(", ")} → ${target}`)}\n`);
  const renderer = new JobRenderer(out, p, o.debug);
  const checkout = { kind: "local", dir: o.workspace, skip: o.skip } as const;
  let outcome: JobOutcome;
  if (target === "host") {
    const executor = await createHostExecutor();
    try {
      const { log, cache } = o.services();
      // What a VM job gets from its orchestrator (the cache), served the same way on this host.
      const job = { id: randomUUID(), source: LOCAL_SOURCE, contexts: leg.contexts, spec: leg.spec };
      const services = await startJobServices(job, executor, { cache }, log);
      try {
        outcome = await executeJob(
          {
            spec: leg.spec,
            contexts: leg.contexts,
            secrets: { ...o.secrets, ...services.maskHints },
            actionsUrl: "https://github.com",
          },
          {
            executor,
            emit: renderer.onEvent,
            signal: o.stop,
            checkout,
            baseEnv: { ...ACT_ENV, ...services.env },
            jobContainer: "run-on-executor",
            runnerName: "gnomon-exec-host",
            node: o.node(),
          },
        );
      } finally {
        await services.close();
      }
    } finally {
      await executor.close();
    }
  } else {
    // A VM job takes the path a forge's job takes: a JobRequest to the (embedded) orchestrator.
    outcome = await o.fleet().run({
      leg,
      target,
      secrets: o.secrets,
      checkout,
      baseEnv: ACT_ENV,
      onEvent: renderer.onEvent,
      signal: o.stop,
    });
  }
  const tone = outcome.result === "success" ? p.green : outcome.result === "cancelled" ? p.yellow : p.red;
  out.write(
    `${tone(`${ICON[outcome.result]} ${name} ${outcome.result}`)} ${p.dim(`in ${formatDuration(renderer.elapsedMs)}`)}${outcome.reason ? `: ${outcome.reason}` : ""}\n`,
  );
  return { ...outcome, ms: renderer.elapsedMs };
}

/** Why not one job ran, and what to change: the most actionable reason first. */
function nothingRan(rows: readonly Row[]): string {
  if (rows.some((r) => r.result === "no-runner"))
    return "give each runs-on label a --label, e.g. --label ubuntu-latest=host";
  if (rows.some((r) => r.result === "skipped"))
    return "every job was skipped by its if: or because a job it needs was; check --event and the jobs' if: conditions";
  return "no matrix leg is left to run; check the --matrix filters";
}

function summarise(rows: readonly Row[], p: Paint, out: NodeJS.WritableStream): number {
  // Only a job that was started counts as run: skipped jobs, jobs without a --label and legs
  // cancelled before they started have no duration.
  const ran = rows.filter((r) => r.ms !== undefined);
  const width = Math.min(60, Math.max(10, ...rows.map((r) => r.name.length)));
  out.write(`\n${p.bold("Summary")}\n`);
  for (const r of rows) {
    const res = r.result === "no-runner" ? "skipped" : r.result;
    const tone = res === "success" ? p.green : res === "skipped" ? p.dim : res === "cancelled" ? p.yellow : p.red;
    const note = r.note ? p.dim(`  ${r.note}`) : "";
    out.write(
      `  ${tone(ICON[res])} ${r.name.padEnd(width)}  ${tone(res.padEnd(9))} ${r.ms === undefined ? "" : formatDuration(r.ms)}${note}\n`,
    );
  }
  const count = (k: Row["result"]) => rows.filter((r) => r.result === k).length;
  const failed = rows.filter((r) => r.result === "failure" && !r.tolerated).length;
  const cancelled = count("cancelled");
  out.write(
    `${rows.length} job${rows.length === 1 ? "" : "s"}: ${count("success")} succeeded, ${count("failure")} failed, ${cancelled} cancelled, ${count("skipped") + count("no-runner")} skipped\n`,
  );
  if (failed > 0 || cancelled > 0) return EXIT.failed;
  if (ran.length === 0) {
    // Nothing was tested: a script must not read that as success.
    out.write(`no job ran: ${nothingRan(rows)}\n`);
    return EXIT.usage;
  }
  return EXIT.ok;
}
