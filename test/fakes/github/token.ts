// The OAuth token endpoints (spec 4): a runner's JWT client assertion, verified as GitHub does
// (signature with the registered key, issuer, subject, audience, lifetime, one use per jti), is
// exchanged for a runner access token.
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import type { GitHubBooks } from "./books.js";
import { HttpError } from "./http-error.js";

export async function exchangeToken(gh: GitHubBooks, req: IncomingMessage, url: URL, raw: Buffer): Promise<unknown> {
  const ct = req.headers["content-type"] ?? "";
  if (!ct.startsWith("application/x-www-form-urlencoded"))
    throw new HttpError(400, { error: "invalid_request", error_description: "form encoding expected" });
  const form = new URLSearchParams(raw.toString("utf8"));
  if (form.get("grant_type") !== "client_credentials")
    throw new HttpError(400, { error: "unsupported_grant_type", error_description: "client_credentials only" });
  if (form.get("client_assertion_type") !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    throw new HttpError(400, {
      error: "invalid_request",
      error_description: "a JWT bearer client assertion is required",
    });
  const jwt = form.get("client_assertion") ?? "";
  let iss: unknown;
  let alg: unknown;
  try {
    iss = decodeJwt(jwt).iss;
    alg = decodeProtectedHeader(jwt).alg;
  } catch {
    throw new HttpError(400, { error: "invalid_client", error_description: "the client assertion is not a JWT" });
  }
  const runner = [...gh.runners.values()].find((r) => r.clientId === iss);
  if (!runner || runner.deleted)
    throw new HttpError(400, {
      error: "invalid_client",
      error_description: "Registration was not found or is not medium trust.",
    });
  const audience = `${url.origin}${url.pathname}`;
  if (audience !== runner.authorizationUrl)
    throw new HttpError(400, {
      error: "invalid_client",
      error_description: "the token was requested from the wrong endpoint",
    });
  let claims: Record<string, unknown>;
  try {
    const verified = await jwtVerify(jwt, runner.publicKey, {
      algorithms: [runner.alg],
      issuer: runner.clientId,
      subject: runner.clientId,
      audience: runner.authorizationUrl,
      typ: "JWT",
      requiredClaims: ["jti", "exp", "nbf"],
    });
    claims = verified.payload as Record<string, unknown>;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === "ERR_JWT_EXPIRED" || (e.code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && /nbf/.test(e.message ?? "")))
      throw new HttpError(400, {
        error: "invalid_client",
        error_description: `The bearer token is not valid now. Current server time is ${new Date().toISOString()}.`,
      });
    throw new HttpError(400, {
      error: "invalid_client",
      error_description: `client assertion rejected: ${e.message}`,
    });
  }
  const exp = Number(claims["exp"]);
  const nbf = Number(claims["nbf"]);
  if (exp - nbf > 6 * 60)
    throw new HttpError(400, { error: "invalid_client", error_description: "the assertion lives too long" });
  const jti = String(claims["jti"]);
  if (gh.jtis.has(jti))
    throw new HttpError(400, { error: "invalid_grant", error_description: "the assertion was used before" });
  gh.jtis.add(jti);
  gh.assertions.push({ alg: String(alg), claims });
  const token = `rt_${randomBytes(24).toString("base64url")}`;
  gh.accessTokens.set(token, { runnerId: runner.id, expiresAt: Date.now() + gh.opts.tokenLifetimeS * 1000 });
  return {
    access_token: token,
    token_type: "bearer",
    expires_in: gh.opts.tokenLifetimeS,
    scope: "/tenant/runner",
  };
}
