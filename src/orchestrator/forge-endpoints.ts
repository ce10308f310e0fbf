// Pure: the host:port endpoints a job's forge gave it (server, API, Actions services, actions
// source). A job must reach its own forge to check out and report, even when the forge sits in a
// network the egress policy keeps from jobs; these exact endpoints, and nothing else there, pass.
// Those on this host's loopback are forwarded into the VM instead (forge-forwards.ts).
import type { JobRequest } from "../contract/job-request.js";

export function forgeEndpointsOf(req: JobRequest): string[] {
  const github = req.contexts.github;
  const urls = [
    req.source.instance,
    req.actionsUrl,
    github["server_url"],
    github["api_url"],
    github["graphql_url"],
    req.runtime.url,
    req.runtime.resultsUrl,
    req.runtime.cacheUrl,
  ];
  const endpoints = new Set<string>();
  for (const u of urls) {
    if (typeof u !== "string") continue;
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    endpoints.add(`${url.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase()}:${port}`);
  }
  return [...endpoints];
}
