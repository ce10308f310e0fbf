// The lock file that keeps two processes from opening one embedded database directory: PGlite has
// no postmaster to refuse the second one, and two writers corrupt the data (lifecycle/dir-lock.ts).
import { type DirLock, lockDir } from "../lifecycle/dir-lock.js";
import { DataDirInUseError } from "./errors.js";

export type DataDirLock = DirLock;

export function lockDataDir(lockFile: string, dir: string): DataDirLock {
  return lockDir(lockFile, (pid) => new DataDirInUseError(dir, pid, lockFile));
}
