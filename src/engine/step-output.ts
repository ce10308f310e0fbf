// What happens to each line a step's process prints: workflow commands are carried out (masks,
// outputs, state, annotations, groups, the unsafe set-env/add-path when allowed), everything else
// goes to the log, masked. One instance per process run.
import { BLOCKED_ENV } from "./env-files.js";
import type { Frame } from "./runtime.js";
import { CommandStream, prop, type WorkflowCommand } from "./workflow-commands.js";

const UNSAFE_DISABLED = (cmd: string) =>
  `The \`${cmd}\` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the \`ACTIONS_ALLOW_UNSECURE_COMMANDS\` environment variable to \`true\`. For more information see: https://github.blog/changelog/2020-10-01-github-actions-deprecating-set-env-and-add-path-commands/`;

export class StepOutput {
  readonly outputs: Record<string, string> = {};
  readonly state: Record<string, string> = {};
  /** Set when a command failed: the step fails even if its process succeeded. */
  failed = false;
  private echo = false;
  private readonly stream: CommandStream;
  private readonly allowUnsafe: boolean;

  constructor(
    private readonly frame: Frame,
    env: Readonly<Record<string, string>>,
  ) {
    this.allowUnsafe = (env["ACTIONS_ALLOW_UNSECURE_COMMANDS"] ?? "").toLowerCase() === "true";
    this.stream = new CommandStream((env["ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS"] ?? "").toLowerCase() === "true");
  }

  readonly onLine = (_stream: "stdout" | "stderr", line: string): void => {
    const d = this.stream.accept(line);
    switch (d.kind) {
      case "output":
      case "stopped":
      case "resumed":
        this.frame.line(d.text);
        return;
      case "invalid-stop":
        this.error(
          `'${d.token}' is not allowed as a stop-commands token: it must not be empty or a command's name. Use a random string, e.g. from $(uuidgen)`,
        );
        this.failed = true;
        return;
      case "command":
        this.apply(d.command, line);
    }
  };

  private error(message: string, cmd?: WorkflowCommand): void {
    annotate(this.frame, "error", message, cmd);
  }

  private apply(cmd: WorkflowCommand, line: string): void {
    const job = this.frame.job;
    const name = cmd.name.toLowerCase();
    switch (name) {
      case "add-mask":
        if (cmd.data.trim() === "")
          annotate(this.frame, "warning", "Can't add secret mask for empty string in ##[add-mask] command.");
        else job.log.masker.add(cmd.data);
        if (this.echo) this.frame.line("::add-mask::***");
        return;
      case "set-output": {
        const key = prop(cmd, "name");
        if (!key) {
          this.commandFailed(line, "Required field 'name' is missing in ##[set-output] command.");
          return;
        }
        this.outputs[key] = cmd.data;
        break;
      }
      case "save-state": {
        const key = prop(cmd, "name");
        if (!key) {
          this.commandFailed(line, "Required field 'name' is missing in ##[save-state] command.");
          return;
        }
        this.state[key] = cmd.data;
        break;
      }
      case "set-env": {
        if (!this.allowUnsafe) {
          this.commandFailed(line, UNSAFE_DISABLED("set-env"));
          return;
        }
        const key = prop(cmd, "name");
        if (!key) {
          this.commandFailed(line, "Required field 'name' is missing in ##[set-env] command.");
          return;
        }
        if (BLOCKED_ENV.has(key.toUpperCase())) {
          this.error(`Can't update ${key} environment variable using ::set-env:: command.`);
          return;
        }
        job.env = { ...job.env, [key]: cmd.data };
        break;
      }
      case "add-path":
        if (!this.allowUnsafe) {
          this.commandFailed(line, UNSAFE_DISABLED("add-path"));
          return;
        }
        job.prependPath = [cmd.data, ...job.prependPath.filter((p) => p !== cmd.data)];
        break;
      case "debug":
        if (job.debug) this.frame.line(`##[debug]${cmd.data}`);
        return;
      case "error":
      case "warning":
      case "notice":
        annotate(this.frame, name, cmd.data, cmd);
        return;
      case "group":
        this.frame.line(`##[group]${cmd.data}`);
        return;
      case "endgroup":
        this.frame.line("##[endgroup]");
        return;
      case "echo": {
        const v = cmd.data.trim().toLowerCase();
        if (v === "on" || v === "off") this.echo = v === "on";
        else
          this.commandFailed(
            line,
            `Invalid echo command value. Possible values can be: 'on', 'off'. Current value is: '${cmd.data}'.`,
          );
        return;
      }
      case "add-matcher":
      case "remove-matcher":
        if (job.debug) this.frame.line(`##[debug]problem matchers are not supported by gnomon; ignoring ${cmd.name}`);
        return;
    }
    if (this.echo) this.frame.line(line);
  }

  private commandFailed(line: string, why: string): void {
    this.error(`Unable to process command '${line.trim()}' successfully.`);
    this.error(why);
    this.failed = true;
  }
}

/** An error/warning/notice: `##[level]` log lines and an annotation event. */
export function annotate(
  frame: Frame,
  level: "error" | "warning" | "notice",
  message: string,
  cmd?: WorkflowCommand,
): void {
  // One `##[level]` line per line of the message (an invalid action lists one problem a line).
  for (const line of message.split(/\r?\n/)) frame.line(`##[${level}]${line}`);
  const num = (name: string) => {
    const v = cmd ? prop(cmd, name) : undefined;
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  frame.job.log.event({
    kind: "annotation",
    step: frame.index,
    level,
    message,
    title: cmd ? prop(cmd, "title") : undefined,
    file: cmd ? prop(cmd, "file") : undefined,
    line: num("line"),
    endLine: num("endLine"),
    col: num("col"),
    endColumn: num("endColumn"),
  });
}
