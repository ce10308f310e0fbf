// `gnomon version`: the program's version, Node's, and the contract version it speaks.
import { CONTRACT_VERSION } from "../contract/codec.js";
import type { Command } from "./command.js";
import { EXIT } from "./exit-codes.js";

declare const GNOMON_VERSION: string | undefined;

export const VERSION: string = typeof GNOMON_VERSION === "string" ? GNOMON_VERSION : "0.0.0-dev";

export const versionCommand: Command = {
  name: "version",
  summary: "print the version",
  usage: "Usage: gnomon version\n\nPrints gnomon's version, the Node.js version and the job contract version.",
  options: {},
  async run(_args, ctx) {
    ctx.stdout.write(`gnomon ${VERSION} (node ${process.versions.node}, contract v${CONTRACT_VERSION})\n`);
    return EXIT.ok;
  },
};
