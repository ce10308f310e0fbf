// What every subcommand is: a name, its help, its options, and a run function that returns an exit
// code. The shared parts (argument parsing, --help, global flags, config, logging) live here.
import { existsSync } from "node:fs";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { type FlagValue, loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { createRootLogger, type Logger } from "../telemetry/log.js";

export type Options = NonNullable<ParseArgsConfig["options"]>;

export interface CommandContext {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Resolves when the user asked gnomon to stop (SIGINT/SIGTERM). */
  readonly stopRequested: Promise<void>;
  /**
   * Resolves when the user asked a second time, for a command whose secondSignal is "hurry":
   * stop waiting, cancel what runs and end it on its forge now. Never resolves otherwise.
   */
  readonly forceRequested?: Promise<void>;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
}

export interface Command {
  /** As typed: "orchestrator", "forgejo register". */
  readonly name: string;
  readonly summary: string;
  /** Usage line and description shown by --help (without the options list). */
  readonly usage: string;
  readonly options: Options;
  /** Option name → config path, for options that override configuration. */
  readonly configFlags?: Readonly<Record<string, string>>;
  readonly allowPositionals?: boolean;
  /**
   * What a second SIGINT/SIGTERM does: "exit" (the default) exits at once; "hurry" resolves
   * forceRequested, so the stop skips the rest of its wait but still ends the jobs it holds on
   * their forge, within a bounded time (a third signal exits at once).
   */
  readonly secondSignal?: "exit" | "hurry";
  run(args: ParsedArgs, ctx: CommandContext): Promise<number>;
}

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  readonly positionals: readonly string[];
  /** Loads configuration (file, environment, this command's flags) and sets up the root logger. */
  config(): Readonly<Config>;
  logger(): Logger;
}

/** Bad usage: the message says what was wrong and what to type instead; exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly code = "cli.usage";
}

export const GLOBAL_OPTIONS: Options = {
  config: { type: "string", short: "c" },
  "log-level": { type: "string" },
  "data-dir": { type: "string" },
  help: { type: "boolean", short: "h" },
};

const GLOBAL_FLAGS: Readonly<Record<string, string>> = { "log-level": "logLevel", "data-dir": "dataDir" };

export function parseCommandArgs(cmd: Command, argv: readonly string[], env: NodeJS.ProcessEnv): ParsedArgs {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...GLOBAL_OPTIONS, ...cmd.options },
      allowPositionals: cmd.allowPositionals ?? false,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(
      `${(err as Error).message.replace(/\. To specify a positional.*$/s, "")}; see \`gnomon ${cmd.name} --help\``,
    );
  }
  const values = parsed.values as ParsedArgs["values"];
  let config: Readonly<Config> | undefined;
  let logger: Logger | undefined;
  const self: ParsedArgs = {
    values,
    positionals: parsed.positionals,
    config() {
      if (config) return config;
      const flagTable = { ...GLOBAL_FLAGS, ...cmd.configFlags };
      const flags: FlagValue[] = [];
      for (const [name, path] of Object.entries(flagTable)) {
        const v = values[name];
        if (v !== undefined) flags.push({ path, flag: `--${name}`, value: v });
      }
      const explicit = (values["config"] as string | undefined) ?? env["GNOMON_CONFIG"];
      const file = explicit ?? (existsSync("gnomon.yaml") ? "gnomon.yaml" : undefined);
      config = loadConfig({ file, env, flags });
      return config;
    },
    logger() {
      if (logger) return logger;
      const c = self.config();
      logger = createRootLogger({
        level: c.logLevel,
        pretty: c.logFormat === "auto" ? undefined : c.logFormat === "pretty",
      });
      return logger;
    },
  };
  return self;
}

export function helpText(cmd: Command): string {
  const lines = [cmd.usage.trimEnd(), "", "Options:"];
  const all = { ...cmd.options, ...GLOBAL_OPTIONS };
  for (const [name, o] of Object.entries(all)) {
    const short = o.short ? `-${o.short}, ` : "    ";
    const arg = o.type === "string" ? ` <${name === "config" ? "file" : "value"}>` : "";
    lines.push(`  ${short}--${name}${arg}${o.multiple ? " (repeatable)" : ""}`);
  }
  return `${lines.join("\n")}\n`;
}
