// Pure URL rules of the runner protocol: which API host serves a GitHub URL, the scoped REST base of
// a repository, organization or enterprise, and relative joining against service bases (spec 2.3, 3.1).
import { RegistrationError } from "./errors.js";

export type ScopeKind = "repository" | "organization" | "enterprise";

export interface GitHubScope {
  /** The URL the user registered, normalised: `https://github.com/owner/repo`. */
  readonly gitHubUrl: string;
  readonly kind: ScopeKind;
  /** github.com, GHE.com and their local test hosts use `api.<host>`; GHES serves `<host>/api/v3`. */
  readonly hosted: boolean;
  /** `https://api.github.com` or `https://ghes.example/api/v3`. */
  readonly apiBase: string;
  /** `<api>/repos/o/r/actions`, `<api>/orgs/o/actions` or `<api>/enterprises/e/actions`. */
  readonly scopedBase: string;
}

export function isHostedHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return (
    h === "github.com" ||
    h === "www.github.com" ||
    h === "github.localhost" ||
    h.endsWith(".ghe.localhost") ||
    h.endsWith(".ghe.com")
  );
}

export function parseGitHubUrl(text: string): GitHubScope {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RegistrationError(
      `--url ${JSON.stringify(text)} is not a URL; pass the repository, organization or enterprise, e.g. https://github.com/OWNER/REPO`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new RegistrationError(`--url ${text} must start with https://`);
  const parts = url.pathname.split("/").filter(Boolean);
  let kind: ScopeKind;
  if (parts.length === 1) kind = "organization";
  else if (parts.length === 2 && parts[0]!.toLowerCase() === "enterprises") kind = "enterprise";
  else if (parts.length === 2) kind = "repository";
  else
    throw new RegistrationError(
      `--url ${text} does not name a repository, organization or enterprise; use https://github.com/OWNER/REPO, ` +
        "https://github.com/ORG or https://github.com/enterprises/SLUG",
    );
  const host = url.hostname.toLowerCase() === "www.github.com" ? "github.com" : url.host;
  const hosted = isHostedHost(url.hostname);
  const apiBase = hosted ? `${url.protocol}//api.${host}` : `${url.protocol}//${host}/api/v3`;
  const [a, b] = parts as [string, string?];
  const scopedBase =
    kind === "repository"
      ? `${apiBase}/repos/${a}/${b}/actions`
      : kind === "organization"
        ? `${apiBase}/orgs/${a}/actions`
        : `${apiBase}/enterprises/${b}/actions`;
  return { gitHubUrl: `${url.protocol}//${host}/${parts.join("/")}`, kind, hosted, apiBase, scopedBase };
}

/** Resolves `relative` against a service base that may lack its trailing slash. */
export function joinUrl(base: string, relative: string): URL {
  return new URL(relative, base.endsWith("/") ? base : `${base}/`);
}
