// A lock file that keeps two processes from using one directory that only one may own (the
// embedded database, the cache store): written aside and hard-linked into place, so a competitor
// never reads a half-written one. A lock left behind by a dead process is taken over; a live
// holder is never overridden.
import { randomBytes } from "node:crypto";
import { linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";

export interface DirLock {
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
}

/** Takes `lockFile`, or throws what `busy` makes of the live holder's pid. */
export function lockDir(lockFile: string, busy: (holderPid: number) => Error): DirLock {
  const me: Holder = { pid: process.pid, host: hostname() };
  for (let attempt = 0; attempt < 3; attempt++) {
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
    if (holder && isAlive(holder, me)) throw busy(holder.pid);
    removeIfSame(lockFile, holder);
  }
  throw busy(readHolder(lockFile)?.pid ?? 0);
}

function ownLock(lockFile: string, me: Holder): DirLock {
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
  // Within one process its owner keeps a single instance per directory (pglite-db.ts's open registry, one CacheService).
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
