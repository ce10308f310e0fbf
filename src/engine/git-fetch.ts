// Where a git fetch runs. On a machine that has git, in the machine. On one that has none (a
// minimal OmniOS cloud image, say) but whose gnomon host has git, on the gnomon host, in a folder
// of its own that is then uploaded into the machine and removed; so actions/checkout and remote
// actions still work there. The host side is fenced in: no user or system git configuration (no
// credential helpers, no ssh keys), only http(s) transports, no prompts.
import { randomUUID } from "node:crypto";
import type { Executor, RunResult } from "../executor/executor.js";
import type { JobRuntime } from "./runtime.js";

export interface GitFetch {
  /** A sh script that fetches into the folder named by `dirVar` (it creates the folder). */
  readonly script: string;
  readonly dirVar: string;
  /** Where the result must end up on the machine. */
  readonly targetDir: string;
  readonly env: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
  readonly onLine: (stream: "stdout" | "stderr", line: string) => void;
}

/**
 * The gnomon host's git, made ready on first use (most jobs run where git is and never need it),
 * and only if the host has git. Closed with the job.
 */
export class HostGit {
  readonly #create: () => Promise<Executor>;
  #ready: Promise<Executor | undefined> | undefined;

  constructor(create: () => Promise<Executor>) {
    this.#create = create;
  }

  get(): Promise<Executor | undefined> {
    this.#ready ??= (async () => {
      const host = await this.#create();
      const r = await host.run({
        argv: ["sh", "-c", "command -v git >/dev/null 2>&1"],
        env: {},
        cwd: host.platform.tempDir,
        signal: AbortSignal.timeout(30_000),
        onLine: () => {},
      });
      if (r.exitCode === 0) return host;
      await host.close();
      return undefined;
    })();
    return this.#ready;
  }

  async close(): Promise<void> {
    const host = await this.#ready?.catch(() => undefined);
    await host?.close();
  }
}

/** True when a fetch can run: the machine has git, or the gnomon host has it and is offered. */
export async function hasGitSomewhere(job: JobRuntime): Promise<boolean> {
  return job.facts.hasGit || (await job.hostGit?.get()) !== undefined;
}

/**
 * Runs `f.script` where git is. On the host it fetches into a fresh host folder and then copies
 * that folder's contents into `f.targetDir` on the machine (which is emptied first).
 */
export async function runGitFetch(job: JobRuntime, f: GitFetch): Promise<RunResult> {
  if (job.facts.hasGit)
    return job.executor.run({
      argv: ["sh", "-c", f.script],
      env: { ...f.env, [f.dirVar]: f.targetDir },
      cwd: job.paths.temp,
      signal: f.signal,
      onLine: f.onLine,
    });
  const host = await job.hostGit?.get();
  // Callers say what is missing in their own words first (hasGitSomewhere).
  if (!host) throw new Error("runGitFetch: neither the machine nor the gnomon host has git");
  const dir = `${host.platform.tempDir}/git-fetch-${randomUUID()}`;
  const scratch = `${dir}.home`;
  await host.mkdirp(scratch);
  try {
    const r = await host.run({
      argv: ["sh", "-c", f.script],
      env: { ...f.env, ...fencedGitEnv(f.env, scratch), [f.dirVar]: dir },
      cwd: scratch,
      signal: f.signal,
      onLine: f.onLine,
    });
    if (r.exitCode !== 0) return r;
    await emptyDir(job.executor, job.paths.temp, f.targetDir, f.signal);
    await job.executor.uploadDir(dir, f.targetDir, { signal: f.signal });
    return r;
  } finally {
    await removeDirs(host, [dir, scratch]);
  }
}

/** git on the gnomon host must not use the host's own configuration or credentials. */
function fencedGitEnv(env: Readonly<Record<string, string>>, home: string): Record<string, string> {
  const fileAllowed = Object.values(env).some((v) => v.startsWith("file://"));
  return {
    HOME: home,
    XDG_CONFIG_HOME: home,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "",
    SSH_ASKPASS: "",
    // file: only when the job's own server is a local path (tests and air-gapped mirrors).
    GIT_ALLOW_PROTOCOL: fileAllowed ? "https:http:file" : "https:http",
  };
}

async function emptyDir(executor: Executor, cwd: string, dir: string, signal: AbortSignal): Promise<void> {
  const r = await executor.run({
    argv: ["sh", "-c", 'mkdir -p "$1" && cd "$1" && find . -mindepth 1 -maxdepth 1 -exec rm -rf {} +', "sh", dir],
    env: {},
    cwd,
    signal,
    onLine: () => {},
  });
  if (r.exitCode !== 0) throw new Error(`could not empty ${dir} on the machine (exit ${r.exitCode ?? r.signal})`);
}

async function removeDirs(host: Executor, dirs: readonly string[]): Promise<void> {
  await host
    .run({
      argv: ["rm", "-rf", ...dirs],
      env: {},
      cwd: host.platform.tempDir,
      signal: AbortSignal.timeout(60_000),
      onLine: () => {},
    })
    .catch(() => undefined);
}
