// What `gnomon exec` copies for actions/checkout: the working tree as git sees it (tracked files and
// untracked ones that are not ignored, plus .git), or everything when the folder is not a git
// checkout. Without this, node_modules, build output and gnomon's own data would be copied into
// every VM.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A skip function for Executor.uploadDir, or undefined to copy everything. */
export async function gitIgnoredPaths(dir: string): Promise<((relativePath: string) => boolean) | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await run("git", ["-C", dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      maxBuffer: 256 * 1024 * 1024,
    }));
  } catch {
    return undefined; // not a git checkout (or no git): copy the folder as it is
  }
  const keep = new Set<string>();
  for (const file of stdout.split("\0")) {
    if (file === "") continue;
    keep.add(file);
    for (let i = file.indexOf("/"); i > 0; i = file.indexOf("/", i + 1)) keep.add(file.slice(0, i));
  }
  return (rel) => !(rel === ".git" || rel.startsWith(".git/") || keep.has(rel));
}
