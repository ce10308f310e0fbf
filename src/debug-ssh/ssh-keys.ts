// SSH public keys as the debug SSH endpoint handles them: parsed from authorized_keys-style lines
// (what the forges publish) with ssh2's parser, and named by the SHA256 fingerprint OpenSSH prints.
import { createHash } from "node:crypto";
import type { ParsedKey } from "ssh2";
import { ssh2 } from "../executor/ssh2-module.js";

export interface PublicKey {
  /** "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256" … */
  readonly type: string;
  /** `SHA256:<base64>`, as `ssh-keygen -lf` and OpenSSH's prompts show it. */
  readonly fingerprint: string;
  /** The key blob, as a client offers it during authentication. */
  readonly blob: Buffer;
  /** Checks a signature over `data` made with the key's private half. */
  verify(data: Buffer, signature: Buffer, hashAlgo?: string): boolean;
}

/** OpenSSH's fingerprint of a key blob. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** A public key from one "type base64 [comment]" line; undefined when ssh2 cannot read it. */
export function parsePublicKey(line: string): PublicKey | undefined {
  const key: ParsedKey | Error = ssh2().utils.parseKey(line.trim());
  if (key instanceof Error || key.isPrivateKey()) return undefined;
  const blob = key.getPublicSSH();
  return {
    type: key.type,
    fingerprint: fingerprintOf(blob),
    blob,
    verify: (data, signature, hashAlgo) => key.verify(data, signature, hashAlgo) === true,
  };
}
