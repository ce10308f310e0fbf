// Secret envelope encryption: a job's secrets travel the queue sealed with the cluster key
// (AES-256-GCM), bound to the job id as associated data. Never log or serialize the opened map.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { z } from "zod";

export const SealedSecrets = z
  .object({
    alg: z.literal("A256GCM"),
    /** Key id: lets a fleet rotate the cluster key; the first 8 hex chars of sha256(key). */
    kid: z.string().min(1),
    iv: z.string().min(1),
    ct: z.string(),
    tag: z.string().min(1),
  })
  .strict();
export type SealedSecrets = z.infer<typeof SealedSecrets>;

export type Secrets = Readonly<Record<string, string>>;

/**
 * Sealed entries whose name starts with this are regex mask hints (GitHub's `mask` hints), not
 * secrets: the engine masks their matches and leaves them out of the `secrets` context. `::` can
 * start no secret's name.
 */
export const MASK_HINT_PREFIX = "::mask::";

export class ClusterKeyError extends Error {
  override readonly name = "ClusterKeyError";
  readonly code = "contract.cluster-key";
}

export class SecretsOpenError extends Error {
  override readonly name = "SecretsOpenError";
  readonly code = "contract.secrets-open";
}

/** A 256-bit key from its configured form: 64 hex characters or base64 of 32 bytes. */
export function parseClusterKey(text: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (key.length !== 32)
    throw new ClusterKeyError(
      "the cluster key must be 32 bytes, written as 64 hex characters or base64; generate one with `openssl rand -hex 32`",
    );
  return key;
}

export function keyId(key: Buffer): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

export function sealSecrets(secrets: Secrets, key: Buffer, jobId: string): SealedSecrets {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(jobId, "utf8"));
  const ct = Buffer.concat([cipher.update(JSON.stringify(secrets), "utf8"), cipher.final()]);
  return {
    alg: "A256GCM",
    kid: keyId(key),
    iv: iv.toString("base64"),
    ct: ct.toString("base64"),
    tag: cipher.getAuthTag().toString("base64"),
  };
}

export function openSecrets(sealed: SealedSecrets, key: Buffer, jobId: string): Secrets {
  if (sealed.kid !== keyId(key))
    throw new SecretsOpenError(
      `the job's secrets were sealed with cluster key ${sealed.kid}, this host has ${keyId(key)}; give every host the same GNOMON_CLUSTER_KEY`,
    );
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(sealed.iv, "base64"));
    decipher.setAAD(Buffer.from(jobId, "utf8"));
    decipher.setAuthTag(Buffer.from(sealed.tag, "base64"));
    const text = Buffer.concat([decipher.update(Buffer.from(sealed.ct, "base64")), decipher.final()]).toString("utf8");
    const parsed = z.record(z.string(), z.string()).safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error("the opened secrets are not a map of strings");
    return Object.freeze(parsed.data);
  } catch (err) {
    throw new SecretsOpenError(
      "the job's secrets could not be opened: they were tampered with or sealed for another job",
      { cause: err },
    );
  }
}
