// The gnomon host's action cache as the engine sees it: remote actions are fetched on the host, once
// per resolved commit, and the engine copies the files into the machine, which then needs neither
// git nor a network. The cache itself (where entries live, locks, pruning, metrics) belongs to its
// owner on the host; the engine only asks for an action and copies what it gets.

/** One `uses: owner/repo@ref` to have on the host. */
export interface ActionRequest {
  /** The repository's URL on its forge, e.g. http://127.0.0.1:3000/actions/github-script. */
  readonly url: string;
  /** What `uses:` names after @: a tag, a branch or a full commit SHA. */
  readonly ref: string;
  /**
   * An Authorization header value for the forge (the job's token), used for this request's git
   * commands only and never written anywhere. Absent for actions hosted elsewhere.
   */
  readonly authorization?: string;
  readonly signal: AbortSignal;
}

/** An action's files on this host, held for the caller until release(). */
export interface CachedAction {
  /** A directory on this host with the repository's files at `commit` (no .git); never modify it. */
  readonly dir: string;
  /** The commit `ref` named when the job asked (tags and branches are resolved then). */
  readonly commit: string;
  /** The files were in the cache already. */
  readonly hit: boolean;
  /** Time spent asking the forge what `ref` is now. */
  readonly resolveMs: number;
  /** Time spent fetching on a miss (0 on a hit). */
  readonly fetchMs: number;
  /** Lets the cache prune the entry again; call once the files are copied. Idempotent. */
  release(): void;
}

export interface HostActionCache {
  /** Resolves the ref, fetches the commit unless cached, and holds its files until release(). */
  get(request: ActionRequest): Promise<CachedAction>;
}
