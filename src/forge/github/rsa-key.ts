// The runner's RSA key: generated here (2048 bits, as the official runner does), stored in the
// official `.credentials_rsaparams` form, and shown to GitHub as modulus/exponent or RSAKeyValue XML.
// The private key never leaves this host and is never logged.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import type { RsaParamsFile } from "./wire.js";

export const RSA_KEY_BITS = 2048;

export function generateRunnerKey(): KeyObject {
  return generateKeyPairSync("rsa", { modulusLength: RSA_KEY_BITS, publicExponent: 0x10001 }).privateKey;
}

/** base64url (JWK) → standard base64 with padding (.NET byte[]). */
const toB64 = (b64url: string): string => Buffer.from(b64url, "base64url").toString("base64");
/** standard base64 → base64url without leading zero bytes (JWK integers are minimal big-endian). */
function toB64url(b64: string): string {
  let buf = Buffer.from(b64, "base64");
  let i = 0;
  while (i < buf.length - 1 && buf[i] === 0) i += 1;
  buf = buf.subarray(i);
  return buf.toString("base64url");
}

interface RsaJwk {
  n: string;
  e: string;
  d: string;
  p: string;
  q: string;
  dp: string;
  dq: string;
  qi: string;
}

function privateJwk(key: KeyObject): RsaJwk {
  const jwk = key.export({ format: "jwk" });
  const { n, e, d, p, q, dp, dq, qi } = jwk;
  if (!n || !e || !d || !p || !q || !dp || !dq || !qi) throw new Error("the runner key is not an RSA private key");
  return { n, e, d, p, q, dp, dq, qi };
}

/** The key in the official runner's `.credentials_rsaparams` form. */
export function toRsaParams(key: KeyObject): RsaParamsFile {
  const j = privateJwk(key);
  return {
    d: toB64(j.d),
    dp: toB64(j.dp),
    dq: toB64(j.dq),
    exponent: toB64(j.e),
    inverseQ: toB64(j.qi),
    modulus: toB64(j.n),
    p: toB64(j.p),
    q: toB64(j.q),
  };
}

/** Reads a `.credentials_rsaparams` (ours, the official runner's, or one from a JIT config). */
export function fromRsaParams(p: RsaParamsFile): KeyObject {
  return createPrivateKey({
    format: "jwk",
    key: {
      kty: "RSA",
      n: toB64url(p.modulus),
      e: toB64url(p.exponent),
      d: toB64url(p.d),
      p: toB64url(p.p),
      q: toB64url(p.q),
      dp: toB64url(p.dp),
      dq: toB64url(p.dq),
      qi: toB64url(p.inverseQ),
    },
  });
}

/** Modulus and exponent as standard base64, as the classic TaskAgent's `authorization.publicKey`. */
export function publicKeyParts(key: KeyObject): { modulus: string; exponent: string } {
  const jwk = createPublicKey(key).export({ format: "jwk" });
  if (!jwk.n || !jwk.e) throw new Error("the runner key is not an RSA key");
  return { modulus: toB64(jwk.n), exponent: toB64(jwk.e) };
}

/** The public key as .NET's RSAKeyValue XML, as runner-admin registration takes it. */
export function publicKeyXml(key: KeyObject): string {
  const { modulus, exponent } = publicKeyParts(key);
  return `<RSAKeyValue><Modulus>${modulus}</Modulus><Exponent>${exponent}</Exponent></RSAKeyValue>`;
}
