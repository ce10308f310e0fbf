// Registration against the fake GitHub: the runner-registration exchange picks runner-admin (v2)
// or classic pools/agents by the server's answer; the official three files are written 0600; the
// token endpoint verifies the JWT signed with the new key; removal and JIT configs.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { RunnerTokens } from "../../../src/forge/github/auth.js";
import {
  decodeJitConfig,
  FILE_NAMES,
  jwtAlg,
  oauthCredentials,
  readRegistration,
  writeRegistration,
} from "../../../src/forge/github/credentials.js";
import { RegistrationError, RegistrationLostError } from "../../../src/forge/github/errors.js";
import { HttpClient } from "../../../src/forge/github/http.js";
import { register, remove } from "../../../src/forge/github/registration.js";
import { toRsaParams } from "../../../src/forge/github/rsa-key.js";
import { type FakeGitHubServer, startFakeGitHub } from "../../fakes/github-server.js";

const http = new HttpClient({ userAgent: "GitHubActionsRunner-linux-x64/2.330.0 gnomon/test" });
const tmp = () => mkdtempSync(join(tmpdir(), "gnomon-gh-reg-"));
const fast = () => 10;

function opts(fake: FakeGitHubServer, over: Partial<Parameters<typeof register>[0]> = {}) {
  return {
    url: fake.repoUrl,
    token: fake.registrationToken(),
    name: "gnomon-1",
    labels: ["debian-12"],
    ephemeral: false,
    replace: false,
    runnerVersion: "2.330.0",
    http,
    retryDelayMs: fast,
    ...over,
  };
}

async function tokenFor(reg: ReturnType<typeof readRegistration>, forBroker: boolean): Promise<string> {
  return new RunnerTokens({ creds: oauthCredentials(reg, forBroker), key: reg.key, http, runner: "t" }).get();
}

