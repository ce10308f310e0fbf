import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { openSecrets, parseClusterKey, SecretsOpenError, sealSecrets } from "../../src/contract/sealed-secrets.js";

describe("sealed secrets", () => {
  const key = randomBytes(32);
  const jobId = randomUUID();

  it("round-trips a secret map and never carries the plaintext", () => {
    const secrets = { API_TOKEN: "s3cr3t-value-42", MULTI: "line one\nline two" };
    const sealed = sealSecrets(secrets, key, jobId);
    const wire = JSON.stringify(sealed);
    assert.ok(!wire.includes("s3cr3t-value-42"));
    assert.ok(!wire.includes(Buffer.from("s3cr3t-value-42").toString("base64")));
    assert.deepEqual(openSecrets(sealed, key, jobId), secrets);
  });

  it("refuses secrets sealed for another job", () => {
    const sealed = sealSecrets({ A: "b" }, key, jobId);
    assert.throws(() => openSecrets(sealed, key, randomUUID()), SecretsOpenError);
  });

  it("refuses a tampered ciphertext", () => {
    const sealed = sealSecrets({ A: "bbbbbbbb" }, key, jobId);
    const ct = Buffer.from(sealed.ct, "base64");
    ct[0] = (ct[0] ?? 0) ^ 1;
    assert.throws(() => openSecrets({ ...sealed, ct: ct.toString("base64") }, key, jobId), SecretsOpenError);
  });

  it("names the key mismatch when hosts have different cluster keys", () => {
    const sealed = sealSecrets({ A: "b" }, key, jobId);
    assert.throws(() => openSecrets(sealed, randomBytes(32), jobId), /GNOMON_CLUSTER_KEY/);
  });

  it("parses a key from hex or base64 and refuses a short one with the fix", () => {
    const k = randomBytes(32);
    assert.deepEqual(parseClusterKey(k.toString("hex")), k);
    assert.deepEqual(parseClusterKey(k.toString("base64")), k);
    assert.throws(() => parseClusterKey("abcd"), /openssl rand -hex 32/);
  });
});
