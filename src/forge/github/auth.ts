// Runner authentication (spec 4): a JWT client assertion signed with the runner's RSA key (jose;
// PS256 or RS256 as registered), exchanged for an OAuth access token that is cached and refreshed
// before it expires. A deleted registration (`invalid_client`) is fatal, never retried forever.
import { type KeyObject, randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import type { z } from "zod";
import { ClockSkewError, GitHubApiError, RegistrationLostError } from "./errors.js";
import type { HttpAnswer, HttpCall, HttpClient } from "./http.js";
import { TokenResponse } from "./wire.js";

export type JwtAlg = "PS256" | "RS256";

export interface OAuthCredentials {
  readonly clientId: string;
  /** The JWT audience: the authorization URL as registered (or its V2 form during auth migration). */
  readonly authorizationUrl: string;
  /** Where the token request goes: `oauthEndpointUrl` when the credentials name one, else the audience. */
  readonly tokenUrl: string;
  readonly alg: JwtAlg;
}

/** How far `nbf` is backdated, to tolerate a host clock slightly ahead of GitHub's. */
const NBF_BACKDATE_S = 30;
const ASSERTION_LIFETIME_S = 5 * 60;
/** Refresh once this share of the token's lifetime has passed. */
const REFRESH_AT = 0.8;

/** The signed client assertion: iss = sub = clientId, aud = authorization URL, a fresh jti. */
export async function clientAssertion(creds: OAuthCredentials, key: KeyObject, nowMs: number): Promise<string> {
  const now = Math.floor(nowMs / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: creds.alg, typ: "JWT" })
    .setIssuer(creds.clientId)
    .setSubject(creds.clientId)
    .setAudience(creds.authorizationUrl)
    .setJti(randomUUID())
    .setIssuedAt(now - NBF_BACKDATE_S)
    .setNotBefore(now - NBF_BACKDATE_S)
    .setExpirationTime(now + ASSERTION_LIFETIME_S)
    .sign(key);
}

export interface RunnerTokensOptions {
  readonly creds: OAuthCredentials;
  readonly key: KeyObject;
  readonly http: HttpClient;
  /** For messages: `gnomon-1 (id 42)`. */
  readonly runner: string;
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

/** The runner's OAuth access token: one exchange at a time, cached, refreshed at 80 % of its life. */
export class RunnerTokens {
  readonly #opts: RunnerTokensOptions;
  readonly #now: () => number;
  #token: { value: string; refreshAt: number } | undefined;
  #inFlight: Promise<string> | undefined;
  #exchanges = 0;

  constructor(opts: RunnerTokensOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** Token exchanges made so far. */
  get exchanges(): number {
    return this.#exchanges;
  }

  async get(signal?: AbortSignal): Promise<string> {
    const cached = this.#token;
    if (cached && this.#now() < cached.refreshAt) return cached.value;
    this.#inFlight ??= this.#exchange(signal).finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /** Drops the cached token (after a 401 or a ForceTokenRefresh message). */
  invalidate(): void {
    this.#token = undefined;
  }

  async #exchange(signal?: AbortSignal): Promise<string> {
    const { creds, key, http } = this.#opts;
    const started = this.#now();
    const assertion = await clientAssertion(creds, key, started);
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: assertion,
    });
    this.#exchanges += 1;
    const call: HttpCall = {
      what: "get an access token for the runner",
      method: "POST",
      url: creds.tokenUrl,
      body: form.toString(),
      contentType: "application/x-www-form-urlencoded; charset=utf-8",
      timeoutMs: this.#opts.timeoutMs ?? 30_000,
      signal,
    };
    const res = await http.send(call);
    if (res.status >= 200 && res.status < 300) {
      const parsed = parseToken(call, res);
      this.#token = { value: parsed.access_token, refreshAt: started + parsed.expires_in * 1000 * REFRESH_AT };
      return parsed.access_token;
    }
    const err = new GitHubApiError(call.what, res.status, creds.tokenUrl, oauthDetail(res));
    const detail = err.detail;
    if (detail.kind === "oauth") {
      if (detail.description.includes("Current server time is")) throw new ClockSkewError(detail.description);
      if (detail.error === "invalid_client" || detail.error === "unauthorized_client")
        throw new RegistrationLostError(this.#opts.runner, `${detail.error}: ${detail.description}`, { cause: err });
    }
    throw err;
  }
}

function oauthDetail(res: HttpAnswer): GitHubApiError["detail"] {
  try {
    const o = JSON.parse(res.text) as { error?: unknown; error_description?: unknown };
    if (typeof o.error === "string")
      return {
        kind: "oauth",
        error: o.error,
        description: typeof o.error_description === "string" ? o.error_description : "",
      };
  } catch {
    // not JSON: fall through
  }
  return { kind: "text", text: res.text.slice(0, 500) };
}

function parseToken(call: HttpCall, res: HttpAnswer): z.output<typeof TokenResponse> {
  let raw: unknown;
  try {
    raw = JSON.parse(res.text);
  } catch {
    raw = undefined;
  }
  const parsed = TokenResponse.safeParse(raw);
  if (!parsed.success)
    throw new GitHubApiError(call.what, res.status, String(call.url), {
      kind: "text",
      text: "the token endpoint answered without an access_token",
    });
  return parsed.data;
}

/**
 * Sends a call with the runner's bearer token; on 401 the token is refreshed and the call sent once
 * more (the service revokes tokens early on ForceTokenRefresh and on rotation).
 */
export async function sendAuthed(http: HttpClient, tokens: RunnerTokens, call: HttpCall): Promise<HttpAnswer> {
  const first = await http.send(withBearer(call, await tokens.get(call.signal)));
  if (first.status !== 401) return first;
  tokens.invalidate();
  return http.send(withBearer(call, await tokens.get(call.signal)));
}

export function withBearer(call: HttpCall, token: string): HttpCall {
  return { ...call, headers: { ...call.headers, Authorization: `Bearer ${token}` } };
}
