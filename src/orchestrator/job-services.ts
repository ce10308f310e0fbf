// What gnomon itself serves a job once its machine is up (today: the Actions cache), each through a
// port served into the machine (Executor.serve), never a port of this host the guest could find.
// Gives the job the variables that lead there and the values to mask, and takes it all back when
// the job ends. GitHub jobs get nothing here: they keep the services GitHub names in their message.

import { cacheScopeOf } from "../cache/scope.js";
import type { CacheService } from "../cache/service.js";
import type { JobRequest } from "../contract/job-request.js";
import { MASK_HINT_PREFIX } from "../contract/sealed-secrets.js";
import { type Executor, ServeRefusedError } from "../executor/executor.js";
import type { Logger } from "../telemetry/log.js";
import type { Workspace } from "./provisioner.js";

export interface JobServiceDeps {
  /** The cache of this process; absent: jobs get no cache (orchestrator.cache.enabled: false). */
  readonly cache?: CacheService;
}

export interface JobServices {
  /** Variables for every step of the job (ACTIONS_CACHE_URL). */
  readonly env: Readonly<Record<string, string>>;
  /** Mask hints to add to the job's secrets: the credentials inside `env`. */
  readonly maskHints: Readonly<Record<string, string>>;
  /** Ends the job's access to everything served and stops serving it. Idempotent, never throws. */
  close(): Promise<void>;
}

/** A credential outlives the job's own timeout by this much at most (it is revoked at the job's end anyway). */
const CREDENTIAL_MARGIN_MS = 15 * 60_000;

const NOTHING: JobServices = { env: {}, maskHints: {}, close: async () => undefined };

/**
 * Serves the job what gnomon gives jobs, on `executor` (the job's machine). A machine that will not
 * listen for us (ServeRefusedError) gets nothing, with a warning: the job still runs, uncached.
 */
export async function startJobServices(
  req: Pick<JobRequest, "id" | "source" | "contexts" | "spec">,
  executor: Executor,
  deps: JobServiceDeps,
  log: Logger,
): Promise<JobServices> {
  const cache = deps.cache;
  if (!cache || req.source.forge === "github") return NOTHING;
  const scope = cacheScopeOf(req.contexts.github, req.source.instance);
  if (!scope) {
    log.info("the job names no repository, so it gets no cache");
    return NOTHING;
  }
  const grant = cache.grant(req.id, scope, req.spec.timeoutMinutes * 60_000 + CREDENTIAL_MARGIN_MS);
  let port: number;
  let stopServing: () => Promise<void>;
  try {
    const served = await executor.serve((stream) => cache.accept(stream));
    port = served.port;
    stopServing = () => served.close();
  } catch (err) {
    await grant.revoke();
    if (!(err instanceof ServeRefusedError)) throw err;
    log.warn({ err }, "the machine refused the cache service's forward; the job runs without a cache");
    return NOTHING;
  }
  let closed = false;
  return {
    env: { ACTIONS_CACHE_URL: grant.urlFor(port) },
    maskHints: { [`${MASK_HINT_PREFIX}cache-credential`]: escapeRegExp(grant.token) },
    async close() {
      if (closed) return;
      closed = true;
      await grant.revoke().catch((err: unknown) => log.warn({ err }, "could not drop the job's cache uploads"));
      await stopServing().catch(() => undefined);
    },
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The workspace, whose destroy() first ends what was served to the job (its credentials die with it). */
export function servedWith(workspace: Workspace, services: JobServices): Workspace {
  return {
    ...workspace,
    async destroy() {
      await services.close();
      await workspace.destroy();
    },
  };
}
