// JobRequest v1: what a forge runner puts on the queue for an orchestrator. The job spec is
// platform-neutral (steps as serialized template tokens, `${{ }}` unevaluated) and secrets are
// sealed; nothing in here is plaintext that a queue operator must not read.
import { z } from "zod";
import { SealedSecrets } from "./sealed-secrets.js";
import { SerializedToken } from "./template-token.js";

const common = {
  /** The step id the `steps` context knows: the user's `id:`, or a generated `__N`. */
  id: z.string().min(1),
  /** Display name as written (may hold expressions); absent: derived from `run`/`uses`. */
  name: SerializedToken.optional(),
  /** The step's condition as expression text without `${{ }}`, e.g. `success()`. */
  if: z.string().default("success()"),
  continueOnError: SerializedToken.optional(),
  timeoutMinutes: SerializedToken.optional(),
  /** A mapping token: the step's `env:`. */
  env: SerializedToken.optional(),
};

export const RunStep = z.object({
  ...common,
  kind: z.literal("run"),
  run: SerializedToken,
  shell: SerializedToken.optional(),
  workingDirectory: SerializedToken.optional(),
});

export const UsesStep = z.object({
  ...common,
  kind: z.literal("uses"),
  /** `actions/checkout@v4`, `./path`, `owner/repo/path@ref`, `docker://…` as written. */
  uses: z.string().min(1),
  /** A mapping token: the step's `with:`. */
  with: SerializedToken.optional(),
});

export const StepSpec = z.discriminatedUnion("kind", [RunStep, UsesStep]);
export type StepSpec = z.infer<typeof StepSpec>;

export const JobSpec = z.object({
  workflow: z.object({ name: z.string(), file: z.string().optional() }),
  /** The job's key in `jobs:` and its display name (matrix values already in it). */
  job: z.object({ id: z.string().min(1), name: z.string() }),
  /** `env:` mappings, outermost (workflow) first, each a mapping token. */
  env: z.array(SerializedToken).default([]),
  /** `defaults:` mappings, outermost (workflow) first, each a mapping token holding `run:`. */
  defaults: z.array(SerializedToken).default([]),
  steps: z.array(StepSpec).max(1_000),
  /** A mapping token: the job's `outputs:`. */
  outputs: SerializedToken.optional(),
  timeoutMinutes: z.number().positive().default(360),
  cancelTimeoutMinutes: z.number().positive().default(5),
  continueOnError: z.boolean().default(false),
  /** Present when the workflow asks for a job container or services, which VMs do not run. */
  container: SerializedToken.optional(),
  services: SerializedToken.optional(),
});
export type JobSpec = z.infer<typeof JobSpec>;

const json = z.unknown();
export const JobContexts = z.object({
  /**
   * The `github` context without the job's token, which travels sealed as secret GITHUB_TOKEN
   * (gnomon exec puts a placeholder `token` here when it has none: it authorises nothing).
   */
  github: z.record(z.string(), json),
  vars: z.record(z.string(), z.string()).default({}),
  matrix: json.default(null),
  strategy: json.default(null),
  needs: z.record(z.string(), json).default({}),
  inputs: z.record(z.string(), json).default({}),
  job: json.optional(),
});
export type JobContexts = z.infer<typeof JobContexts>;

export const JobSource = z.object({
  forge: z.enum(["forgejo", "github", "local"]),
  /** The forge's base URL, or "local" for `gnomon exec`. */
  instance: z.string().min(1),
  /** The registered runner (Forgejo runner uuid, GitHub agent id) that took the job. */
  runner: z.string().min(1),
  /** Forge-specific references: Forgejo task id, GitHub plan/job/request ids … */
  ref: z.record(z.string(), z.union([z.string(), z.number()])).default({}),
});
export type JobSource = z.infer<typeof JobSource>;

export const JobRequest = z.object({
  v: z.literal(1),
  /** The idempotency key of the job across the whole fleet. */
  id: z.string().uuid(),
  source: JobSource,
  /** The runner instance whose event stream receives this job's JobEvents. */
  replyTo: z.string().min(1),
  runsOn: z.string().min(1),
  spec: JobSpec,
  contexts: JobContexts,
  secrets: SealedSecrets,
  /** Where `uses: owner/repo@ref` resolves (https://github.com, https://code.forgejo.org …). */
  actionsUrl: z.string().url().default("https://github.com"),
  /**
   * The forge's Actions services for JavaScript actions (artifacts, caches, results): exported to
   * them as ACTIONS_RUNTIME_URL, ACTIONS_RESULTS_URL and ACTIONS_CACHE_URL. Their token is the
   * sealed secret ACTIONS_RUNTIME_TOKEN.
   */
  runtime: z
    .object({
      url: z.string().url().optional(),
      resultsUrl: z.string().url().optional(),
      cacheUrl: z.string().url().optional(),
      /**
       * The forge names the v2 cache service (GitHub's results service at resultsUrl): JavaScript
       * actions get ACTIONS_CACHE_SERVICE_V2, as the official runner sets it.
       */
      cacheServiceV2: z.boolean().optional(),
    })

    .default({}),
  /**
   * The run asked for debug logging in a way the contexts do not show: GitHub's "re-run with debug
   * logging" sets ACTIONS_RUNNER_DEBUG / ACTIONS_STEP_DEBUG among the job message's variables,
   * which are neither `vars` nor secrets. Absent from forge runners that do not know it.
   */
  debugLogging: z.boolean().optional(),
  queuedAt: z.string().datetime(),
  /** Do not start the job after this instant: its forge has given up on it by then. */
  startBy: z.string().datetime().optional(),
});
export type JobRequest = z.infer<typeof JobRequest>;
export type JobRequestInput = z.input<typeof JobRequest>;
