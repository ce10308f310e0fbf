// Bundles src/bin.ts into dist/gnomon.mjs: the shipped program that users and tests run (the
// package's `bin`, so `npx gnomon` runs it). `npm ci` builds it through the prepare script.
// Migrations are embedded as text so the program depends on no path at run time.
import { chmodSync, readFileSync } from "node:fs";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

await build({
  entryPoints: ["src/bin.ts"],
  outfile: "dist/gnomon.mjs",
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
});
chmodSync("dist/gnomon.mjs", 0o755);
