// `gnomon config example`: prints the annotated configuration file (docs/gnomon.example.yaml is the
// same text; a test parses it so it cannot drift from the schema).

import { CONFIG_EXAMPLE } from "../config/example.js";
import type { Command } from "./command.js";
import { EXIT } from "./exit-codes.js";

export const configExampleCommand: Command = {
  name: "config example",
  summary: "print an annotated configuration file",
  usage: "Usage: gnomon config example > gnomon.yaml\n\nPrints every setting with its default, commented out.",
  options: {},
  async run(_args, ctx) {
    ctx.stdout.write(CONFIG_EXAMPLE);
    return EXIT.ok;
  },
};
