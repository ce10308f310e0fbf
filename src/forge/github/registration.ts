// Registration and removal (spec 3, 9.4): the runner-registration exchange, then the runner-admin
// REST path (github.com) or the classic pools/agents path (GHES), chosen by the server's answer.
// The RSA key is generated here; nothing is written to disk (the caller stores the result).
import { hostname, release, type } from "node:os";
import type { z } from "zod";
import { randomBetween } from "../../lifecycle/backoff.js";
import { retry } from "../../lifecycle/retry.js";
import { redactUrl } from "../../telemetry/redact.js";
import { RunnerTokens, sendAuthed } from "./auth.js";
import { describeRunner, oauthCredentials, type Registration } from "./credentials.js";
import { GitHubApiError, isTransient, RegistrationError } from "./errors.js";
import { ensureOk, type HttpCall, type HttpClient, readJson } from "./http.js";
import { LOCATION, Locations } from "./locations.js";
import { generateRunnerKey, publicKeyParts, publicKeyXml } from "./rsa-key.js";
import { type GitHubScope, parseGitHubUrl } from "./urls.js";
import {
  type AgentLabel,
  RunnerAdminResponse,
  RunnerGroupList,
  RunnerList,
  RunnerRegistrationResponse,
  TaskAgent,
  type TaskAgentBody,
  TaskAgentPool,
  vssList,
} from "./wire.js";

export interface RegisterOptions {
  readonly url: string;
  /** The registration token from "New self-hosted runner" (valid one hour). */
  readonly token: string;
  readonly name: string;
  /** The labels after `self-hosted`; the first is the runs-on label jobs are queued under. */
  readonly labels: readonly string[];
  readonly ephemeral: boolean;
  /** Runner group (classic: agent pool) by name; default: the default group. */
  readonly runnerGroup?: string;
  /** Replace an existing runner of the same name instead of failing. */
  readonly replace: boolean;
  readonly runnerVersion: string;
  readonly http: HttpClient;
  readonly signal?: AbortSignal;
  /** Waits between retries of one call; tests shorten them. */
  readonly retryDelayMs?: (attempt: number) => number;
}

export interface RegisterResult {
  readonly registration: Registration;
  /** Which path the server chose. */
  readonly flow: "runner-admin" | "classic";
  readonly group: string;
}

const CLASSIC_API = "5.1-preview.1";
const AGENTS_API = "6.0-preview.2";
const TIMEOUT_MS = 60_000;

/** The system label every gnomon runner carries; OS and architecture belong to the VM images, not the host. */
export const SYSTEM_LABELS = ["self-hosted"] as const;

export function osDescription(): string {
  return `${type()} ${release()} (gnomon on ${hostname()})`;
}

export function agentLabels(labels: readonly string[]): AgentLabel[] {
  const seen = new Set<string>();
  const out: AgentLabel[] = [];
  for (const [name, kind] of [
    ...SYSTEM_LABELS.map((l) => [l, "system"] as const),
    ...labels.map((l) => [l, "user"] as const),
  ]) {
    if (seen.has(name.toLowerCase())) continue;
    seen.add(name.toLowerCase());
    out.push({ id: 0, name, type: kind });
  }
  return out;
}

export async function register(opts: RegisterOptions): Promise<RegisterResult> {
  if (opts.labels.length === 0)
    throw new RegistrationError(
      "pass --labels with the runs-on label this runner serves (an image label of the catalog, e.g. --labels debian-12); " +
        "jobs reach the VMs of the first label",
    );
  const scope = parseGitHubUrl(opts.url);
  const auth = await exchangeToken(opts, scope, "register");
  if (auth.token_schema !== "OAuthAccessToken")
    throw new RegistrationError(
      `GitHub answered with token schema ${auth.token_schema}, which gnomon does not support; report this with your GitHub version`,
    );
  if (!scope.hosted) checkGhesTenant(scope, auth.url);
  return auth.use_v2_flow
    ? registerRunnerAdmin(opts, scope, auth.url)
    : registerClassic(opts, scope, auth.url, auth.token);
}

// ------------------------------------------------------------------ runner-admin (github.com)

