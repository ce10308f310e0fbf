// Where a `uses:` action comes from: a local directory in the workspace, a repository from the job's
// actions URL (from the gnomon host's action cache when there is one, else fetched with git where
// git runs), or something gnomon cannot run. Loads and validates the action's metadata file.
import { FileNotFoundError } from "../executor/executor.js";
import type { ActionDefinition } from "../workflow/action-file.js";
import { WorkflowError } from "../workflow/errors.js";
import { readActionFile } from "../workflow/parse-thread.js";
import { hasGitSomewhere, runGitFetch } from "./git-fetch.js";
import type { CachedAction } from "./host-actions.js";
import type { JobRuntime } from "./runtime.js";

export type ActionReference =
  | { readonly kind: "local"; readonly path: string }
  | {
      readonly kind: "remote";
      readonly owner: string;
      readonly repo: string;
      /** Sub-directory of the repository holding action.yml ("" for the root). */
      readonly path: string;
      readonly ref: string;
    }
  | { readonly kind: "docker"; readonly image: string }
  | { readonly kind: "invalid"; readonly reason: string };

/** A step's `uses:` value as a reference. */
export function parseUses(uses: string): ActionReference {
  if (uses.startsWith("docker://")) return { kind: "docker", image: uses.slice("docker://".length) };
  if (uses.startsWith("./") || uses === ".") return { kind: "local", path: uses };
  const at = uses.lastIndexOf("@");
  const [owner, repo, ...rest] = (at < 0 ? uses : uses.slice(0, at)).split("/");
  const ref = at < 0 ? "" : uses.slice(at + 1);
  if (!owner || !repo || ref === "")
    return {
      kind: "invalid",
      reason: `'${uses}' is not an action reference: use ./path/in/repository, owner/repo@ref, owner/repo/path@ref or docker://image`,
    };
  return { kind: "remote", owner, repo, path: rest.join("/"), ref };
}

/** The action cannot be used; the step fails with this message. */
export class ActionUnavailableError extends Error {
  override readonly name = "ActionUnavailableError";
  readonly code = "engine.action-unavailable";
}

/** Loads action.yml (or action.yaml) from a directory on the executor. */
export async function loadAction(job: JobRuntime, dir: string, display: string): Promise<ActionDefinition> {
  for (const name of ["action.yml", "action.yaml"]) {
    let text: string;
    try {
      text = (await job.executor.readFile(`${dir}/${name}`)).toString("utf8");
    } catch (err) {
      if (err instanceof FileNotFoundError) continue;
      throw err;
    }
    try {
      // On the parser thread: an action.yml comes from the job, and may be built to be slow to read.
      return await readActionFile(`${display}/${name}`, text);
    } catch (err) {
      if (err instanceof WorkflowError)
        throw new ActionUnavailableError(`the action ${display} is invalid: ${err.message}`, { cause: err });
      throw err;
    }
  }
  let hasDockerfile = false;
  try {
    await job.executor.readFile(`${dir}/Dockerfile`);
    hasDockerfile = true;
  } catch {
    hasDockerfile = false;
  }
  if (hasDockerfile) throw dockerUnsupported(display);
  throw new ActionUnavailableError(
    `Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '${dir}'. Did you forget to run actions/checkout before running your local action?`,
  );
}

export function dockerUnsupported(display: string): ActionUnavailableError {
  return new ActionUnavailableError(
    `${display} is a Docker container action, and gnomon runs steps directly on the machine, without a container runtime. Use a JavaScript or composite action, or a run step, instead.`,
  );
}

/** Where a remote action is fetched to; fetched once per job. */
export async function fetchRemoteAction(
  job: JobRuntime,
  ref: Extract<ActionReference, { kind: "remote" }>,
  signal: AbortSignal,
  fetched: Map<string, Promise<string>>,
): Promise<string> {
  const key = `${ref.owner}/${ref.repo}@${ref.ref}`.toLowerCase();
  let dir = fetched.get(key);
  if (!dir) {
    dir = gitFetch(job, ref, signal);
    fetched.set(key, dir);
  }
  const root = await dir;
  return ref.path === "" ? root : `${root}/${ref.path}`;
}

