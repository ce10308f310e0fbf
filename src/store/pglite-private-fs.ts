// Keeps the embedded database private to gnomon's user whatever the umask: directories 0700, files
// 0600. PGlite's Emscripten file layer creates files with the modes PostgreSQL's C code asks for
// and then chmods them to exactly that, bypassing the umask: 968 world-writable (0666) files under
// umask 022. This module masks group and other bits out of every mode that layer sets, and
// tightens a directory tree that already exists (an install from before this fix, initdb's output).
// It never widens a mode and never follows a symbolic link.
import { chmod, lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import type { NodeFS } from "@electric-sql/pglite/nodefs";

/** Group and other permission bits: never set on anything of the embedded database. */
const NOT_OWNER = 0o077;

/** Removes group and other access from `path` and everything under it (symbolic links left alone). */
export async function makePrivate(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return;
  if ((st.mode & NOT_OWNER) !== 0) await chmod(path, st.mode & 0o7777 & ~NOT_OWNER);
  if (!st.isDirectory()) return;
  for (const name of await readdir(path)) await makePrivate(join(path, name));
}

/** The two NODEFS operations that set a mode: creating a node, and chmod. */
interface NodeOps {
  mknod(parent: unknown, name: string, mode: number, dev: number): unknown;
  setattr(node: unknown, attr: { mode?: number }): void;
}

/**
 * PGlite's own Node.js file system for `dir`, with group and other bits masked out of every mode its
 * Emscripten layer sets, so that files and directories PostgreSQL creates while it runs stay private.
 */
export async function privateNodeFs(dir: string): Promise<NodeFS> {
  const { NodeFS } = await import("@electric-sql/pglite/nodefs");
  class PrivateNodeFS extends NodeFS {
    override async init(pg: PGlite, opts: Parameters<NodeFS["init"]>[1]) {
      const { emscriptenOpts } = await super.init(pg, opts);
      const preRun = [
        ...(emscriptenOpts.preRun ?? []),
        (mod: { NODEFS: unknown }) => {
          // node_ops is one object shared by every NODEFS node: patching it covers nodes made before, too.
          const ops = (mod.NODEFS as { node_ops: NodeOps }).node_ops;
          const mknod = ops.mknod.bind(ops);
          const setattr = ops.setattr.bind(ops);
          ops.mknod = (parent, name, mode, dev) => mknod(parent, name, mode & ~NOT_OWNER, dev);
          ops.setattr = (node, attr) =>
            setattr(node, attr.mode === undefined ? attr : { ...attr, mode: attr.mode & ~NOT_OWNER });
        },
      ];
      return { emscriptenOpts: { ...emscriptenOpts, preRun } };
    }
  }
  return new PrivateNodeFS(dir);
}
