// Bundles src/bin.ts into dist/gnomon.mjs: the shipped program that users and tests run (the
// package's `bin`, so `npx gnomon` runs it), and src/workflow/parse-worker.ts into
// dist/parse-worker.mjs beside it. `npm ci` builds it through the prepare script.
// Migrations are embedded as text so the program depends on no path at run time.
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
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
/**
 * esbuild writes strings as ASCII (charset "ascii") but keeps the comments it carries over as they
 * were. One character beyond Latin-1 in a comment makes V8 hold the whole program text as UTF-16,
 * twice its size: ~3.5 MB more in every gnomon process. Those characters are written as \u escapes
 * (in a comment, nothing reads them); one outside a comment fails the build.
 */
function latin1Only(file) {
  const lines = readFileSync(file, "utf8").split("\n");
  const out = lines.map((line, i) => {
    const at = line.search(/[^\u0000-\u00ff]/);
    if (at < 0) return line;
    const before = line.slice(0, at);
    if (!/(\/\/|^\s*\*|\/\*)/.test(before))
      throw new Error(`${file}:${i + 1}: a character beyond Latin-1 outside a comment; escape it in the source`);
    return line.replace(/[^\u0000-\u00ff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  });
  writeFileSync(file, out.join("\n"));
}

await build({ ...common, entryPoints: ["src/bin.ts"], outfile: "dist/gnomon.mjs" });
await build({ ...common, entryPoints: ["src/workflow/parse-worker.ts"], outfile: "dist/parse-worker.mjs" });
latin1Only("dist/gnomon.mjs");
latin1Only("dist/parse-worker.mjs");
chmodSync("dist/gnomon.mjs", 0o755);
