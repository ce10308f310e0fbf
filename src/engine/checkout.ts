// actions/checkout done natively, so machines without Node.js (illumos guests) can check out:
// `gnomon exec` copies the local working tree; forge jobs fetch the job's commit with git from
// github.server_url using the job token, which never appears on a command line.
import type { StepSpec } from "../contract/job-request.js";
import { evaluateStringMap } from "../workflow/expressions.js";
import type { ActionReference } from "./action-source.js";
import { hasGitSomewhere, runGitFetch } from "./git-fetch.js";
import type { Conclusion } from "./runtime.js";
import { annotate } from "./step-output.js";
import { evaluateIn, resolvePath, type StepBody, type StepCall } from "./step-runner.js";

export function isCheckout(ref: Extract<ActionReference, { kind: "remote" }>): boolean {
  return ref.owner.toLowerCase() === "actions" && ref.repo.toLowerCase() === "checkout" && ref.path === "";
}

const DEFAULTS: Readonly<Record<string, string>> = {
  ref: "",
  path: ".",
  clean: "true",
  "fetch-depth": "1",
  "fetch-tags": "false",
  "persist-credentials": "true",
  submodules: "false",
  lfs: "false",
};

const SCRIPT = String.raw`set -e
mkdir -p "$DIR" && cd "$DIR"
if [ -d .git ]; then
  if [ "$CLEAN" = true ]; then git clean -ffdx -q && git reset -q --hard HEAD 2>/dev/null || true; fi
else
  git init -q
fi
git remote remove origin 2>/dev/null || true
git remote add origin "$URL"
git config --local gc.auto 0
depth=""; [ "$DEPTH" != 0 ] && depth="--depth=$DEPTH"
tags="--no-tags"; [ "$FETCH_TAGS" = true ] && tags="--tags"
echo "Fetching $WHAT from $URL"
git fetch -q $tags --prune --no-recurse-submodules $depth origin "$WANT"
if [ -n "$BRANCH" ]; then git checkout -q --force -B "$BRANCH" FETCH_HEAD; else git checkout -q --force --detach FETCH_HEAD; fi
if [ "$SUBMODULES" = true ] || [ "$SUBMODULES" = recursive ]; then
  rec=""; [ "$SUBMODULES" = recursive ] && rec="--recursive"
  git submodule sync $rec
  git submodule update --init --force $rec $depth
fi
if [ "$LFS" = true ]; then git lfs install --local && git lfs pull; fi
if [ "$PERSIST" = true ] && [ -n "$AUTH" ]; then
  # printf is a shell builtin: the header does not show on any process's command line.
  printf '[http "%s/"]\n\textraheader = %s\n' "$SERVER" "$AUTH" >> .git/config
fi
echo "commit=$(git rev-parse HEAD)"
`;

const UNPERSIST = `cd "$DIR" 2>/dev/null || exit 0
git config --local --unset-all "http.$SERVER/.extraheader" 2>/dev/null || true
`;

const isSha = (s: string) => /^[0-9a-f]{40}([0-9a-f]{24})?$/i.test(s);

