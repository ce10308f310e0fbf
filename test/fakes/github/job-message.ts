// The job message (spec 7) as the service builds it from a test's JobScript, and as a runner receives
// it: from acquirejob (v2) or inside a classic PipelineAgentJobRequest message.
import { randomUUID } from "node:crypto";
import { type GitHubBooks, REPO, ZERO_GUID } from "./books.js";
import type { FakeJob, JobScript, StepScript } from "./shapes.js";

const DEFAULT_STEPS: readonly StepScript[] = [
  { uses: "actions/checkout@v4" },
  { name: "Say hello", run: "echo hello ${{ matrix.os }}" },
];

/** `format('echo {0}', matrix.os)` for `echo ${{ matrix.os }}`, as the service sends mixed strings. */
function toFormatExpression(text: string): Record<string, unknown> | string {
  const parts: string[] = [];
  const args: string[] = [];
  let last = 0;
  for (const m of text.matchAll(/\$\{\{\s*(.+?)\s*\}\}/g)) {
    parts.push(text.slice(last, m.index).replace(/'/g, "''").replace(/\{/g, "{{").replace(/\}/g, "}}"));
    parts.push(`{${args.length}}`);
    args.push(m[1]!);
    last = (m.index ?? 0) + m[0].length;
  }
  if (args.length === 0) return text;
  parts.push(text.slice(last).replace(/'/g, "''").replace(/\{/g, "{{").replace(/\}/g, "}}"));
  if (parts.length === 3 && parts[0] === "" && parts[2] === "")
    return { type: 3, expr: args[0]!, file: 1, line: 9, col: 14 };
  return { type: 3, expr: `format('${parts.join("")}', ${args.join(", ")})`, file: 1, line: 9, col: 14 };
}

function lit(s: string) {
  return { type: 0, lit: s };
}

function dict(o: Record<string, unknown>): unknown {
  return {
    t: 2,
    d: Object.entries(o).map(([k, v]) => ({
      k,
      v: typeof v === "object" && v !== null && !Array.isArray(v) ? dict(v as Record<string, unknown>) : v,
    })),
  };
}

export function jobMessage(
  gh: GitHubBooks,
  jobId: string,
  planId: string,
  githubToken: string,
  accessToken: string,
  script: JobScript,
): Record<string, unknown> {
  const steps = (script.steps ?? DEFAULT_STEPS).map((s, i) => {
    const contextName =
      s.id ??
      (s.uses ? `__${s.uses.split("@")[0]!.replace(/[^A-Za-z0-9]/g, "_")}` : i === 0 ? "__run" : `__run_${i + 1}`);
    const base: Record<string, unknown> = {
      type: "action",
      id: randomUUID(),
      name: contextName,
      contextName,
      condition: "success()",
      continueOnError: null,
      timeoutInMinutes: null,
    };
    if (s.name) base["displayNameToken"] = { type: 0, lit: s.name, file: 1, line: 7 + i, col: 15 };
    if (s.env)
      base["environment"] = {
        type: 2,
        map: Object.entries(s.env).map(([k, v]) => ({ Key: lit(k), Value: toFormatExpression(v) })),
      };
    if (s.uses) {
      const [name, ref] = s.uses.split("@") as [string, string];
      base["reference"] = { type: "repository", name, ref, repositoryType: "GitHub" };
      if (s.with)
        base["inputs"] = {
          type: 2,
          map: Object.entries(s.with).map(([k, v]) => ({ Key: lit(k), Value: toFormatExpression(v) })),
        };
    } else {
      base["reference"] = { type: "script" };
      // One step uses lower-case pair names: the service's casing is not guaranteed (spec 7.5).
      const pair = (k: string, v: unknown) => (i % 2 === 0 ? { Key: lit(k), Value: v } : { key: lit(k), value: v });
      base["inputs"] = { type: 2, map: [pair("script", toFormatExpression(s.run ?? "true"))] };
    }
    return { ...base, ...s.raw };
  });
  const variables: Record<string, { value: string; isSecret?: boolean }> = {
    "system.github.token": { value: githubToken, isSecret: true },
    github_token: { value: githubToken, isSecret: true },
    "system.github.job": { value: "build" },
    "system.github.results_endpoint": { value: `${gh.url}/results/` },
    // github.com's feature flag for the v2 cache service (the results service); GHES has none.
    actions_uses_cache_service_v2: { value: "true" },
    "system.runnerGroupName": { value: "Default" },
    "DistributedTask.NewActionMetadata": { value: "true" },
  };
  for (const [k, v] of Object.entries(script.variables ?? {})) variables[k] = { value: v };
  for (const [k, v] of Object.entries(script.secrets ?? {})) variables[k] = { value: v, isSecret: true };
  const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return {
    messageType: "RunnerJobRequest",
    plan: {
      scopeIdentifier: ZERO_GUID,
      planType: "actions",
      version: 0,
      planId,
      artifactUri: "",
      artifactLocation: "",
    },
    timeline: { id: planId, changeId: 0, location: null },
    jobId,
    jobDisplayName: script.name ?? "build (linux)",
    jobName: "__default",
    requestId: 0,
    lockedUntil: "0001-01-01T00:00:00",
    jobContainer: null,
    jobServiceContainers: null,
    jobOutputs: script.outputs
      ? {
          type: 2,
          map: Object.entries(script.outputs).map(([k, v]) => ({ Key: lit(k), Value: { type: 3, expr: v } })),
        }
      : null,
    resources: { endpoints: [] },
    contextData: {
      github: dict({
        repository: REPO,
        repository_owner: "gnomon-org",
        workflow: "ci",
        server_url: gh.url,
        api_url: `${gh.url}/api/v3`,
        event_name: "push",
        ref: "refs/heads/main",
        sha: "e607a7aae26e113aa3d8ecf1c26c62e0d74192eb",
        run_id: "36038637634",
        run_attempt: "1",
        event: { ref: "refs/heads/main", repository: { private: false, name: "gnomon-repo" } },
        ...script.github,
      }),
      matrix: dict(script.matrix ?? { os: "linux" }),
      strategy: dict({ "fail-fast": true, "job-index": 0, "job-total": 1, "max-parallel": 1 }),
      needs: { t: 2 },
      inputs: { t: 2, d: [] },
      vars: dict({ GREETING: "hello" }),
      job: dict({ check_run_id: 107764987530, workflow_file_path: ".github/workflows/ci.yml" }),
    },
    mask: [
      ...Object.values(script.secrets ?? {}).map((v) => ({ type: "regex", value: escapeRegex(v) })),
      { type: "regex", value: escapeRegex(githubToken) },
    ],
    environmentVariables: [{ type: 2, map: [{ Key: lit("CI_VAR"), Value: lit("yes") }] }],
    defaults: [],
    variables,
    steps,
    fileTable: [".github/workflows/ci.yml"],
    billingOwnerId: "U_kgDOAH-IyQ",
    // filled per flow when delivered
    _accessToken: accessToken,
  };
}

export function deliveredMessage(gh: GitHubBooks, job: FakeJob, flow: "v2" | "classic"): Record<string, unknown> {
  const { _accessToken, ...m } = job.message;
  const runUrl = `${gh.url}/run/`;
  const endpoint = {
    name: "SystemVssConnection",
    url: flow === "v2" ? runUrl : `${gh.tenantUrl}/`,
    authorization: { scheme: "OAuth", parameters: { AccessToken: String(_accessToken) } },
    data: {
      ResultsServiceUrl: `${gh.url}/results/`,
      FeedStreamUrl: `${gh.url.replace(/^http:/, "ws:")}/_ws/ingest.sock`,
      CacheServerUrl: `${gh.url}/cache/`,
      GenerateIdTokenUrl: "",
      ServerId: "",
    },
    isShared: false,
    isReady: true,
  };
  if (flow === "v2") return { ...m, resources: { endpoints: [endpoint] } };
  const {
    ["system.github.results_endpoint"]: _r,
    actions_uses_cache_service_v2: _c,
    ...vars
  } = m["variables"] as Record<string, unknown>;
  return {
    ...m,
    messageType: "PipelineAgentJobRequest",
    plan: { ...(m["plan"] as object), planType: "Actions", version: gh.opts.classicPlanVersion },
    requestId: job.requestId,
    resources: { endpoints: [endpoint] },
    variables: vars,
  };
}