describe("github registration", () => {
  it("takes the runner-admin path when GitHub answers use_v2_flow, and writes the official files 0600", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    const r = await register(opts(fake, { ephemeral: true }));
    assert.equal(r.flow, "runner-admin");
    assert.equal(r.group, "Default");
    const dir = join(tmp(), "github");
    writeRegistration(dir, r.registration);

    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of Object.values(FILE_NAMES)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`);
    const settings = JSON.parse(readFileSync(join(dir, ".runner"), "utf8"));
    assert.equal(settings.agentName, "gnomon-1");
    assert.equal(settings.useV2Flow, true);
    assert.equal(settings.useRunnerAdminFlow, true);
    assert.equal(settings.serverUrlV2, `${fake.url}/broker/`);
    assert.equal(settings.gitHubUrl, fake.repoUrl);
    assert.equal(settings.ephemeral, true);
    const creds = JSON.parse(readFileSync(join(dir, ".credentials"), "utf8"));
    assert.equal(creds.scheme, "OAuth");
    assert.equal(creds.data.requireFipsCryptography, "True");
    const params = JSON.parse(readFileSync(join(dir, ".credentials_rsaparams"), "utf8"));
    assert.deepEqual(Object.keys(params).sort(), ["d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"]);

    const [runner] = fake.runners();
    assert.ok(runner);
    assert.deepEqual(runner.labels, ["self-hosted", "debian-12"]);
    assert.equal(runner.ephemeral, true);
    assert.equal(runner.disableUpdate, true, "gnomon opts out of self-updates");
    assert.equal(runner.version, "2.330.0");

    const reg = readRegistration(dir);
    assert.equal(jwtAlg(reg), "PS256");
    await tokenFor(reg, true);
    const [assertion] = fake.assertions;
    assert.equal(assertion?.alg, "PS256");
    assert.equal(assertion?.claims["iss"], runner.clientId);
    assert.equal(assertion?.claims["sub"], runner.clientId);
    assert.equal(assertion?.claims["aud"], runner.authorizationUrl);
  });

  it("takes the classic pools/agents path on a GHES answer and proves the new key before returning", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic", requireFips: false });
    const r = await register(opts(fake, { runnerGroup: "GNOMON-POOL" }));
    assert.equal(r.flow, "classic");
    assert.equal(r.group, "gnomon-pool");
    const reg = r.registration;
    assert.equal(reg.settings.poolId, 2);
    assert.equal(reg.settings.useV2Flow, false);
    assert.equal(reg.settings.serverUrl, fake.tenantUrl);
    assert.equal(reg.credentials.data.requireFipsCryptography, false, "the server said RequireFipsCryptography=false");
    assert.equal(jwtAlg(reg), "RS256");
    assert.equal(fake.assertions.length, 1, "registration exchanged one token with the new key");
    assert.equal(fake.assertions[0]?.alg, "RS256");
    assert.equal(fake.calls("/_apis/connectionData").length, 1, "the route templates came from connectionData");
  });

  it("reads an absent RequireFipsCryptography as FIPS (PS256), as the official runner does", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic" });
    const r = await register(opts(fake));
    assert.equal(r.registration.credentials.data.requireFipsCryptography, true);
    assert.equal(fake.assertions[0]?.alg, "PS256");
  });

  for (const flow of ["v2", "classic"] as const)
    it(`refuses a taken name unless told to replace it (${flow})`, async (t) => {
      const fake = await startFakeGitHub(t, { flow });
      const first = await register(opts(fake));
      await assert.rejects(register(opts(fake)), (err: unknown) => {
        assert.ok(err instanceof RegistrationError);
        assert.match(err.message, /already registered .*pass --replace/);
        return true;
      });
      const second = await register(opts(fake, { replace: true }));
      assert.equal(fake.runners().length, 1);
      await tokenFor(second.registration, flow === "v2");
      if (flow === "v2")
        await assert.rejects(
          tokenFor(first.registration, true),
          RegistrationLostError,
          "the replaced key no longer works",
        );
    });

  it("explains an unknown runner group and a rejected token", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    await assert.rejects(
      register(opts(fake, { runnerGroup: "nope" })),
      /no runner group named "nope".*"Default", "gnomon-pool"/,
    );
    await assert.rejects(
      register(opts(fake, { token: "AEXPIRED" })),
      /did not accept the registration token .*HTTP 404.*expire after one hour.*settings\/actions\/runners\/new/,
    );
    await assert.rejects(register(opts(fake, { labels: [] })), /pass --labels/);
  });

  for (const flow of ["v2", "classic"] as const)
    it(`removes the runner on GitHub (${flow}), and counts a runner already gone as removed`, async (t) => {
      const fake = await startFakeGitHub(t, { flow });
      const { registration } = await register(opts(fake));
      assert.equal(fake.runners().length, 1);
      assert.equal(await remove({ registration, token: fake.removalToken(), http }), "removed");
      assert.equal(fake.runners().length, 0);
      assert.equal(await remove({ registration, token: fake.removalToken(), http }), "already-gone");
      await assert.rejects(tokenFor(registration, flow === "v2"), RegistrationLostError);
    });

  it("decodes a JIT config written with PascalCase names and string booleans", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    const { registration } = await register(opts(fake));
    const s = registration.settings;
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64");
    const files = {
      ".runner": b64({
        AgentId: String(s.agentId),
        AgentName: s.agentName,
        PoolId: s.poolId,
        ServerUrl: s.serverUrl,
        UseV2Flow: "True",
        ServerUrlV2: s.serverUrlV2,
        DisableUpdate: "1",
        WorkFolder: "_work",
      }),
      ".credentials": b64({
        Scheme: "OAuth",
        Data: {
          ClientId: registration.credentials.data.clientId,
          AuthorizationUrl: registration.credentials.data.authorizationUrl,
          RequireFipsCryptography: "True",
        },
      }),
      ".credentials_rsaparams": b64(toRsaParams(registration.key)),
    };
    const jit = decodeJitConfig(Buffer.from(JSON.stringify(files)).toString("base64"));
    assert.equal(jit.settings.agentId, s.agentId);
    assert.equal(jit.settings.useV2Flow, true);
    assert.equal(jit.settings.ephemeral, true, "a JIT runner is single-use");
    await tokenFor(jit, true);
    assert.throws(() => decodeJitConfig("bm90IGpzb24="), /not base64 of a JSON object/);
  });
});