async function registerRunnerAdmin(
  opts: RegisterOptions,
  scope: GitHubScope,
  tenantUrl: string,
): Promise<RegisterResult> {
  const key = generateRunnerKey();
  const remoteAuth = { Authorization: `RemoteAuth ${opts.token}` };
  const groups = await restJson(
    opts,
    { what: "list the runner groups", method: "GET", url: `${scope.scopedBase}/runner-groups`, headers: remoteAuth },
    RunnerGroupList,
  );
  const group = chooseGroup(
    groups.runner_groups.map((g) => ({ id: g.id, name: g.name, isDefault: g.default, isHosted: g.is_hosted })),
    opts.runnerGroup,
  );
  const existing = await restJson(
    opts,
    {
      what: "look for a runner of the same name",
      method: "GET",
      url: `${scope.scopedBase}/runners?name=${encodeURIComponent(opts.name)}`,
      headers: remoteAuth,
    },
    RunnerList,
  );
  const same = existing.runners.find((r) => r.name.toLowerCase() === opts.name.toLowerCase());
  if (same && !opts.replace) throw runnerExists(opts.name, scope);
  const runner = await restJson(
    opts,
    {
      what: same ? "replace the runner" : "register the runner",
      method: "POST",
      url: `${scope.apiBase}/actions/runners/register`,
      headers: remoteAuth,
      json: {
        url: scope.gitHubUrl,
        group_id: group.id,
        name: opts.name,
        version: opts.runnerVersion,
        updates_disabled: true,
        ephemeral: opts.ephemeral,
        labels: agentLabels(opts.labels),
        public_key: publicKeyXml(key),
        ...(same ? { runner_id: same.id, replace: true } : {}),
      },
    },
    RunnerAdminResponse,
  );
  const a = runner.authorization;
  const legacy = a.legacy_authorization_url ?? "";
  return {
    flow: "runner-admin",
    group: group.name,
    registration: {
      key,
      settings: {
        agentId: runner.id,
        agentName: runner.name,
        poolId: group.id,
        poolName: group.name,
        serverUrl: tenantUrl,
        gitHubUrl: scope.gitHubUrl,
        workFolder: "_work",
        disableUpdate: true,
        ephemeral: opts.ephemeral,
        useV2Flow: true,
        useRunnerAdminFlow: true,
        serverUrlV2: a.server_url,
        labels: [...opts.labels],
      },
      credentials: {
        scheme: "OAuth",
        data: {
          clientId: a.client_id,
          // With a legacy URL the official runner authenticates against it and migrates to the V2 URL.
          authorizationUrl: legacy || a.authorization_url,
          requireFipsCryptography: true,
          ...(legacy ? { authorizationUrlV2: a.authorization_url } : {}),
          enableAuthMigrationByDefault: Boolean(legacy),
        },
      },
    },
  };
}

// ------------------------------------------------------------------ classic (GHES)

