// The NoCloud seed: what it says, and that both formats are real file systems labelled cidata
// (checked with blkid and mtools, the tools a guest's cloud-init relies on the same way).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { seedDocuments, writeSeed } from "../../src/vm/seed.js";

const input = {
  instanceId: "gnomon-abc",
  hostname: "gnomon-abc",
  user: "runner",
  shell: "/bin/bash",
  publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey gnomon-vm-abc",
};

describe("NoCloud seed", () => {
  it("puts the public key in meta-data (JSON) and in a #cloud-config that creates the login user", () => {
    const docs = seedDocuments(input);
    const meta = JSON.parse(docs.metaData) as Record<string, unknown>;
    assert.deepEqual(meta, {
      "instance-id": "gnomon-abc",
      "local-hostname": "gnomon-abc",
      "public-keys": [input.publicKey],
    });
    assert.ok(docs.userData.startsWith("#cloud-config\n"));
    const user = parseYaml(docs.userData) as {
      users: { name: string; shell: string; sudo: string; ssh_authorized_keys: string[] }[];
      ssh_authorized_keys: string[];
    };
    assert.equal(user.users[0]?.name, "runner");
    assert.equal(user.users[0]?.shell, "/bin/bash");
    assert.equal(user.users[0]?.sudo, "ALL=(ALL) NOPASSWD:ALL");
    assert.deepEqual(user.users[0]?.ssh_authorized_keys, [input.publicKey]);
    assert.deepEqual(user.ssh_authorized_keys, [input.publicKey]);
    assert.equal((user as { write_files?: unknown }).write_files, undefined, "nothing else by default");
  });

  it("makes sudo keep the egress proxy's variables when asked", () => {
    const docs = seedDocuments({ ...input, sudoKeepsEnv: ["http_proxy", "HTTPS_PROXY"] });
    const user = parseYaml(docs.userData) as { write_files: { path: string; permissions: string; content: string }[] };
    assert.deepEqual(user.write_files, [
      {
        path: "/etc/sudoers.d/91-gnomon-env",
        permissions: "0440",
        content: 'Defaults env_keep += "http_proxy HTTPS_PROXY"',
      },
    ]);
  });

  for (const format of ["vfat", "iso9660"] as const) {
    it(`writes a ${format} file system labelled cidata holding both documents`, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), "gnomon-seed-"));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const path = join(dir, "seed");
      const docs = seedDocuments(input);
      await writeSeed(path, docs, format);
      const blkid = execFileSync("blkid", ["-o", "export", path], { encoding: "utf8" });
      assert.match(blkid, /^LABEL=cidata$/m);
      assert.match(blkid, new RegExp(`^TYPE=${format}$`, "m"));
      if (format === "vfat") {
        const env = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
        assert.equal(execFileSync("mtype", ["-i", path, "::user-data"], { encoding: "utf8", env }), docs.userData);
        assert.equal(execFileSync("mtype", ["-i", path, "::meta-data"], { encoding: "utf8", env }), docs.metaData);
      } else {
        const iso = await readFile(path);
        assert.ok(iso.includes(Buffer.from(input.publicKey)), "the key is in the image");
      }
      const left = execFileSync("ls", ["-A", dir], { encoding: "utf8" }).trim();
      assert.equal(left, "seed", "the loose files are removed");
    });
  }
});
