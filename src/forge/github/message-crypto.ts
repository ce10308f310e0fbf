// Classic session encryption (spec 5.2), pure: the session's AES key arrives RSA-OAEP-encrypted
// with the runner's public key (SHA-1, or SHA-256 when the session uses FIPS encryption); messages
// with an `iv` are AES-CBC with PKCS#7 padding and may start with a UTF-8 byte-order mark.
import { constants, createDecipheriv, type KeyObject, privateDecrypt } from "node:crypto";

export class MessageDecryptError extends Error {
  override readonly name = "MessageDecryptError";
  readonly code = "github.message-decrypt";
}

export function decryptSessionKey(
  privateKey: KeyObject,
  encryptionKey: { readonly encrypted: boolean; readonly value: string },
  useFipsEncryption: boolean,
): Buffer {
  const raw = Buffer.from(encryptionKey.value, "base64");
  let key: Buffer;
  try {
    key = encryptionKey.encrypted
      ? privateDecrypt(
          {
            key: privateKey,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: useFipsEncryption ? "sha256" : "sha1",
          },
          raw,
        )
      : raw;
  } catch (err) {
    throw new MessageDecryptError(
      "the session key from GitHub does not decrypt with this runner's private key; the registration files were " +
        "probably mixed up: run `gnomon github register` again",
      { cause: err },
    );
  }
  if (![16, 24, 32].includes(key.length))
    throw new MessageDecryptError(`the session key from GitHub is ${key.length} bytes, not an AES key`);
  return key;
}

/** Decrypts one message body; returns it unchanged when the message has no iv (not encrypted). */
export function decryptMessageBody(aesKey: Buffer | undefined, iv: string | null | undefined, body: string): string {
  if (!iv) return body;
  if (!aesKey) throw new MessageDecryptError("GitHub sent an encrypted message on a session without a key");
  try {
    const decipher = createDecipheriv(`aes-${aesKey.length * 8}-cbc`, aesKey, Buffer.from(iv, "base64"));
    const plain = Buffer.concat([decipher.update(Buffer.from(body, "base64")), decipher.final()]);
    return plain.toString("utf8").replace(/^\uFEFF/, "");
  } catch (err) {
    throw new MessageDecryptError("a message from GitHub does not decrypt with the session key", { cause: err });
  }
}
