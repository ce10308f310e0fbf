// Runner authentication against the fake's token endpoint, which verifies every JWT assertion's
// signature, algorithm, issuer, subject, audience, lifetime and jti: caching, refresh before expiry,
// the one retry after a 401, and a deleted registration as a fatal, explained error.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RunnerTokens, sendAuthed } from "../../../src/forge/github/auth.js";
import { oauthCredentials } from "../../../src/forge/github/credentials.js";
import { RegistrationLostError } from "../../../src/forge/github/errors.js";
import { HttpClient } from "../../../src/forge/github/http.js";
import { register } from "../../../src/forge/github/registration.js";
import { startFakeGitHub } from "../../fakes/github-server.js";

const http = new HttpClient({ userAgent: "GitHubActionsRunner-linux-x64/2.330.0 gnomon/test" });

async function registered(t: Parameters<typeof startFakeGitHub>[0], tokenLifetimeS = 3600) {
  const fake = await startFakeGitHub(t, { flow: "v2", tokenLifetimeS });
  const { registration } = await register({
    url: fake.repoUrl,
    token: fake.registrationToken(),
    name: "auth-runner",
    labels: ["debian-12"],
    ephemeral: false,
    replace: false,
    runnerVersion: "2.330.0",
    http,
  });
  return { fake, registration };
}

describe("runner tokens", () => {
  it("reuse one token until 80 % of its lifetime has passed, then exchange a fresh assertion", async (t) => {
    const { fake, registration } = await registered(t, 10);
    let clock = Date.now();
    const tokens = new RunnerTokens({
      creds: oauthCredentials(registration, true),
      key: registration.key,
      http,
      runner: "auth-runner (id 1)",
      now: () => clock,
    });
    const a = await tokens.get();
    assert.equal(await tokens.get(), a);
    clock += 7_900;
    assert.equal(await tokens.get(), a, "still inside 80 % of 10 s");
    clock += 200;
    const b = await tokens.get();
    assert.notEqual(b, a);
    assert.equal(fake.tokenExchanges, 2);
    const [first, second] = fake.assertions;
    assert.notEqual(first?.claims["jti"], second?.claims["jti"], "every assertion has its own jti");
    for (const x of fake.assertions) {
      assert.equal(x.alg, "PS256");
      assert.ok(Number(x.claims["exp"]) - Number(x.claims["nbf"]) <= 330, "lives about five minutes");
    }
  });

  it("exchanges once for many concurrent callers", async (t) => {
    const { fake, registration } = await registered(t);
    const tokens = new RunnerTokens({
      creds: oauthCredentials(registration, true),
      key: registration.key,
      http,
      runner: "r",
    });
    const all = await Promise.all([tokens.get(), tokens.get(), tokens.get()]);
    assert.equal(new Set(all).size, 1);
    assert.equal(fake.tokenExchanges, 1);
  });

  it("refresh the token and retry once when GitHub answers 401 to a call", async (t) => {
    const { fake, registration } = await registered(t);
    const tokens = new RunnerTokens({
      creds: oauthCredentials(registration, true),
      key: registration.key,
      http,
      runner: "r",
    });
    const call = {
      what: "open a session",
      method: "POST" as const,
      url: `${fake.url}/broker/session`,
      json: {
        sessionId: "00000000-0000-0000-0000-000000000000",
        agent: { id: registration.settings.agentId, version: "2.330.0" },
      },
      timeoutMs: 5_000,
    };
    assert.equal((await sendAuthed(http, tokens, call)).status, 200);
    await http.send({ ...call, method: "DELETE", headers: { Authorization: `Bearer ${await tokens.get()}` } });
    fake.revokeAccessTokens();
    const res = await sendAuthed(http, tokens, call);
    assert.equal(res.status, 200, "the second try carried a fresh token");
    assert.equal(fake.tokenExchanges, 2);
  });

  it("turn invalid_client into 'registration lost, run gnomon github register again'", async (t) => {
    const { fake, registration } = await registered(t);
    fake.deleteRunner(registration.settings.agentId);
    const tokens = new RunnerTokens({
      creds: oauthCredentials(registration, true),
      key: registration.key,
      http,
      runner: "auth-runner (id 41)",
    });
    await assert.rejects(tokens.get(), (err: unknown) => {
      assert.ok(err instanceof RegistrationLostError);
      assert.match(
        err.message,
        /auth-runner \(id 41\) no longer exists .*Registration was not found.*run `gnomon github register` again/,
      );
      return true;
    });
  });
});
