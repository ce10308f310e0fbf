// The classic tenant of GHES (spec 3.8, 5.2, 6.2, 6.3): connectionData with its route templates,
// pools and agents (registration and replacement), sessions and encrypted messages, job requests
// (renewal and the classic completion), and the plan hub (timeline, logs, feed, JobCompleted event).
import { createPublicKey, randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { type GitHubBooks, ZERO_GUID } from "./books.js";
import { HttpError, vssError } from "./http-error.js";
import { createSession, poll } from "./sessions.js";
import type { FakeJob, FakeRunner, TimelineRecordSeen } from "./shapes.js";

/** The route templates this tenant lists in connectionData (spec 3.8). */
function serviceDefinitions() {
  const hub = "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}";
  const defs: [string, string, string][] = [
    ["a8c47e17-4d56-4a56-92bb-de7ea7dc65be", "pools", "_apis/{area}/pools/{poolId}"],
    ["e298ef32-5878-4cab-993c-043836571f42", "agents", "_apis/{area}/pools/{poolId}/agents/{agentId}"],
    ["134e239e-2df3-4794-a6f6-24f1f19ec8dc", "sessions", "_apis/{area}/pools/{poolId}/sessions/{sessionId}"],
    ["c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7", "messages", "_apis/{area}/pools/{poolId}/messages/{messageId}"],
    ["fc825784-c92a-4299-9221-998a02d1b54f", "jobrequests", "_apis/{area}/pools/{poolId}/jobrequests/{requestId}"],
    ["8893bc5b-35b2-4be7-83cb-99e683551db4", "records", `${hub}/timelines/{timelineId}/records`],
    ["858983e4-19bd-4c5e-864c-507b59b58b12", "feed", `${hub}/timelines/{timelineId}/records/{recordId}/feed`],
    ["46f5667d-263a-4684-91b1-dff7fdcf64e2", "logs", `${hub}/logs/{logId}`],
    ["557624af-b29e-4c20-8ab0-0399d2204f3f", "events", `${hub}/events`],
  ];
  return defs.map(([identifier, displayName, relativePath]) => ({
    serviceType: "distributedtask",
    identifier,
    displayName,
    relativeToSetting: "context",
    relativePath,
    resourceVersion: 1,
    minVersion: "1.0",
    maxVersion: "7.1",
    releasedVersion: "0.0",
  }));
}

export async function classicRoute(
  gh: GitHubBooks,
  req: IncomingMessage,
  url: URL,
  raw: Buffer,
  p: string,
  closed: AbortSignal,
): Promise<unknown> {
  const m = req.method ?? "GET";
  let g: RegExpExecArray | null;
  if (p === "_apis/connectionData" && m === "GET")
    return {
      authenticatedUser: { id: ZERO_GUID },
      instanceId: randomUUID(),
      locationServiceData: { serviceDefinitions: serviceDefinitions() },
    };
  if (p === "_apis/distributedtask/pools" && m === "GET") {
    gh.configToken(req);
    const pools = gh.groups().map((gr) => ({
      id: gr.id,
      name: gr.name,
      isHosted: gr.is_hosted,
      isInternal: gr.default,
      poolType: "automation",
      size: 0,
    }));
    return { count: pools.length, value: pools };
  }
  if (p === "_apis/distributedtask/pools/0/agents" && m === "GET") {
    gh.configToken(req);
    const name = url.searchParams.get("agentName") ?? "";
    const agents = gh.activeRunners().filter((r) => r.name.toLowerCase() === name.toLowerCase());
    return { count: agents.length, value: agents.map((r) => agentJson(gh, r)) };
  }
  g = /^_apis\/distributedtask\/pools\/(\d+)\/agents(?:\/(\d+))?$/.exec(p);
  if (g && (m === "POST" || m === "PUT" || m === "DELETE"))
    return agentWrite(gh, req, raw, m, Number(g[1]), g[2] ? Number(g[2]) : undefined);
  g = /^_apis\/distributedtask\/pools\/(\d+)\/sessions$/.exec(p);
  if (g && m === "POST") return createSession(gh, req, raw, "classic");
  g = /^_apis\/distributedtask\/pools\/(\d+)\/sessions\/([^/]+)$/.exec(p);
  if (g && m === "DELETE") {
    const runner = gh.runnerOf(req);
    const s = gh.sessions.get(g[2]!);
    if (s && s.runnerId === runner.id) gh.sessions.delete(s.id);
    return { status: 200, raw: "" };
  }
  g = /^_apis\/distributedtask\/pools\/(\d+)\/messages$/.exec(p);
  if (g && m === "GET") return poll(gh, req, url, "classic", closed);
  g = /^_apis\/distributedtask\/pools\/(\d+)\/messages\/(\d+)$/.exec(p);
  if (g && m === "DELETE") {
    const runner = gh.runnerOf(req);
    const s = gh.sessions.get(url.searchParams.get("sessionId") ?? "");
    if (!s || s.runnerId !== runner.id) throw vssError(404, "TaskAgentSessionExpiredException", "no such session");
    const msg = s.messages.find((x) => x.messageId === Number(g![2]));
    if (!msg) throw vssError(404, "TaskAgentMessageNotFoundException", "no such message");
    msg.deleted = true;
    return { status: 200, raw: "" };
  }
  g = /^_apis\/distributedtask\/pools\/(\d+)\/jobrequests\/(\d+)$/.exec(p);
  if (g && m === "PATCH") return classicJobRequest(gh, req, url, raw, Number(g[2]));
  g = /^([0-9a-f-]{36})\/_apis\/distributedtask\/hubs\/([^/]+)\/plans\/([0-9a-f-]{36})\/(.+)$/.exec(p);
  if (g) return hub(gh, req, raw, m, g[3]!, g[4]!);
  throw vssError(404, "RouteNotFoundException", `the fake tenant has no route ${m} ${p}`);
}

export function agentJson(gh: GitHubBooks, r: FakeRunner): Record<string, unknown> {
  const jwk = r.publicKey.export({ format: "jwk" });
  return {
    id: r.id,
    name: r.name,
    version: r.version,
    ephemeral: r.ephemeral,
    disableUpdate: r.disableUpdate,
    maxParallelism: 1,
    status: "offline",
    labels: r.labels.map((name, i) => ({ id: i + 1, name, type: i === 0 ? "system" : "user" })),
    authorization: {
      authorizationUrl: r.authorizationUrl,
      clientId: r.clientId,
      publicKey: { exponent: b64urlToB64(String(jwk.e)), modulus: b64urlToB64(String(jwk.n)) },
    },
    properties:
      gh.opts.requireFips === undefined
        ? {}
        : { RequireFipsCryptography: { $type: "System.Boolean", $value: gh.opts.requireFips } },
  };
}

function agentWrite(
  gh: GitHubBooks,
  req: IncomingMessage,
  raw: Buffer,
  method: string,
  poolId: number,
  agentId: number | undefined,
): unknown {
  const kind = gh.configToken(req);
  if (method === "DELETE") {
    if (kind !== "remove") throw vssError(403, "AccessDeniedException", "a removal token is needed");
    const r = agentId === undefined ? undefined : gh.runners.get(agentId);
    if (!r || r.deleted) throw vssError(404, "TaskAgentNotFoundException", `agent ${agentId} not found`);
    gh.remove(r);
    return { status: 204, raw: "" };
  }
  const b = gh.json(raw);
  const pool = gh.groups().find((gr) => gr.id === poolId && !gr.is_hosted);
  if (!pool) throw vssError(404, "TaskAgentPoolNotFoundException", `pool ${poolId} not found`);
  const pk = (b["authorization"] as { publicKey?: { exponent?: string; modulus?: string } } | undefined)?.publicKey;
  if (!pk?.exponent || !pk.modulus || typeof b["name"] !== "string" || typeof b["version"] !== "string")
    throw vssError(400, "ArgumentException", "name, version and authorization.publicKey are required");
  const publicKey = createPublicKey({
    format: "jwk",
    key: {
      kty: "RSA",
      n: Buffer.from(pk.modulus, "base64").toString("base64url"),
      e: Buffer.from(pk.exponent, "base64").toString("base64url"),
    },
  });
  const labels = ((b["labels"] as { name: string }[] | undefined) ?? []).map((l) => l.name);
  const existing = gh.activeRunners().find((r) => r.name.toLowerCase() === String(b["name"]).toLowerCase());
  if (method === "POST" && existing) throw vssError(409, "TaskAgentExistsException", `agent ${existing.name} exists`);
  if (method === "PUT") {
    if (!existing || existing.id !== agentId) throw vssError(404, "TaskAgentNotFoundException", "no such agent");
    existing.publicKey = publicKey;
    existing.labels = labels;
    existing.version = String(b["version"]);
    existing.ephemeral = b["ephemeral"] === true;
    return agentJson(gh, existing);
  }
  const runner = gh.newRunner({
    name: String(b["name"]),
    labels,
    ephemeral: b["ephemeral"] === true,
    disableUpdate: b["disableUpdate"] === true,
    version: String(b["version"]),
    groupId: poolId,
    publicKey,
    flow: "classic",
  });
  return agentJson(gh, runner);
}

function classicJobRequest(gh: GitHubBooks, req: IncomingMessage, url: URL, raw: Buffer, requestId: number): unknown {
  const runner = gh.runnerOf(req);
  if (url.searchParams.get("lockToken") !== ZERO_GUID)
    throw vssError(400, "ArgumentException", "lockToken is required");
  const job = [...gh.jobs.values()].find((j) => j.requestId === requestId);
  if (!job || job.runnerId !== runner.id)
    throw vssError(404, "TaskAgentJobNotFoundException", `job request ${requestId} not found`);
  gh.checkLock(job);
  const b = gh.json(raw);
  if (b["result"] !== undefined && b["finishTime"] !== undefined) {
    if (job.state !== "acquired") throw vssError(404, "TaskAgentJobNotFoundException", "the job is not running");
    job.conclusion = String(b["result"]);
    gh.completed(job);
    return { requestId, result: b["result"] };
  }
  if (job.state === "lost") throw vssError(400, "TaskAgentJobTokenExpiredException", "the job's lock has expired");
  if (job.state !== "acquired") throw vssError(404, "TaskAgentJobNotFoundException", "the job is not running");
  if (gh.faults.renewFailing) throw new HttpError(500, { message: "internal error" });
  job.lockedUntil = Date.now() + gh.opts.lockMs;
  job.renewals.push(Date.now());
  return {
    requestId,
    lockedUntil: new Date(job.lockedUntil).toISOString(),
    reservedAgent: { id: runner.id, name: runner.name },
    planId: job.planId,
    jobId: job.jobId,
  };
}

function hub(
  gh: GitHubBooks,
  req: IncomingMessage,
  raw: Buffer,
  method: string,
  planId: string,
  rest: string,
): unknown {
  const job = gh.jobByToken(req);
  if (job.planId !== planId) throw vssError(403, "AccessDeniedException", "the token is for another plan");
  let g: RegExpExecArray | null;
  g = /^timelines\/([0-9a-f-]{36})\/records$/.exec(rest);
  if (g && method === "PATCH") {
    const b = gh.json(raw) as { value?: TimelineRecordSeen[] };
    const records = b.value ?? [];
    job.timelinePatches.push(records);
    for (const r of records) job.timeline.set(r.id, { ...job.timeline.get(r.id), ...r });
    return { count: records.length, value: records };
  }
  g = /^timelines\/([0-9a-f-]{36})\/records\/([0-9a-f-]{36})\/feed$/.exec(rest);
  if (g && method === "POST") {
    const b = gh.json(raw);
    job.feed.push({ stepId: String(b["stepId"]), startLine: Number(b["startLine"]), lines: b["value"] as string[] });
    return { status: 200, raw: "" };
  }
  if (rest === "logs" && method === "POST") {
    const b = gh.json(raw);
    const id = gh.nextLogId++;
    job.classicLogs.set(id, { path: String(b["path"]), lines: [] });
    return { id, path: b["path"], lineCount: 0, createdOn: b["createdOn"] };
  }
  if (rest === "logs" && method === "GET") {
    const value = [...job.classicLogs.entries()].map(([id, l]) => ({ id, path: l.path, lineCount: l.lines.length }));
    return { count: value.length, value };
  }
  g = /^logs\/(\d+)$/.exec(rest);
  if (g && method === "POST") {
    const log = job.classicLogs.get(Number(g[1]));
    if (!log) throw vssError(404, "TaskLogNotFoundException", "no such log");
    if (req.headers["content-type"] !== "application/octet-stream")
      throw vssError(415, "UnsupportedMediaType", "octet-stream");
    const text = raw.toString("utf8");
    log.lines.push(...text.replace(/\n$/, "").split("\n"));
    if (gh.faults.uploadFailuresAfterStore > 0) {
      gh.faults.uploadFailuresAfterStore -= 1;
      throw new HttpError(500, { message: "the connection broke after the log was stored" });
    }
    return { id: Number(g[1]), path: log.path, lineCount: log.lines.length };
  }
  if (rest === "events" && method === "POST") {
    const b = gh.json(raw);
    if (b["name"] !== "JobCompleted" || b["jobId"] !== job.jobId || Number(b["requestId"]) !== job.requestId)
      throw vssError(400, "ArgumentException", "a JobCompleted event for this job is expected");
    if (job.state !== "acquired") throw vssError(404, "TaskOrchestrationPlanNotFoundException", "the job is over");
    job.conclusion = String(b["result"]);
    job.outputs = (b["outputs"] as FakeJob["outputs"]) ?? {};
    gh.completed(job);
    return { status: 204, raw: "" };
  }
  throw vssError(404, "RouteNotFoundException", `no hub route ${method} ${rest}`);
}

function b64urlToB64(s: string): string {
  return Buffer.from(s, "base64url").toString("base64");
}
