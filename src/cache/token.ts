// The per-job cache credential: the job's id, repository, write scope, read scopes and expiry,
// signed with HMAC-SHA256 under a key of this gnomon process (never written anywhere). A token is
// URL-safe (it travels in the path of ACTIONS_CACHE_URL) and is checked whole, in constant time,
// before anything in it is read. Revocation at the job's end is the service's business, not this file's.
import { createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { CacheScope } from "./scope.js";

const PREFIX = "gc1";

/** What a token says; `exp` is in milliseconds since the epoch. */
export interface CacheClaims extends CacheScope {
  readonly job: string;
  readonly exp: number;
}

const Claims = z
  .object({
    job: z.string().min(1),
    repository: z.string().min(1),
    write: z.string().min(1),
    read: z.array(z.string().min(1)).min(1).max(8),
    exp: z.number().int().positive(),
  })
  .strict();

/** Why a token was refused, for the 401 message (never the token itself). */
export type TokenProblem = "malformed" | "bad signature" | "expired";

export function signCacheToken(claims: CacheClaims, key: Uint8Array): string {
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  return `${PREFIX}.${body}.${mac(`${PREFIX}.${body}`, key)}`;
}

export function verifyCacheToken(
  token: string,
  key: Uint8Array,
  nowMs: number,
): { ok: true; claims: CacheClaims } | { ok: false; why: TokenProblem } {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== PREFIX || !parts[1] || !parts[2] || token.length > 4096)
    return { ok: false, why: "malformed" };
  const expected = Buffer.from(mac(`${PREFIX}.${parts[1]}`, key));
  const given = Buffer.from(parts[2]);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, why: "bad signature" };
  let parsed: ReturnType<typeof Claims.safeParse>;
  try {
    parsed = Claims.safeParse(JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")));
  } catch {
    return { ok: false, why: "malformed" };
  }
  if (!parsed.success) return { ok: false, why: "malformed" };
  if (parsed.data.exp <= nowMs) return { ok: false, why: "expired" };
  return { ok: true, claims: parsed.data };
}

function mac(data: string, key: Uint8Array): string {
  return createHmac("sha256", key).update(data).digest("base64url");
}
