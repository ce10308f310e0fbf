// The broker of github.com (spec 5.1, 5.3): sessions, the message poll and the acknowledgement of
// job references; messages themselves are the sessions' (sessions.ts).
import type { IncomingMessage } from "node:http";
import type { GitHubBooks } from "./books.js";
import { brokerError, noRoute } from "./http-error.js";
import { createSession, poll } from "./sessions.js";

/** The routes under /broker/. */
export async function brokerRoute(
  gh: GitHubBooks,
  req: IncomingMessage,
  url: URL,
  raw: Buffer,
  closed: AbortSignal,
): Promise<unknown> {
  const m = req.method ?? "GET";
  const p = url.pathname;
  if (p === "/broker/session" && m === "POST") return createSession(gh, req, raw, "broker");
  if (p === "/broker/session" && m === "DELETE") {
    const runner = gh.runnerOf(req);
    for (const [id, s] of gh.sessions) if (s.runnerId === runner.id && s.kind === "broker") gh.sessions.delete(id);
    return { status: 200, raw: "" };
  }
  if (p === "/broker/message" && m === "GET") return poll(gh, req, url, "broker", closed);
  if (p === "/broker/acknowledge" && m === "POST") {
    const runner = gh.runnerOf(req);
    gh.checkVersion(url.searchParams.get("runnerVersion"), "broker");
    const body = gh.json(raw);
    const job = [...gh.jobs.values()].find((j) => j.runnerRequestId === body["runnerRequestId"]);
    if (!job || job.runnerId !== runner.id) throw brokerError(404, "AcknowledgeJobNotFound", "job not found");
    return { status: 200, raw: "" };
  }
  throw noRoute(m, p);
}