async function registerClassic(
  opts: RegisterOptions,
  scope: GitHubScope,
  tenantUrl: string,
  tenantToken: string,
): Promise<RegisterResult> {
  const key = generateRunnerKey();
  const bearer = { Authorization: `Bearer ${tenantToken}` };
  const locations = await Locations.discover(opts.http, tenantUrl, opts.signal).catch(() =>
    Locations.fallback(tenantUrl),
  );
  const pools = await restJson(
    opts,
    {
      what: "list the runner groups",
      method: "GET",
      url: locations.url(LOCATION.pools, {}, { poolType: "Automation" }),
      headers: bearer,
      apiVersion: CLASSIC_API,
    },
    vssList(TaskAgentPool),
  );
  const pool = chooseGroup(
    pools.value.map((p) => ({ id: p.id, name: p.name, isDefault: p.isInternal, isHosted: p.isHosted })),
    opts.runnerGroup,
  );
  const existing = await restJson(
    opts,
    {
      what: "look for a runner of the same name",
      method: "GET",
      url: locations.url(LOCATION.agents, { poolId: 0 }, { agentName: opts.name }),
      headers: bearer,
      apiVersion: AGENTS_API,
    },
    vssList(TaskAgent),
  );
  const same = existing.value.find((a) => a.name.toLowerCase() === opts.name.toLowerCase());
  if (same && !opts.replace) throw runnerExists(opts.name, scope);
  const body: TaskAgentBody = {
    id: same?.id ?? 0,
    name: opts.name,
    version: opts.runnerVersion,
    osDescription: osDescription(),
    maxParallelism: 1,
    ephemeral: opts.ephemeral,
    disableUpdate: true,
    enabled: true,
    status: "online",
    provisioningState: "Provisioned",
    createdOn: new Date().toISOString(),
    authorization: { publicKey: publicKeyParts(key) },
    labels: agentLabels(opts.labels),
  };
  const agent = await restJson(
    opts,
    same
      ? {
          what: "replace the runner",
          method: "PUT",
          url: locations.url(LOCATION.agents, { poolId: pool.id, agentId: same.id }),
          headers: bearer,
          json: body,
          apiVersion: AGENTS_API,
        }
      : {
          what: "register the runner",
          method: "POST",
          url: locations.url(LOCATION.agents, { poolId: pool.id }),
          headers: bearer,
          json: body,
          apiVersion: AGENTS_API,
        },
    TaskAgent,
  );
  if (opts.ephemeral && agent.ephemeral !== true)
    throw new RegistrationError(
      `${scope.gitHubUrl} does not support ephemeral self-hosted runners; register without --ephemeral`,
    );
  if (agent.disableUpdate === false)
    throw new RegistrationError(
      `${scope.gitHubUrl} does not let a runner opt out of self-updates, which gnomon cannot perform; ` +
        "ask the GitHub Enterprise administrator to allow runners with updates disabled",
    );
  const clientId = agent.authorization?.clientId;
  const authorizationUrl = agent.authorization?.authorizationUrl;
  if (!clientId || !authorizationUrl)
    throw new RegistrationError(
      `${scope.gitHubUrl} registered the runner but handed out no OAuth client; GitHub Enterprise Server 3.0 or newer is needed`,
    );
  const props = agent.properties ?? {};
  const prop = (name: string): unknown =>
    Object.entries(props).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
  const fips = prop("RequireFipsCryptography");
  const serverUrlV2 = typeof prop("ServerUrlV2") === "string" ? String(prop("ServerUrlV2")) : "";
  const useV2 = prop("UseV2Flow") === true || prop("UseV2Flow") === "True" || prop("UseV2Flow") === "true";
  const registration: Registration = {
    key,
    settings: {
      agentId: agent.id,
      agentName: agent.name,
      poolId: pool.id,
      poolName: pool.name,
      serverUrl: tenantUrl,
      gitHubUrl: scope.gitHubUrl,
      workFolder: "_work",
      disableUpdate: true,
      ephemeral: opts.ephemeral,
      useV2Flow: useV2 && serverUrlV2 !== "",
      useRunnerAdminFlow: false,
      serverUrlV2,
      labels: [...opts.labels],
    },
    credentials: {
      scheme: "OAuth",
      data: {
        clientId,
        authorizationUrl,
        // Absent means "FIPS" since runner 2.324.0 (spec 3.3).
        requireFipsCryptography: fips === undefined ? true : fips === true || String(fips).toLowerCase() === "true",
        enableAuthMigrationByDefault: false,
      },
    },
  };
  await verifyClassic(opts, registration, locations);
  return { flow: "classic", group: pool.name, registration };
}

/** The official runner's connection test: a token with the new key, then an authenticated call. */
async function verifyClassic(opts: RegisterOptions, reg: Registration, locations: Locations): Promise<void> {
  const tokens = new RunnerTokens({
    creds: oauthCredentials(reg, false),
    key: reg.key,
    http: opts.http,
    runner: describeRunner(reg),
  });
  const call: HttpCall = {
    what: "check the new runner's credentials",
    method: "GET",
    url: locations.url(LOCATION.pools, {}, { poolType: "Automation" }),
    apiVersion: CLASSIC_API,
    timeoutMs: TIMEOUT_MS,
    signal: opts.signal,
  };
  ensureOk(call, await sendAuthed(opts.http, tokens, call));
}

// ------------------------------------------------------------------ removal

export interface RemoveOptions {
  readonly registration: Registration;
  /** A removal token ("Remove" on the runner's settings page, or the remove-token API). */
  readonly token: string;
  readonly http: HttpClient;
  readonly signal?: AbortSignal;
  readonly retryDelayMs?: (attempt: number) => number;
}

/** Deregisters on GitHub; a runner GitHub no longer knows counts as removed. */
export async function remove(opts: RemoveOptions): Promise<"removed" | "already-gone"> {
  const s = opts.registration.settings;
  if (!s.gitHubUrl)
    throw new RegistrationError(
      `runner ${describeRunner(opts.registration)} came from a JIT config, which records no GitHub URL; ` +
        "JIT runners are removed by GitHub after their job, or delete it on the runner settings page",
    );
  const scope = parseGitHubUrl(s.gitHubUrl);
  const ropts = {
    ...opts,
    runnerVersion: "",
    name: s.agentName,
    labels: [],
    ephemeral: false,
    replace: false,
    url: "",
  };
  try {
    if (s.useRunnerAdminFlow) {
      await restSend(ropts, {
        what: "remove the runner",
        method: "DELETE",
        url: `${scope.scopedBase}/runners/${s.agentId}`,
        headers: { Authorization: `RemoteAuth ${opts.token}` },
      });
    } else {
      const auth = await exchangeToken(ropts, scope, "remove");
      const locations = await Locations.discover(opts.http, auth.url, opts.signal).catch(() =>
        Locations.fallback(auth.url),
      );
      await restSend(ropts, {
        what: "remove the runner",
        method: "DELETE",
        url: locations.url(LOCATION.agents, { poolId: 0, agentId: s.agentId }),
        headers: { Authorization: `Bearer ${auth.token}` },
        apiVersion: AGENTS_API,
      });
    }
    return "removed";
  } catch (err) {
    if (err instanceof GitHubApiError && err.status === 404) return "already-gone";
    throw err;
  }
}