export async function runCheckout(call: StepCall, step: Extract<StepSpec, { kind: "uses" }>): Promise<StepBody> {
  const { frame } = call;
  const job = frame.job;
  const github = job.contexts.github;
  const given = await evaluateIn(frame, call.env, (s) => evaluateStringMap(step.with, s), call.signal);
  const inputs = { ...DEFAULTS, ...given };
  const repository = inputs["repository"] || String(github["repository"] ?? "");
  const target = resolvePath(job.paths.workspace, inputs["path"]);
  const own = repository.toLowerCase() === String(github["repository"] ?? "").toLowerCase();

  if (job.checkout.kind === "local" && own) {
    frame.line(`Copying the local working tree ${job.checkout.dir} to ${target} (uncommitted changes included)`);
    if (inputs["clean"] === "true")
      await job.executor.run({
        argv: [
          "sh",
          "-c",
          'mkdir -p "$1" && cd "$1" && find . -mindepth 1 -maxdepth 1 -exec rm -rf {} +',
          "sh",
          target,
        ],
        env: {},
        cwd: job.paths.temp,
        signal: call.signal,
        onLine: (_s, l) => frame.line(l),
      });
    await job.executor.uploadDir(job.checkout.dir, target, { signal: call.signal, skip: job.checkout.skip });
    return { result: "success", outputs: { ref: String(github["ref"] ?? ""), commit: String(github["sha"] ?? "") } };
  }

  if (!(await hasGitSomewhere(job))) {
    annotate(
      frame,
      "error",
      job.hostGit
        ? "actions/checkout needs git, and neither the machine nor the gnomon host has it; install git in the image"
        : "actions/checkout needs git on the machine, and this one has none; install git in the image",
    );
    return { result: "failure", outputs: {} };
  }
  // Without git on the machine nothing there could use stored credentials, or remove them after.
  const persist = inputs["persist-credentials"] === "true" && job.facts.hasGit;
  if (!job.facts.hasGit)
    frame.line(
      `The machine has no git: fetching on the gnomon host and copying the checkout (with its .git) to ${target}`,
    );
  const forgeServer = String(github["server_url"] ?? "https://github.com").replace(/\/+$/, "");
  // git on the machine reaches the forge as the machine does (a forge on the gnomon host is
  // forwarded into it, maybe on another port); git on the gnomon host, as the forge is.
  const server = job.facts.hasGit ? job.machineUrl(forgeServer) : forgeServer;
  const url = `${server}/${repository}`;
  const ref = inputs["ref"] ?? "";
  const githubRef = String(github["ref"] ?? "");
  let want: string;
  let branch = "";
  if (ref === "") {
    const sha = own ? String(github["sha"] ?? "") : "";
    want = sha || githubRef || "HEAD";
    if (githubRef.startsWith("refs/heads/")) branch = githubRef.slice("refs/heads/".length);
  } else {
    want = ref;
    if (ref.startsWith("refs/heads/")) branch = ref.slice("refs/heads/".length);
    else if (!isSha(ref) && !ref.startsWith("refs/")) branch = ref;
  }
  const token = inputs["token"] ?? job.secrets["GITHUB_TOKEN"] ?? "";
  const auth = token ? `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}` : "";
  if (token) {
    job.log.masker.add(token);
    job.log.masker.add(auth);
  }
  const env: Record<string, string> = {
    URL: url,
    SERVER: server,
    WANT: want,
    WHAT: ref === "" && want.length === 40 ? `${githubRef || "the commit"} (${want})` : want,
    BRANCH: branch,
    DEPTH: inputs["fetch-depth"] ?? "1",
    FETCH_TAGS: inputs["fetch-tags"] ?? "false",
    CLEAN: inputs["clean"] ?? "true",
    SUBMODULES: inputs["submodules"] ?? "false",
    LFS: inputs["lfs"] ?? "false",
    PERSIST: persist ? "true" : "false",
    AUTH: auth,
    GIT_TERMINAL_PROMPT: "0",
  };
  if (auth)
    Object.assign(env, {
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: `http.${server}/.extraheader`,
      GIT_CONFIG_VALUE_0: auth,
    });
  let commit = "";
  const r = await runGitFetch(job, {
    script: SCRIPT,
    dirVar: "DIR",
    targetDir: target,
    env,
    signal: call.signal,
    onLine: (_s, l) => {
      const m = /^commit=([0-9a-f]+)$/.exec(l);
      if (m?.[1]) commit = m[1];
      else frame.line(l);
    },
  });
  if (r.exitCode !== 0) {
    annotate(
      frame,
      "error",
      `actions/checkout could not fetch ${want} from ${url} (git exited with ${r.exitCode ?? r.signal}); check the repository, the ref and the job token's access`,
    );
    return { result: call.signal.aborted ? "cancelled" : "failure", outputs: {} };
  }
  if (persist && auth)
    job.posts.push({
      index: frame.index,
      name: `Post ${call.name}`,
      condition: "always()",
      frame,
      run: async (_f, signal): Promise<Conclusion> => {
        const u = await job.executor.run({
          argv: ["sh", "-c", UNPERSIST],
          env: { DIR: target, SERVER: server },
          cwd: job.paths.temp,
          signal,
          onLine: () => {},
        });
        return u.exitCode === 0 ? "success" : "failure";
      },
    });
  return { result: "success", outputs: { ref: ref || githubRef, commit } };
}
