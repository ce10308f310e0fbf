// Pure: which cache entries a job may read and where it writes, by GitHub's rules. Entries belong
// to a repository and a scope (the ref of the run that saved them). A run reads its own ref's
// entries, then, for a pull request, its base branch's, then the default branch's; it writes only
// into its own ref. Never reads a clock, a file or the network.

/** What one job may do with the cache. */
export interface CacheScope {
  /** The repository, qualified by its forge instance: entries never cross it. */
  readonly repository: string;
  /** The scope the job's saves go into: its own ref. */
  readonly write: string;
  /** The scopes its lookups search, in order (the first is `write`). */
  readonly read: readonly string[];
}

/** The job's `github` context, as far as the cache needs it. */
export type GithubContext = Readonly<Record<string, unknown>>;

/** Where a run without a ref (gnomon exec outside a git checkout) keeps its entries. */
export const NO_REF_SCOPE = "(no ref)";

const PULL_REQUEST_EVENTS = new Set(["pull_request", "pull_request_review", "pull_request_review_comment"]);

const text = (v: unknown): string => (typeof v === "string" ? v.trim() : "");

const branchRef = (name: string): string => (name.startsWith("refs/") ? name : `refs/heads/${name}`);

/**
 * The cache scope of a job: `instance` is where the repository lives (a forge's URL, or "local"
 * for gnomon exec). Returns undefined when the job names no repository: such a job gets no cache.
 */
export function cacheScopeOf(github: GithubContext, instance: string): CacheScope | undefined {
  const repo = text(github["repository"]).toLowerCase();
  if (!repo) return undefined;
  const event = github["event"];
  const payload = typeof event === "object" && event !== null ? (event as Record<string, unknown>) : {};
  const repository = payload["repository"];
  const defaultBranch = text(
    typeof repository === "object" && repository !== null
      ? (repository as Record<string, unknown>)["default_branch"]
      : undefined,
  );
  const ref = text(github["ref"]);
  const read: string[] = [];
  const add = (scope: string) => {
    if (scope && !read.includes(scope)) read.push(scope);
  };
  const write = ref || (defaultBranch ? branchRef(defaultBranch) : NO_REF_SCOPE);
  add(write);
  // A pull request also restores from its base branch (pull_request_target runs on the base
  // already: its ref is the base branch, so it writes there, as on GitHub).
  const baseRef = text(github["base_ref"]);
  if (PULL_REQUEST_EVENTS.has(text(github["event_name"])) && baseRef) add(branchRef(baseRef));
  if (defaultBranch) add(branchRef(defaultBranch));
  return { repository: `${instance.replace(/\/+$/, "").toLowerCase()}/${repo}`, write, read };
}