async function gitFetch(
  job: JobRuntime,
  ref: Extract<ActionReference, { kind: "remote" }>,
  signal: AbortSignal,
): Promise<string> {
  const name = `${ref.owner}/${ref.repo}@${ref.ref}`;
  const dir = `${job.paths.actions}/${ref.owner}/${ref.repo}/${ref.ref.replace(/[^A-Za-z0-9._-]/g, "_")}`;
  const base = job.actionsUrl.replace(/\/+$/, "");
  const url = `${base}/${ref.owner}/${ref.repo}`;
  const token = job.secrets["GITHUB_TOKEN"];
  const server = job.contexts.github["server_url"];
  // The job's token goes only to its own forge, never to a third-party actions host.
  const header =
    token && typeof server === "string" && sameOrigin(server, base)
      ? `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`
      : undefined;
  if (header) job.log.masker.add(header);
  job.log.line(null, "main", `Download action repository '${name}'`);
  if (job.actionCache) return await fromHostCache(job, { name, dir, url, ref: ref.ref, header }, signal);

  if (!(await hasGitSomewhere(job)))
    throw new ActionUnavailableError(
      job.hostGit
        ? `${name} must be fetched with git, and neither the machine nor the gnomon host has git; install git in the image`
        : `${name} must be fetched with git, and this machine has no git; install git in the image`,
    );
  // git on the machine reaches the forge as the machine does (forwarded into a VM, maybe on another port).
  const here = job.facts.hasGit ? job.machineUrl(base) : base;
  const env: Record<string, string> = {
    GNOMON_URL: `${here}/${ref.owner}/${ref.repo}`,
    GNOMON_REF: ref.ref,
    GIT_TERMINAL_PROMPT: "0",
  };
  if (header)
    Object.assign(env, {
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: `http.${here}/.extraheader`,
      GIT_CONFIG_VALUE_0: header,
    });
  const script = [
    "set -e",
    'rm -rf "$GNOMON_DIR" && mkdir -p "$GNOMON_DIR" && cd "$GNOMON_DIR"',
    "git init -q",
    'git remote add origin "$GNOMON_URL"',
    'git fetch -q --no-tags --depth=1 origin "$GNOMON_REF" 2>&1 || git fetch -q --no-tags origin "$GNOMON_REF" 2>&1',
    "git checkout -q --detach FETCH_HEAD",
  ].join("\n");
  const lines: string[] = [];
  const r = await runGitFetch(job, {
    script,
    dirVar: "GNOMON_DIR",
    targetDir: dir,
    env,
    signal,
    onLine: (_s, l) => lines.push(l),
  });
  if (r.exitCode !== 0)
    throw new ActionUnavailableError(
      `could not fetch the action ${name} from ${url}: ${[...new Set(lines)].slice(-2).join(" ") || `git exited with ${r.exitCode}`}. Check the name and ref, and that the machine can reach ${base}`,
    );
  return dir;
}

/**
 * The action from the gnomon host's cache (fetched there first on a miss), copied into `dir` on the
 * machine. The log says which commit the ref named, whether it came from the cache, and the times.
 */
async function fromHostCache(
  job: JobRuntime,
  a: { name: string; dir: string; url: string; ref: string; header: string | undefined },
  signal: AbortSignal,
): Promise<string> {
  const cache = job.actionCache!;
  let got: CachedAction;
  try {
    got = await cache.get({ url: a.url, ref: a.ref, authorization: a.header, signal });
  } catch (err) {
    signal.throwIfAborted();
    throw new ActionUnavailableError(
      `could not fetch the action ${a.name} from ${a.url} on the gnomon host: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const started = Date.now();
    await job.executor.uploadDir(got.dir, a.dir, { signal });
    const copied = seconds(Date.now() - started);
    job.log.line(
      null,
      "main",
      got.hit
        ? `'${a.name}' is ${got.commit}: from the gnomon host's action cache (resolved in ${seconds(got.resolveMs)} s), copied into the machine in ${copied} s`
        : `'${a.name}' is ${got.commit}: fetched on the gnomon host in ${seconds(got.resolveMs + got.fetchMs)} s and kept in its action cache, copied into the machine in ${copied} s`,
    );
    return a.dir;
  } finally {
    got.release();
  }
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}
