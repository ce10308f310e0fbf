// Bundles src/bin.ts into dist/gnomon.mjs: the shipped program that users and tests run (the
// package's `bin`, so `npx gnomon` runs it), and src/workflow/parse-worker.ts into
// dist/parse-worker.mjs beside it. `npm ci` builds it through the prepare script.
// Migrations are embedded as text so the program depends on no path at run time.
import { chmodSync, readFileSync } from "node:fs";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

// The program, and the parser's worker thread (src/workflow/parse-thread.ts loads it from beside
// the program).
const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: "linked",
  legalComments: "none",
  loader: { ".sql": "text" },
  define: { GNOMON_VERSION: JSON.stringify(pkg.version) },
  // Native or optional pieces stay outside the bundle and load from node_modules.
  external: ["cpu-features", "pg-native", "@electric-sql/pglite", "ssh2", "bufferutil", "utf-8-validate"],
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __gnomonCreateRequire } from 'node:module'; const require = __gnomonCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
};
await build({ ...common, entryPoints: ["src/bin.ts"], outfile: "dist/gnomon.mjs" });
await build({ ...common, entryPoints: ["src/workflow/parse-worker.ts"], outfile: "dist/parse-worker.mjs" });
chmodSync("dist/gnomon.mjs", 0o755);
