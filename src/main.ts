// gnomon's entry point: picks the subcommand, runs it, and turns its outcome into an exit code and
// one sentence. The only code that touches process signals.
import { type Command, type CommandContext, helpText, parseCommandArgs, UsageError } from "./cli/command.js";
import { configExampleCommand } from "./cli/config-example.js";
import { debugSessionsCommand } from "./cli/debug-sessions.js";
import { execCommand } from "./cli/exec.js";
import { EXIT, exitCodeOf } from "./cli/exit-codes.js";
import { forgejoRegisterCommand, forgejoRunCommand } from "./cli/forgejo.js";
import { githubRegisterCommand, githubRemoveCommand, githubRunCommand } from "./cli/github.js";
import { imagesCommands } from "./cli/images.js";
import { orchestratorCommand, upCommand } from "./cli/orchestrator.js";
import { VERSION, versionCommand } from "./cli/version.js";
import { ConfigError } from "./config/load.js";

const COMMANDS: readonly Command[] = [
  upCommand,
  execCommand,
  orchestratorCommand,
  forgejoRegisterCommand,
  forgejoRunCommand,
  githubRegisterCommand,
  githubRunCommand,
  githubRemoveCommand,
  ...imagesCommands(),
  debugSessionsCommand,
  configExampleCommand,
  versionCommand,
];

export function usage(commands: readonly Command[] = COMMANDS): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "gnomon: runs Forgejo and GitHub Actions jobs, each in a fresh QEMU VM.",
    "",
    "Usage: gnomon <command> [options]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `gnomon <command> --help` for a command's options.",
    "",
  ].join("\n");
}

/** Finds the longest command name that prefixes argv ("forgejo register" before "forgejo"). */
function findCommand(
  argv: readonly string[],
  commands: readonly Command[],
): { cmd: Command; rest: string[] } | undefined {
  let best: { cmd: Command; rest: string[] } | undefined;
  for (const cmd of commands) {
    const words = cmd.name.split(" ");
    if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.cmd.name.split(" ").length))
      best = { cmd, rest: argv.slice(words.length) };
  }
  return best;
}

export async function main(
  argv: readonly string[],
  ctx: Omit<CommandContext, "argv">,
  commands: readonly Command[] = COMMANDS,
): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    ctx.stdout.write(usage(commands));
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  if (argv[0] === "--version") argv = ["version"];
  const found = findCommand(argv, commands);
  if (!found) {
    const group = commands.filter((c) => c.name.startsWith(`${argv[0]} `));
    if (group.length > 0) {
      ctx.stderr.write(
        `gnomon ${argv[0]}: ${argv[1] ? `unknown subcommand "${argv[1]}"` : "needs a subcommand"}; one of: ${group.map((c) => c.name.split(" ")[1]).join(", ")}\n`,
      );
    } else ctx.stderr.write(`gnomon: unknown command "${argv[0]}"; run \`gnomon --help\` for the list\n`);
    return EXIT.usage;
  }
  const { cmd, rest } = found;
  try {
    const args = parseCommandArgs(cmd, rest, ctx.env);
    if (args.values["help"]) {
      ctx.stdout.write(helpText(cmd));
      return EXIT.ok;
    }
    return await cmd.run(args, { ...ctx, argv: rest });
  } catch (err) {
    if (err instanceof ConfigError) {
      const lines = err.message.split("\n");
      ctx.stderr.write(
        `gnomon ${cmd.name}: bad setting: ${lines.slice(0, 2).join("\n  ")}${lines.length > 2 ? `\n  (and ${lines.length - 2} more)` : ""}\n`,
      );
      return EXIT.usage;
    }
    if (err instanceof UsageError) {
      ctx.stderr.write(`gnomon ${cmd.name}: ${err.message}\n`);
      return EXIT.usage;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    ctx.stderr.write(`gnomon ${cmd.name}: ${e.message}\n`);
    if (ctx.env["GNOMON_DEBUG"]) ctx.stderr.write(`${e.stack}\n`);
    return exitCodeOf(err);
  }
}

/** After a second signal, a command that hurries (secondSignal "hurry") gets this long before gnomon exits anyway. */
export const HURRIED_STOP_MS = 30_000;

/** Runs as the program: wires signals, exits with the command's code. */
export async function runAsProgram(): Promise<void> {
  const argv = process.argv.slice(2);
  // A daemon holding jobs ends them on their forge on a second signal instead of leaving them running there.
  const hurries = findCommand(argv, COMMANDS)?.cmd.secondSignal === "hurry";
  let signals = 0;
  let requestStop!: () => void;
  const stopRequested = new Promise<void>((r) => {
    requestStop = r;
  });
  let requestForce!: () => void;
  const forceRequested = new Promise<void>((r) => {
    requestForce = r;
  });
  const onSignal = (sig: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      process.stderr.write(`gnomon: ${sig} received, stopping (send it again to force)\n`);
      requestStop();
    } else if (signals === 2 && hurries) {
      process.stderr.write(
        `gnomon: ${sig} received again: cancelling the running jobs and ending them on their forge now (at most ${HURRIED_STOP_MS / 1000} s; send it a third time to exit at once)\n`,
      );
      requestForce();
      setTimeout(() => {
        process.stderr.write("gnomon: the hurried stop took too long, exiting now\n");
        process.exit(130);
      }, HURRIED_STOP_MS).unref();
    } else {
      process.stderr.write(`gnomon: ${sig} received again, exiting now\n`);
      process.exit(EXIT.forced);
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const code = await main(argv, {
    env: process.env,
    stopRequested,
    forceRequested,
    stdout: process.stdout,
    stderr: process.stderr,
  });
  process.exitCode = code;
  // Services are stopped by now; anything still holding the loop open must not keep the process alive.
  setTimeout(() => process.exit(code), 2_000).unref();
}

export { VERSION };
