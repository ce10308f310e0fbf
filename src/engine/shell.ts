// How a `run:` script is executed: GitHub's shells with their default flags, the default shell
// (bash if the machine has it, else sh), and custom `command {0}` templates. Pure.

export interface ShellPlan {
  /** argv with `{0}` still standing for the script's path. */
  readonly template: readonly string[];
  /** The script file's extension (GitHub's, e.g. ".sh"; "" for custom shells). */
  readonly extension: string;
  /** The script as written to the file (PowerShell gets GitHub's preamble and exit code line). */
  readonly script: string;
  /** The shell as GitHub prints it in the step header, e.g. "bash -e {0}". */
  readonly display: string;
}

export class ShellError extends Error {
  override readonly name = "ShellError";
  readonly code = "engine.shell";
}

const BUILTIN: Readonly<Record<string, { args: string; extension: string }>> = {
  bash: { args: "--noprofile --norc -e -o pipefail {0}", extension: ".sh" },
  sh: { args: "-e {0}", extension: ".sh" },
  python: { args: "{0}", extension: ".py" },
  pwsh: { args: `-command ". '{0}'"`, extension: ".ps1" },
  powershell: { args: `-command ". '{0}'"`, extension: ".ps1" },
  cmd: { args: `/D /E:ON /V:OFF /S /C "CALL "{0}""`, extension: ".cmd" },
};

/** What the machine has, as far as choosing a shell goes. */
export interface ShellHost {
  readonly hasBash: boolean;
  /** The command that runs `shell: python` (python, or python3 where there is no python). */
  readonly python: string;
}

/**
 * Splits an argument string as a command line: whitespace separates arguments, single and
 * double quotes group them, a backslash escapes the next character outside single quotes.
 */
export function splitArgs(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let has = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && (text[i + 1] === '"' || text[i + 1] === "\\")) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      has = true;
    } else if (c === "\\" && i + 1 < text.length) {
      cur += text[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur !== "") out.push(cur);
      cur = "";
      has = false;
    } else cur += c;
  }
  if (quote) throw new ShellError(`unbalanced ${quote} in the shell option: ${text}`);
  if (has || cur !== "") out.push(cur);
  return out;
}

function fixUp(shellCommand: string, script: string): string {
  if (shellCommand === "pwsh" || shellCommand === "powershell")
    return `$ErrorActionPreference = 'stop'\n${script}\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }`;
  if (shellCommand === "cmd") return `@echo off\n${script}`;
  return script;
}

/** The plan for `shell:` (undefined: the default) running `script` on `host`. */
export function planShell(shell: string | undefined, script: string, host: ShellHost): ShellPlan {
  const option = shell?.trim() ?? "";
  if (option === "") {
    const command = host.hasBash ? "bash" : "sh";
    return { template: [command, "-e", "{0}"], extension: ".sh", script, display: `${command} -e {0}` };
  }
  const space = option.search(/\s/);
  const command = space < 0 ? option : option.slice(0, space);
  const rest = space < 0 ? "" : option.slice(space + 1).trim();
  const builtin = BUILTIN[command];
  const argFormat = rest !== "" ? rest : (builtin?.args ?? "");
  if (!argFormat.includes("{0}"))
    throw new ShellError(
      `invalid shell option '${option}': use a built-in shell (bash, sh, python, pwsh, powershell, cmd) or a command with {0} where the script's path goes, e.g. 'perl {0}'`,
    );
  const program = command === "python" ? host.python : command;
  const template = [program, ...splitArgs(argFormat)];
  return {
    template,
    extension: builtin?.extension ?? "",
    script: fixUp(command, script),
    display: `${program} ${argFormat}`,
  };
}

/** The plan's argv for the script written at `path`. */
export function shellArgv(plan: ShellPlan, path: string): string[] {
  return plan.template.map((a) => a.replaceAll("{0}", path));
}
