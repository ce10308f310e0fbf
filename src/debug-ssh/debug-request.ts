// Pure: whether a run asked for debug SSH, for how long, and whether its result gets a window; who
// may log in (the actor) and where the forge publishes that user's public keys. Decided from the
// JobRequest, its opened secrets and the orchestrator's policy; no I/O, no clock.
import type { JobResult } from "../contract/job-event.js";
import type { JobRequest } from "../contract/job-request.js";

/** on-failure: only a failed job is held; always: every job that was not cancelled. */
export type DebugMode = "on-failure" | "always";

/** What the orchestrator allows (orchestrator.debugSsh). */
export interface DebugSshPolicy {
  /** The window when the run does not say. */
  readonly windowMs: number;
  /** The longest window a run may ask for. */
  readonly maxWindowMs: number;
  /** The mode of a run that asks without naming one. */
  readonly mode: DebugMode;
  /** Whether debug logging (ACTIONS_RUNNER_DEBUG / ACTIONS_STEP_DEBUG) asks for debug SSH. */
  readonly onDebugLogging: boolean;
}

/** The variable (or secret) a run names its mode with: on-failure, always, true, or off. */
export const DEBUG_SSH_VARIABLE = "GNOMON_DEBUG_SSH";
/** The variable a run asks for a longer or shorter window with, in minutes (at most maxWindow). */
export const DEBUG_SSH_MINUTES_VARIABLE = "GNOMON_DEBUG_SSH_MINUTES";
/** What GitHub's "re-run with debug logging" sets, and what users set as secrets or variables. */
export const DEBUG_LOGGING_VARIABLES = ["ACTIONS_RUNNER_DEBUG", "ACTIONS_STEP_DEBUG"] as const;

export type DebugAsk =
  /** The run did not ask (or said off). */
  | { readonly kind: "none" }
  /** It asked in a way gnomon cannot read: the job's log says so, and nothing is held. */
  | { readonly kind: "invalid"; readonly message: string }
  | {
      readonly kind: "asked";
      readonly mode: DebugMode;
      readonly windowMs: number;
      /** How it asked, for the job's log: `variable GNOMON_DEBUG_SSH=always`, `debug logging (ACTIONS_STEP_DEBUG)`. */
      readonly why: string;
      /** Things the job's log should say about the request (a window shortened to the maximum …). */
      readonly notes: readonly string[];
    };

type Source = { readonly value: string; readonly where: string };

/** A variable of the run by name, any case (GitHub's names are case-insensitive): vars first, then secrets. */
function lookup(
  name: string,
  vars: Readonly<Record<string, string>>,
  secrets: Readonly<Record<string, string>>,
): Source | undefined {
  for (const [where, bag] of [
    ["variable", vars],
    ["secret", secrets],
  ] as const) {
    const key = Object.keys(bag).find((k) => k.toUpperCase() === name);
    if (key !== undefined) return { value: bag[key]!.trim(), where: `${where} ${name}` };
  }
  return undefined;
}

const TRUE = /^(true|1|yes|on)$/i;
const FALSE = /^(false|0|no|off|never)?$/i;

export function debugAskOf(
  req: Pick<JobRequest, "contexts" | "debugLogging">,
  secrets: Readonly<Record<string, string>>,
  policy: DebugSshPolicy,
): DebugAsk {
  const vars = req.contexts.vars;
  let mode: DebugMode | undefined;
  let why: string | undefined;
  const named = lookup(DEBUG_SSH_VARIABLE, vars, secrets);
  if (named) {
    const v = named.value.toLowerCase();
    if (v === "on-failure" || v === "always") mode = v;
    else if (TRUE.test(v)) mode = policy.mode;
    else if (FALSE.test(v)) return { kind: "none" };
    else
      return {
        kind: "invalid",
        message: `debug SSH: ${named.where}=${JSON.stringify(named.value)} is not understood; set it to on-failure, always or off`,
      };
    why = `${named.where}=${named.value}`;
  } else if (policy.onDebugLogging) {
    const flag = DEBUG_LOGGING_VARIABLES.map((n) => lookup(n, vars, secrets)).find((s) => s && TRUE.test(s.value));
    if (flag) why = `debug logging (${flag.where})`;
    else if (req.debugLogging) why = "debug logging (the run was started with debug logging)";
    if (why) mode = policy.mode;
  }
  if (!mode || !why) return { kind: "none" };

  const notes: string[] = [];
  let windowMs = policy.windowMs;
  const minutes = lookup(DEBUG_SSH_MINUTES_VARIABLE, vars, secrets);
  if (minutes) {
    const n = /^\d{1,6}$/.test(minutes.value) ? Number(minutes.value) : Number.NaN;
    if (!(n >= 1))
      notes.push(
        `debug SSH: ${minutes.where}=${JSON.stringify(minutes.value)} is not a whole number of minutes (1 or more); using ${policy.windowMs / 60_000} minutes`,
      );
    else if (n * 60_000 > policy.maxWindowMs) {
      windowMs = policy.maxWindowMs;
      notes.push(
        `debug SSH: ${minutes.where} asks for ${n} minutes; this host allows at most ${policy.maxWindowMs / 60_000}`,
      );
    } else windowMs = n * 60_000;
  }
  return { kind: "asked", mode, windowMs, why, notes };
}

/** Whether a job that ended with `result` is held for a run that asked in `mode`. A cancelled job never is. */
export function holdsFor(mode: DebugMode, result: JobResult): boolean {
  return mode === "always" ? result !== "cancelled" : result === "failure";
}

/**
 * Who may log in: the user who started this run (GitHub's triggering_actor, who may have re-run
 * someone else's run with debug logging), else the run's actor. Undefined when the job names none.
 */
export function actorOf(req: Pick<JobRequest, "contexts">): string | undefined {
  const github = req.contexts.github;
  for (const key of ["triggering_actor", "actor"]) {
    const v = github[key];
    if (typeof v === "string" && /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(v)) return v;
  }
  return undefined;
}

/** The forge's REST API of the job: github.api_url, else what the forge's own default is. */
export function apiUrlOf(req: Pick<JobRequest, "contexts" | "source">): string | undefined {
  const api = req.contexts.github["api_url"];
  if (typeof api === "string" && /^https?:\/\//.test(api)) return api.replace(/\/+$/, "");
  const instance = req.source.instance.replace(/\/+$/, "");
  if (!/^https?:\/\//.test(instance)) return undefined;
  switch (req.source.forge) {
    case "forgejo":
      return `${instance}/api/v1`;
    case "github":
      return instance === "https://github.com" ? "https://api.github.com" : `${instance}/api/v3`;
    case "local":
      return undefined;
  }
}

/** Where the forge lists a user's public SSH keys (GitHub and Forgejo both: GET /users/{name}/keys). */
export function keysUrlOf(apiUrl: string, actor: string, forge: JobRequest["source"]["forge"]): string {
  // One page of the most keys each forge returns at once: GitHub 100, Forgejo 50.
  const page = forge === "github" ? "per_page=100" : "limit=50";
  return `${apiUrl}/users/${encodeURIComponent(actor)}/keys?${page}`;
}
