// The per-job SSH key pair: ed25519, generated in memory with node:crypto. The public half goes into
// the VM's seed; the private half is an OpenSSH-format Buffer handed to ssh2 and wiped when the VM
// is destroyed. It is never written to a file, a log or a database.
import { generateKeyPairSync, randomBytes } from "node:crypto";

export interface JobKey {
  /** authorized_keys line: "ssh-ed25519 AAAA… comment". */
  readonly publicKey: string;
  /** openssh-key-v1 PEM text as bytes, unencrypted; only ever in memory. */
  readonly privateKey: Buffer;
}

function sshString(data: Buffer | string): Buffer {
  const body = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function generateJobKey(comment: string): JobKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  const blob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);

  // PROTOCOL.key: a private section padded to the cipher block size (8 for "none").
  const check = randomBytes(4).readUInt32BE();
  let priv = Buffer.concat([
    uint32(check),
    uint32(check),
    sshString("ssh-ed25519"),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    uint32(1),
    sshString(blob),
    sshString(priv),
  ]);
  const b64 = body.toString("base64").replace(/.{1,70}/g, "$&\n");
  const pem = Buffer.from(`-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`);
  seed.fill(0);
  priv.fill(0);
  body.fill(0);
  return { publicKey: `ssh-ed25519 ${blob.toString("base64")} ${comment}`, privateKey: pem };
}
