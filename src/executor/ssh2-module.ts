// ssh2, loaded on first use rather than at start: it (with its native crypto helpers) adds ~15 MB
// to a process's memory, and an orchestrator whose jobs run on this host, or one idling, never
// needs it. ssh2 is CommonJS, so require() hands it over synchronously, where it is needed.
import { createRequire } from "node:module";
import type * as Ssh2 from "ssh2";

let loaded: typeof Ssh2 | undefined;

export function ssh2(): typeof Ssh2 {
  loaded ??= createRequire(import.meta.url)("ssh2") as typeof Ssh2;
  return loaded;
}
