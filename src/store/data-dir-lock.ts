// A lock file that keeps two processes from opening one embedded database directory: PGlite has
// no postmaster to refuse the second one, and two writers corrupt the data. A lock left behind by
// a dead process is taken over; a live holder is never overridden.
import { randomBytes } from "node:crypto";
import { linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { DataDirInUseError } from "./errors.js";

export interface DataDirLock {
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
}

export function lockDataDir(lockFile: string, dir: string): DataDirLock {
  const me: Holder = { pid: process.pid, host: hostname() };
  for (let attempt = 0; attempt < 3; attempt++) {
    // Written aside, then hard-linked into place: the lock file appears complete or not at all,
    // so a competitor never reads a half-written one and mistakes it for stale.
    const aside = `${lockFile}.${process.pid}.${randomBytes(4).toString("hex")}`;
    writeFileSync(aside, `${JSON.stringify(me)}\n`, { mode: 0o600 });
    try {
      linkSync(aside, lockFile);
      return ownLock(lockFile, me);
    } catch (err) {
      if (!isCode(err, "EEXIST")) throw err;
    } finally {
      unlinkSync(aside);
    }
    const holder = readHolder(lockFile);
    if (holder && isAlive(holder, me)) throw new DataDirInUseError(dir, holder.pid, lockFile);
    removeIfSame(lockFile, holder);
  }
  throw new DataDirInUseError(dir, readHolder(lockFile)?.pid ?? 0, lockFile);
}

function ownLock(lockFile: string, me: Holder): DataDirLock {
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      removeIfSame(lockFile, me);
    },
  };
}

function readHolder(lockFile: string): Holder | undefined {
  try {
    const raw: unknown = JSON.parse(readFileSync(lockFile, "utf8"));
    if (typeof raw !== "object" || raw === null) return undefined;
    const { pid, host } = raw as { pid?: unknown; host?: unknown };
    if (typeof pid !== "number" || typeof host !== "string") return undefined;
    return { pid, host };
  } catch {
    return undefined; // missing, half-written or foreign: not a live holder we can name
  }
}

function isAlive(holder: Holder, me: Holder): boolean {
  // Another machine's process cannot be checked from here (a shared volume): assume it lives.
  if (holder.host !== me.host) return true;
  // Our own pid: a lock from an earlier life of this process id (a container restarted as pid 1).
  // Within one process the open registry in pglite-db.ts already prevents a second open.
  if (holder.pid === me.pid) return false;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (err) {
    return isCode(err, "EPERM"); // exists, owned by another user
  }
}

function removeIfSame(lockFile: string, holder: Holder | undefined): void {
  const now = readHolder(lockFile);
  if (holder && now && (now.pid !== holder.pid || now.host !== holder.host)) return;
  try {
    unlinkSync(lockFile);
  } catch (err) {
    if (!isCode(err, "ENOENT")) throw err;
  }
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
