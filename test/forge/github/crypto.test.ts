// The runner key in the official file form, the classic session's decryption, and the last masking
// pass (secrets and their base64 forms at every alignment).
import assert from "node:assert/strict";
import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { decryptMessageBody, decryptSessionKey } from "../../../src/forge/github/message-crypto.js";
import {
  fromRsaParams,
  generateRunnerKey,
  publicKeyParts,
  publicKeyXml,
  toRsaParams,
} from "../../../src/forge/github/rsa-key.js";
import { LogMasker } from "../../../src/forge/log-masker.js";

describe("the runner's RSA key", () => {
  it("round-trips through the official .credentials_rsaparams form", () => {
    const key = generateRunnerKey();
    const params = toRsaParams(key);
    assert.deepEqual(Object.keys(params).sort(), ["d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"]);
    assert.equal(params.exponent, "AQAB");
    assert.equal(Buffer.from(params.modulus, "base64").length, 256, "a 2048-bit modulus");
    const back = fromRsaParams(params);
    assert.deepEqual(back.export({ format: "jwk" }), key.export({ format: "jwk" }));
  });

  it("reads .NET's big-endian integers with a leading zero byte", () => {
    const key = generateRunnerKey();
    const p = toRsaParams(key);
    const padded = {
      ...p,
      modulus: Buffer.concat([Buffer.from([0]), Buffer.from(p.modulus, "base64")]).toString("base64"),
    };
    assert.deepEqual(fromRsaParams(padded).export({ format: "jwk" }), key.export({ format: "jwk" }));
  });

  it("shows GitHub the public key as RSAKeyValue XML and as classic modulus/exponent", () => {
    const key = generateRunnerKey();
    const { modulus, exponent } = publicKeyParts(key);
    assert.equal(
      publicKeyXml(key),
      `<RSAKeyValue><Modulus>${modulus}</Modulus><Exponent>${exponent}</Exponent></RSAKeyValue>`,
    );
    const rebuilt = createPublicKey({
      format: "jwk",
      key: {
        kty: "RSA",
        n: Buffer.from(modulus, "base64").toString("base64url"),
        e: Buffer.from(exponent, "base64").toString("base64url"),
      },
    });
    assert.deepEqual(rebuilt.export({ format: "jwk" }), createPublicKey(key).export({ format: "jwk" }));
  });
});

describe("classic session encryption", () => {
  for (const fips of [false, true])
    it(`decrypts the OAEP-${fips ? "SHA256" : "SHA1"} session key and an AES-CBC message with a byte-order mark`, () => {
      const key = generateRunnerKey();
      const aes = randomBytes(32);
      const encrypted = publicEncrypt(
        { key: createPublicKey(key), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: fips ? "sha256" : "sha1" },
        aes,
      ).toString("base64");
      const sessionKey = decryptSessionKey(key, { encrypted: true, value: encrypted }, fips);
      assert.deepEqual(sessionKey, aes);
      const iv = randomBytes(16);
      const c = createCipheriv("aes-256-cbc", aes, iv);
      const body = Buffer.concat([c.update(`\uFEFF{"jobId":"x"}`, "utf8"), c.final()]).toString("base64");
      assert.equal(decryptMessageBody(sessionKey, iv.toString("base64"), body), '{"jobId":"x"}');
    });

  it("passes messages without an iv through, and names the fix when the key does not fit", () => {
    assert.equal(decryptMessageBody(undefined, null, "plain"), "plain");
    const other = generateRunnerKey();
    const enc = publicEncrypt({ key: createPublicKey(generateRunnerKey()), oaepHash: "sha1" }, randomBytes(32));
    assert.throws(
      () => decryptSessionKey(other, { encrypted: true, value: enc.toString("base64") }, false),
      /run `gnomon github register` again/,
    );
  });
});

describe("the log masker", () => {
  const secret = "s3cr3t-Value!";

  it("masks a secret, its JSON-escaped form and its base64 inside longer base64 at every alignment", () => {
    const m = new LogMasker([secret]);
    assert.equal(m.mask(`token=${secret};`), "token=***;");
    for (const prefix of ["", "a", "ab", "x-access-token:"]) {
      const blob = Buffer.from(`${prefix}${secret}/tail`).toString("base64");
      assert.ok(
        !m.mask(blob).includes(Buffer.from(secret).toString("base64").slice(4, 12)),
        `prefix ${JSON.stringify(prefix)}`,
      );
      assert.notEqual(m.mask(blob), blob, `the base64 with prefix ${JSON.stringify(prefix)} is masked`);
    }
    assert.equal(m.mask(Buffer.from(secret).toString("base64")), "***");
  });

  it("applies regex mask hints and masks invalid ones literally", () => {
    const m = new LogMasker([], ["ghp_[A-Za-z0-9]{8}", "(unclosed"]);
    assert.equal(m.mask("use ghp_ABCDEFGH now"), "use *** now");
    assert.equal(m.mask("a (unclosed paren"), "a *** paren");
  });
});