// ------------------------------------------------------------------ shared

interface Group {
  readonly id: number;
  readonly name: string;
  readonly isDefault: boolean;
  readonly isHosted: boolean;
}

/** The official choice: a named non-hosted group, else the default group (spec 3.3). */
export function chooseGroup(groups: readonly Group[], wanted: string | undefined): Group {
  const selfHosted = groups.filter((g) => !g.isHosted);
  const fallback = groups.find((g) => g.isDefault) ?? selfHosted[0];
  if (wanted === undefined || wanted === "") {
    if (fallback) return fallback;
    throw new RegistrationError("GitHub lists no runner group this runner can join; create one in the settings");
  }
  const found = selfHosted.find((g) => g.name.toLowerCase() === wanted.toLowerCase());
  if (found) return found;
  throw new RegistrationError(
    `there is no runner group named ${JSON.stringify(wanted)}; pass --runner-group with one of: ${
      selfHosted.map((g) => JSON.stringify(g.name)).join(", ") || "(none)"
    }`,
  );
}

async function exchangeToken(opts: RegisterOptions, scope: GitHubScope, event: "register" | "remove") {
  try {
    return await restJson(
      opts,
      {
        what: event === "register" ? "exchange the registration token" : "exchange the removal token",
        method: "POST",
        url: `${scope.apiBase}/actions/runner-registration`,
        headers: { Authorization: `RemoteAuth ${opts.token}` },
        json: { url: scope.gitHubUrl, runner_event: event },
      },
      RunnerRegistrationResponse,
    );
  } catch (err) {
    if (err instanceof GitHubApiError && err.status >= 400 && err.status < 500)
      throw new RegistrationError(
        `GitHub did not accept the ${event === "register" ? "registration" : "removal"} token for ${scope.gitHubUrl} ` +
          `(HTTP ${err.status}); tokens expire after one hour and belong to one repository, organization or enterprise: ` +
          `create a new one at ${scope.gitHubUrl}/settings/actions/runners` +
          (event === "register" ? "/new" : ""),
        { cause: err },
      );
    throw err;
  }
}

function checkGhesTenant(scope: GitHubScope, tenantUrl: string): void {
  const ghes = new URL(scope.gitHubUrl).hostname.toLowerCase();
  let tenant: string;
  try {
    tenant = new URL(tenantUrl).hostname.toLowerCase();
  } catch {
    tenant = "";
  }
  if (tenant !== ghes && !tenant.endsWith(`.${ghes}`))
    throw new RegistrationError(
      `GitHub Actions is not properly configured on ${ghes}: it hands out the Actions service at ${redactUrl(tenantUrl)}; ` +
        "ask the administrator to check the Actions configuration of GitHub Enterprise Server",
    );
}

function runnerExists(name: string, scope: GitHubScope): RegistrationError {
  return new RegistrationError(
    `a runner named ${JSON.stringify(name)} is already registered for ${scope.gitHubUrl}; pass --replace to take over ` +
      "its registration, or choose another --name",
  );
}

const defaultRetryDelay = () => randomBetween(1_000, 5_000);

/** The official runner retries configuration calls 3 times, 1–5 s apart, except on 404. */
async function restSend(opts: RegisterOptions, call: Omit<HttpCall, "timeoutMs">) {
  return retry(
    async () => {
      const full: HttpCall = { ...call, timeoutMs: TIMEOUT_MS, signal: opts.signal };
      return ensureOk(full, await opts.http.send(full));
    },
    {
      attempts: 3,
      backoff: opts.retryDelayMs ?? defaultRetryDelay,
      retryable: isTransient,
      signal: opts.signal,
    },
  );
}

async function restJson<S extends z.ZodType>(
  opts: RegisterOptions,
  call: Omit<HttpCall, "timeoutMs">,
  schema: S,
): Promise<z.output<S>> {
  const res = await restSend(opts, call);
  return readJson({ ...call, timeoutMs: TIMEOUT_MS }, res, schema);
}
