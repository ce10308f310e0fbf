// The per-job key: ed25519 made in memory, in a format ssh2 reads, signing what its public half verifies.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import ssh2 from "ssh2";

const { utils } = ssh2;

import { generateJobKey } from "../../src/vm/ssh-key.js";

describe("job key", () => {
  it("is an ed25519 key pair in OpenSSH format whose halves belong together", () => {
    const key = generateJobKey("gnomon-vm-test");
    assert.match(key.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\S+ gnomon-vm-test$/);
    assert.match(key.privateKey.toString(), /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const priv = utils.parseKey(key.privateKey);
    assert.ok(!(priv instanceof Error), `ssh2 parses the private key: ${priv instanceof Error ? priv.message : ""}`);
    const parsed = Array.isArray(priv) ? priv[0]! : priv;
    assert.equal(parsed.type, "ssh-ed25519");
    assert.equal(parsed.comment, "gnomon-vm-test");
    const pub = utils.parseKey(key.publicKey);
    assert.ok(!(pub instanceof Error));
    const pubKey = Array.isArray(pub) ? pub[0]! : pub;
    assert.ok(parsed.getPublicSSH().equals(pubKey.getPublicSSH()), "the private key's public part is the public key");
    const data = Buffer.from("job 42");
    const sig = parsed.sign(data);
    assert.ok(!(sig instanceof Error));
    assert.equal(pubKey.verify(data, sig as Buffer), true);
  });

  it("is different every time", () => {
    assert.notEqual(generateJobKey("a").publicKey.split(" ")[1], generateJobKey("a").publicKey.split(" ")[1]);
  });
});
