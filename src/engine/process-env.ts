// The environment of a step's process: CI, the env context, the default GITHUB_* and RUNNER_*
// variables (which a workflow cannot override, as on GitHub), the file-command paths, and PATH
// with the GITHUB_PATH additions in front.
import type { FileCommandPaths } from "./file-commands.js";
import { fileCommandEnv } from "./file-commands.js";
import type { Frame } from "./runtime.js";

/** github context keys exposed as GITHUB_<KEY> variables. */
const GITHUB_VARS = [
  "actor",
  "actor_id",
  "api_url",
  "base_ref",
  "event_name",
  "graphql_url",
  "head_ref",
  "job",
  "ref",
  "ref_name",
  "ref_protected",
  "ref_type",
  "repository",
  "repository_id",
  "repository_owner",
  "repository_owner_id",
  "retention_days",
  "run_attempt",
  "run_id",
  "run_number",
  "server_url",
  "sha",
  "triggering_actor",
  "workflow",
  "workflow_ref",
  "workflow_sha",
] as const;

export function processEnv(
  frame: Frame,
  envContext: Readonly<Record<string, string>>,
  files: FileCommandPaths | undefined,
  action: string,
): Record<string, string> {
  const job = frame.job;
  const github = job.machineGithub;
  const vars: Record<string, string> = { CI: "true", ...envContext };
  for (const key of GITHUB_VARS) {
    const v = github[key];
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean")
      vars[`GITHUB_${key.toUpperCase()}`] = String(v);
  }
  vars["GITHUB_ACTIONS"] = "true";
  vars["GITHUB_ACTION"] = action;
  vars["GITHUB_WORKSPACE"] = job.paths.workspace;
  vars["GITHUB_EVENT_PATH"] = job.paths.eventPath;
  if (frame.action) {
    vars["GITHUB_ACTION_PATH"] = frame.action.path;
    vars["GITHUB_ACTION_REPOSITORY"] = frame.action.repository;
    vars["GITHUB_ACTION_REF"] = frame.action.ref;
  }
  if (files) Object.assign(vars, fileCommandEnv(files));
  const p = job.executor.platform;
  Object.assign(vars, {
    RUNNER_ARCH: p.arch,
    RUNNER_OS: p.os,
    RUNNER_NAME: job.runnerName,
    RUNNER_ENVIRONMENT: "self-hosted",
    RUNNER_TEMP: job.paths.temp,
    RUNNER_TOOL_CACHE: job.paths.toolCache,
    RUNNER_WORKSPACE: job.paths.runnerWorkspace,
  });
  if (job.debug) vars["RUNNER_DEBUG"] = "1";
  if (job.prependPath.length > 0)
    vars["PATH"] = [...job.prependPath, envContext["PATH"] ?? job.facts.basePath].filter((x) => x !== "").join(":");
  return vars;
}
