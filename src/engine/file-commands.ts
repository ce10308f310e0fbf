// The per-step files behind GITHUB_ENV, GITHUB_PATH, GITHUB_OUTPUT, GITHUB_STATE and
// GITHUB_STEP_SUMMARY: created empty on the executor before a step, read back after it.
import { randomUUID } from "node:crypto";
import { FileNotFoundError } from "../executor/executor.js";
import { EnvFileError, parseEnvFile, parsePathFile } from "./env-files.js";
import type { JobRuntime } from "./runtime.js";

export interface FileCommandPaths {
  readonly env: string;
  readonly path: string;
  readonly output: string;
  readonly state: string;
  readonly summary: string;
}

export interface FileCommandResults {
  readonly env: [string, string][];
  readonly path: string[];
  readonly output: [string, string][];
  readonly state: [string, string][];
  readonly summary: string;
  /** Why a file could not be read, as sentences for the step's log (the step fails). */
  readonly errors: string[];
  /** Why the summary was dropped (an error line; the step does not fail, as on GitHub). */
  readonly summaryError?: string;
}

/** GitHub limits a step summary to 1 MiB. */
export const MAX_SUMMARY_BYTES = 1024 * 1024;

export async function createFileCommands(job: JobRuntime): Promise<FileCommandPaths> {
  const id = randomUUID();
  const dir = job.paths.fileCommands;
  const paths: FileCommandPaths = {
    env: `${dir}/set_env_${id}`,
    path: `${dir}/add_path_${id}`,
    output: `${dir}/set_output_${id}`,
    state: `${dir}/save_state_${id}`,
    summary: `${dir}/step_summary_${id}`,
  };
  // In parallel: over ssh each file is a round trip, and steps are many.
  await Promise.all(Object.values(paths).map((p) => job.executor.writeFile(p, "")));
  return paths;
}

export function fileCommandEnv(p: FileCommandPaths): Record<string, string> {
  return {
    GITHUB_ENV: p.env,
    GITHUB_PATH: p.path,
    GITHUB_OUTPUT: p.output,
    GITHUB_STATE: p.state,
    GITHUB_STEP_SUMMARY: p.summary,
  };
}

export async function readFileCommands(job: JobRuntime, p: FileCommandPaths): Promise<FileCommandResults> {
  const errors: string[] = [];
  const read = async (path: string): Promise<string> => {
    try {
      return (await job.executor.readFile(path)).toString("utf8");
    } catch (err) {
      if (err instanceof FileNotFoundError) return ""; // the step deleted it
      throw err;
    }
  };
  const pairs = async (path: string, name: string): Promise<[string, string][]> => {
    try {
      return parseEnvFile(await read(path));
    } catch (err) {
      if (!(err instanceof EnvFileError)) throw err;
      errors.push(`Unable to process file command '${name}' successfully: ${err.message}`);
      return [];
    }
  };
  const [env, output, state, pathText, summary] = await Promise.all([
    pairs(p.env, "env"),
    pairs(p.output, "output"),
    pairs(p.state, "state"),
    read(p.path),
    read(p.summary),
  ]);
  const path = parsePathFile(pathText);
  if (Buffer.byteLength(summary) > MAX_SUMMARY_BYTES)
    return {
      env,
      path,
      output,
      state,
      summary: "",
      errors,
      summaryError: `The step summary is ${Math.round(Buffer.byteLength(summary) / 1024)} KiB; at most 1024 KiB are allowed, so it was dropped`,
    };
  return { env, path, output, state, summary, errors };
}
