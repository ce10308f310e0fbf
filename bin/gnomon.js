#!/usr/bin/env node
// Runs the bundled program; build it first with `npm run build` (npm test does).
import { existsSync } from "node:fs";

const bundle = new URL("../dist/gnomon.mjs", import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write("gnomon: the program is not built; run `npm run build` in the gnomon checkout\n");
  process.exit(2);
}
await import(bundle.href);
