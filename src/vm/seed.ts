// The NoCloud seed of one VM: meta-data and user-data carrying the job's public key, on a small disk
// labelled "cidata". vfat (the default) is read by Linux cloud-init, illumos cloud-init (pcfs) and
// the illumos metadata agent; iso9660 by both cloud-inits. Holds no secret: only the public key.
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTool } from "./tool.js";

export type SeedFormat = "vfat" | "iso9660";

export interface SeedInput {
  readonly instanceId: string;
  readonly hostname: string;
  /** The account the seed creates (with passwordless sudo) and installs the key for. */
  readonly user: string;
  readonly shell: string;
  /** authorized_keys line of the job key. */
  readonly publicKey: string;
  /** Variables sudo keeps for the job (its egress proxy: `sudo apt-get` must find the proxy too). */
  readonly sudoKeepsEnv?: readonly string[];
}

export interface SeedDocuments {
  readonly metaData: string;
  readonly userData: string;
}

/**
 * meta-data is JSON (valid YAML for cloud-init; the illumos metadata agent reads only JSON) with
 * public-keys; user-data is #cloud-config creating the login user with the key, plus the top-level
 * ssh_authorized_keys that images with a default user (and gnomon's test guest) read.
 */
export function seedDocuments(s: SeedInput): SeedDocuments {
  const metaData = `${JSON.stringify({
    "instance-id": s.instanceId,
    "local-hostname": s.hostname,
    "public-keys": [s.publicKey],
  })}\n`;
  const userData = [
    "#cloud-config",
    "users:",
    `  - name: ${s.user}`,
    "    gecos: gnomon job user",
    `    shell: ${s.shell}`,
    '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
    "    lock_passwd: true",
    "    ssh_authorized_keys:",
    `      - ${s.publicKey}`,
    "ssh_authorized_keys:",
    `  - ${s.publicKey}`,
    "ssh_pwauth: false",
    ...(s.sudoKeepsEnv?.length
      ? [
          "write_files:",
          "  - path: /etc/sudoers.d/91-gnomon-env",
          '    permissions: "0440"',
          `    content: 'Defaults env_keep += "${s.sudoKeepsEnv.join(" ")}"'`,
        ]
      : []),
    "",
  ].join("\n");
  return { metaData, userData };
}

/** Writes the seed image at `path` (its folder must exist); the loose files are removed again. */
export async function writeSeed(path: string, docs: SeedDocuments, format: SeedFormat, signal?: AbortSignal) {
  const staging = `${path}.d`;
  await mkdir(staging, { recursive: true });
  try {
    const meta = join(staging, "meta-data");
    const user = join(staging, "user-data");
    await writeFile(meta, docs.metaData);
    await writeFile(user, docs.userData);
    if (format === "vfat") {
      // 1 MiB FAT12; mtools writes the long names without mounting anything.
      await runTool("mkfs.fat", ["-n", "cidata", "-C", path, "1024"], { signal });
      await runTool("mcopy", ["-i", path, user, meta, "::"], {
        signal,
        env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
      });
    } else {
      await runTool("genisoimage", ["-quiet", "-output", path, "-volid", "cidata", "-joliet", "-rock", user, meta], {
        signal,
      });
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
