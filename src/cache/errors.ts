// The cache service's errors: one class per answer a client gets (the HTTP status of the Actions
// cache protocol), each with a stable code and a message that says what happened and what to do.
// The message travels to the job as the response's `message`, which actions/cache prints.

/** Common shape: the HTTP status the protocol answers with. */
export abstract class CacheError extends Error {
  abstract readonly status: number;
  abstract readonly code: string;
}

/** 400: the request is malformed or breaks a rule (a range outside the entry, a size mismatch). */
export class CacheBadRequestError extends CacheError {
  override readonly name = "CacheBadRequestError";
  readonly status = 400;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** 400 too (actions/cache reads it as "over the data cap"): the entry cannot fit in the limits. */
export class CacheQuotaError extends CacheError {
  override readonly name = "CacheQuotaError";
  readonly status = 400;
  readonly code = "cache.over-quota";
  constructor(
    readonly size: number,
    readonly limit: number,
    what: string,
  ) {
    super(
      `Cache size of ~${Math.round(size / (1024 * 1024))} MB (${size} B) is over the data cap limit of ${what} ` +
        `(${limit} B), not saving cache. Cache less (fewer paths), or ask the gnomon operator to raise ` +
        "orchestrator.cache.repositoryMaxSize / maxSize (docs/caching.md).",
    );
  }
}

/** 401: no credential, a forged one, or one whose job has ended. */
export class CacheCredentialError extends CacheError {
  override readonly name = "CacheCredentialError";
  readonly status = 401;
  readonly code = "cache.bad-credential";
  constructor(why: string) {
    super(
      `the cache service refused the request: ${why}. Each job reaches the cache only through the ` +
        "ACTIONS_CACHE_URL gnomon gives it, valid for that job's repository while the job runs.",
    );
  }
}

/** 404: no such cache id for this job (unknown, committed already gone, or another job's). */
export class CacheNotFoundError extends CacheError {
  override readonly name = "CacheNotFoundError";
  readonly status = 404;
  readonly code = "cache.not-found";
}

/** 409: the key exists in this scope already, or another job is saving it (entries are immutable). */
export class CacheConflictError extends CacheError {
  override readonly name = "CacheConflictError";
  readonly status = 409;
  readonly code = "cache.conflict";
}

/** 503: this process cannot use the cache directory now (another gnomon process owns it). */
export class CacheUnavailableError extends CacheError {
  override readonly name = "CacheUnavailableError";
  readonly status = 503;
  readonly code = "cache.unavailable";
  constructor(
    readonly dir: string,
    readonly holderPid: number,
  ) {
    super(
      `the cache in ${dir} is in use by gnomon process ${holderPid}, so this one serves no cache; ` +
        "give each gnomon process its own dataDir (if no such process runs any more, delete its lock file)",
    );
  }
}
