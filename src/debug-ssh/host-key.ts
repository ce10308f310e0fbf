// The debug SSH endpoint's own host key: ed25519, created once under the data directory (0600, in a
// 0700 folder) and kept, so that users who accepted its fingerprint are not warned on the next
// window. It is never a VM's host key, and never leaves this host but as its public half.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ssh2 } from "../executor/ssh2-module.js";
import { toError } from "../lifecycle/to-error.js";
import { fingerprintOf } from "./ssh-keys.js";

export interface HostKey {
  /** The private key, OpenSSH format, for ssh2's server. */
  readonly privateKey: string;
  /** "ssh-ed25519 AAAA…", for a known_hosts line. */
  readonly publicKey: string;
  /** `SHA256:…`, as ssh prints it when it asks whether to trust the host. */
  readonly fingerprint: string;
}

/** The host key file cannot be read or is not a private key gnomon can use. */
export class HostKeyError extends Error {
  override readonly name = "HostKeyError";
  readonly code = "debug-ssh.host-key";
  constructor(
    readonly path: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(
      `the debug SSH host key ${path} cannot be used (${detail}); move it away and gnomon creates a new one ` +
        "(users then see a new fingerprint), or put back the key this host had",
      options,
    );
  }
}

/** The file under the data directory that holds the key. */
export function hostKeyPath(dataDir: string): string {
  return join(dataDir, "debug-ssh", "host_ed25519_key");
}

/**
 * A new ed25519 private key, OpenSSH format. ssh2 (1.17) writes a key whose public half starts with a
 * zero byte 31 bytes long and then refuses to read it back ("Malformed OpenSSH private key"): one
 * key in 256. Such a key is thrown away and another made.
 */
function newHostKey(): string {
  for (;;) {
    const pair = ssh2().utils.generateKeyPairSync("ed25519", { comment: "gnomon debug ssh" });
    if (!(ssh2().utils.parseKey(pair.private) instanceof Error)) return pair.private;
  }
}

/** Reads the host key at `path`, creating it (and its private folder) the first time. */
export function loadOrCreateHostKey(path: string): HostKey {
  if (!existsSync(path)) {
    const dir = join(path, "..");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    // wx: two processes starting at once must not both write; the second reads the first's key.
    try {
      writeFileSync(path, newHostKey(), { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST")
        throw new HostKeyError(path, toError(err).message, { cause: err });
    }
  }
  chmodSync(path, 0o600);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new HostKeyError(path, toError(err).message, { cause: err });
  }
  const key = ssh2().utils.parseKey(text);
  if (key instanceof Error) throw new HostKeyError(path, key.message, { cause: key });
  if (!key.isPrivateKey()) throw new HostKeyError(path, "it holds a public key, not a private one");
  const blob = key.getPublicSSH();
  return { privateKey: text, publicKey: `${key.type} ${blob.toString("base64")}`, fingerprint: fingerprintOf(blob) };
}
