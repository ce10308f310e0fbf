// Registration (spec 3): the REST API of a repository or organisation (runner groups, runners by
// name, removal), runner-registration (the classic flow's config token) and runner-admin (the v2
// flow's register call, which validates its body field by field, as GitHub does).
import { createPublicKey, randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { GitHubBooks } from "./books.js";
import { HttpError, noRoute } from "./http-error.js";

/** The REST routes under /api/v3 (GHES layout). */
export function restRoute(gh: GitHubBooks, req: IncomingMessage, url: URL, raw: Buffer): unknown {
  const m = req.method ?? "GET";
  const p = url.pathname;
  let g: RegExpExecArray | null;
  if (m === "POST" && p === "/api/v3/actions/runner-registration") return runnerRegistration(gh, req, raw);
  g = /^\/api\/v3\/(?:repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runner-groups$/.exec(p);
  if (g && m === "GET") {
    gh.checkRegistrationToken(req, "register");
    const groups = gh.groups();
    return { total_count: groups.length, runner_groups: groups };
  }
  g = /^\/api\/v3\/(?:repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runners$/.exec(p);
  if (g && m === "GET") {
    gh.checkRegistrationToken(req, "register");
    const name = url.searchParams.get("name") ?? "";
    const runners = gh.activeRunners().filter((r) => r.name.toLowerCase() === name.toLowerCase());
    return {
      total_count: runners.length,
      runners: runners.map((r) => ({ id: r.id, name: r.name, os: "Linux", status: "offline", busy: false })),
    };
  }
  if (m === "POST" && p === "/api/v3/actions/runners/register") return runnerAdminRegister(gh, req, raw);
  g = /^\/api\/v3\/(?:repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runners\/(\d+)$/.exec(p);
  if (g && m === "DELETE") {
    gh.checkRegistrationToken(req, "remove");
    const r = gh.runners.get(Number(g[1]));
    if (!r || r.deleted) throw new HttpError(404, { message: "Not Found" });
    gh.remove(r);
    return { status: 204, raw: "" };
  }
  throw noRoute(m, p);
}

function runnerRegistration(gh: GitHubBooks, req: IncomingMessage, raw: Buffer): unknown {
  const body = gh.json(raw);
  const event = body["runner_event"];
  if (event !== "register" && event !== "remove")
    throw new HttpError(422, { message: "runner_event must be register or remove" });
  gh.checkRegistrationToken(req, event);
  if (body["url"] !== gh.repoUrl && body["url"] !== `${gh.url}/gnomon-org`)
    throw new HttpError(404, { message: `the token is not for ${String(body["url"])}` });
  if (!req.headers["user-agent"]) throw new HttpError(400, { message: "a User-Agent is required" });
  const token = `cfg_${randomBytes(16).toString("hex")}`;
  gh.configTokens.set(token, event);
  return { url: gh.tenantUrl, token_schema: "OAuthAccessToken", token, use_v2_flow: gh.opts.flow === "v2" };
}

function runnerAdminRegister(gh: GitHubBooks, req: IncomingMessage, raw: Buffer): unknown {
  gh.checkRegistrationToken(req, "register");
  const b = gh.json(raw);
  if (gh.opts.flow !== "v2") throw new HttpError(404, { message: "runner-admin is not enabled here" });
  const problems: string[] = [];
  if (b["url"] !== gh.repoUrl && b["url"] !== `${gh.url}/gnomon-org`) problems.push("url");
  if (!gh.groups().some((g) => g.id === b["group_id"] && !g.is_hosted)) problems.push("group_id");
  if (typeof b["name"] !== "string" || b["name"] === "") problems.push("name");
  if (typeof b["version"] !== "string" || !/^\d+\.\d+\.\d+$/.test(b["version"])) problems.push("version");
  if (typeof b["updates_disabled"] !== "boolean") problems.push("updates_disabled");
  if (typeof b["ephemeral"] !== "boolean") problems.push("ephemeral");
  const labels = b["labels"];
  if (
    !Array.isArray(labels) ||
    labels.some((l) => typeof l?.name !== "string" || !["system", "user"].includes(l?.type))
  )
    problems.push("labels");
  const xml = typeof b["public_key"] === "string" ? b["public_key"] : "";
  const mod = /<Modulus>([^<]+)<\/Modulus>/.exec(xml)?.[1];
  const exp = /<Exponent>([^<]+)<\/Exponent>/.exec(xml)?.[1];
  if (!mod || !exp) problems.push("public_key");
  if (problems.length) throw new HttpError(422, { message: `Validation Failed: ${problems.join(", ")}` });
  const publicKey = createPublicKey({
    format: "jwk",
    key: {
      kty: "RSA",
      n: Buffer.from(mod!, "base64").toString("base64url"),
      e: Buffer.from(exp!, "base64").toString("base64url"),
    },
  });
  const existing = gh.activeRunners().find((r) => r.name.toLowerCase() === String(b["name"]).toLowerCase());
  if (existing) {
    if (b["replace"] !== true || b["runner_id"] !== existing.id)
      throw new HttpError(422, {
        message: `Already exists - A runner with the name ${existing.name} already exists.`,
      });
    gh.remove(existing);
  }
  const runner = gh.newRunner({
    name: String(b["name"]),
    labels: (labels as { name: string }[]).map((l) => l.name),
    ephemeral: b["ephemeral"] === true,
    disableUpdate: b["updates_disabled"] === true,
    version: String(b["version"]),
    groupId: Number(b["group_id"]),
    publicKey,
    flow: "v2",
  });
  return {
    id: runner.id,
    name: runner.name,
    os: "unknown",
    status: "offline",
    authorization: {
      authorization_url: runner.authorizationUrl,
      server_url: `${gh.url}/broker/`,
      client_id: runner.clientId,
    },
  };
}
