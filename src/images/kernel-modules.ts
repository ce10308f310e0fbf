// Pure helpers for Linux kernel modules in image recipes: read a module's dependencies from its
// .modinfo strings, order a set of modules so each comes after what it needs, and write the
// modules.dep that busybox modprobe reads. No files here; the builder passes bytes and paths in.

export interface ModuleInfo {
  /** Path below lib/modules/<version>/, e.g. kernel/fs/ext4/ext4.ko. */
  readonly path: string;
  readonly depends: readonly string[];
}

/** Kernel module names treat "-" and "_" alike; this is the form `depends=` uses. */
export function moduleName(fileOrName: string): string {
  const base = fileOrName.slice(fileOrName.lastIndexOf("/") + 1).replace(/\.ko(\.xz|\.zst|\.gz)?$/, "");
  return base.replaceAll("-", "_");
}

/** The `depends=` list in an uncompressed .ko file's .modinfo section. */
export function parseModuleDepends(ko: Uint8Array): string[] {
  const text = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength).toString("latin1");
  const at = text.indexOf("\0depends=");
  if (at < 0) return [];
  const start = at + "\0depends=".length;
  const end = text.indexOf("\0", start);
  return text
    .slice(start, end < 0 ? undefined : end)
    .split(",")
    .filter(Boolean)
    .map(moduleName);
}

/**
 * `wanted` and everything they depend on, each after its dependencies. Built-in modules are
 * skipped; a module that is neither built in nor in `index` is reported in `missing`.
 */
export function loadOrder(
  wanted: readonly string[],
  index: ReadonlyMap<string, ModuleInfo>,
  builtin: ReadonlySet<string>,
): { order: ModuleInfo[]; missing: string[] } {
  const order: ModuleInfo[] = [];
  const missing: string[] = [];
  const seen = new Set<string>();
  const visit = (raw: string): void => {
    const name = moduleName(raw);
    if (seen.has(name)) return;
    seen.add(name);
    if (builtin.has(name)) return;
    const info = index.get(name);
    if (!info) {
      missing.push(name);
      return;
    }
    for (const dep of info.depends) visit(dep);
    order.push(info);
  };
  for (const w of wanted) visit(w);
  return { order, missing };
}

/**
 * modules.dep lines for the given modules, depmod's way: each line lists the module's whole
 * dependency closure, nearest first, so modprobe loads them from the end of the line backwards.
 */
export function modulesDep(
  modules: readonly ModuleInfo[],
  index: ReadonlyMap<string, ModuleInfo>,
  builtin: ReadonlySet<string>,
): string {
  return modules
    .map((m) => {
      const deps = loadOrder([moduleName(m.path)], index, builtin)
        .order.slice(0, -1)
        .reverse()
        .map((d) => d.path);
      return `${m.path}:${deps.length ? ` ${deps.join(" ")}` : ""}\n`;
    })
    .join("");
}
