// Workflow commands in step output (`::name k=v,k=v::data`, and the older `##[name k=v;]data`):
// parsing with GitHub's escaping, and the stop-commands state. Pure: lines in, decisions out.

export const KNOWN_COMMANDS = new Set([
  "add-mask",
  "add-matcher",
  "remove-matcher",
  "add-path",
  "debug",
  "echo",
  "endgroup",
  "error",
  "group",
  "notice",
  "save-state",
  "set-env",
  "set-output",
  "stop-commands",
  "warning",
]);

export interface WorkflowCommand {
  /** As written (commands are matched case-insensitively). */
  readonly name: string;
  /** Property names as written; look them up case-insensitively with prop(). */
  readonly properties: Readonly<Record<string, string>>;
  readonly data: string;
}

const DATA_ESCAPES: Record<string, string> = { "%25": "%", "%0D": "\r", "%0A": "\n" };
const PROPERTY_ESCAPES: Record<string, string> = { ...DATA_ESCAPES, "%3A": ":", "%2C": "," };
const LEGACY_ESCAPES: Record<string, string> = { ...DATA_ESCAPES, "%3B": ";", "%5D": "]" };

const unescapeWith = (s: string, table: Record<string, string>) =>
  s.replace(/%(25|0D|0A|3A|2C|3B|5D)/gi, (m) => table[m.toUpperCase()] ?? m);

/** A property's value, by case-insensitive name. */
export function prop(cmd: WorkflowCommand, name: string): string | undefined {
  const key = Object.keys(cmd.properties).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : cmd.properties[key];
}

/**
 * Parses a line as a workflow command whose name is in `known` (case-insensitive); anything else
 * is output. Leading whitespace is allowed before `::`, as on GitHub.
 */
export function parseCommand(line: string, known: ReadonlySet<string> = KNOWN_COMMANDS): WorkflowCommand | undefined {
  const isKnown = (n: string) => known.has(n.toLowerCase());
  const text = line.trimStart();
  if (text.startsWith("::")) {
    const end = text.indexOf("::", 2);
    if (end < 0) return undefined;
    const info = text.slice(2, end);
    const space = info.indexOf(" ");
    const name = space < 0 ? info : info.slice(0, space);
    if (name === "" || !isKnown(name)) return undefined;
    const properties: Record<string, string> = {};
    if (space > 0)
      for (const pair of info
        .slice(space + 1)
        .trim()
        .split(",")) {
        const eq = pair.indexOf("=");
        if (eq > 0 && eq < pair.length - 1)
          properties[pair.slice(0, eq)] = unescapeWith(pair.slice(eq + 1), PROPERTY_ESCAPES);
      }
    return { name, properties, data: unescapeWith(text.slice(end + 2), DATA_ESCAPES) };
  }
  const start = line.indexOf("##[");
  if (start < 0) return undefined;
  const close = line.indexOf("]", start);
  if (close < 0) return undefined;
  const info = line.slice(start + 3, close);
  const space = info.indexOf(" ");
  const name = space < 0 ? info : info.slice(0, space);
  if (name === "" || !isKnown(name)) return undefined;
  const properties: Record<string, string> = {};
  if (space > 0)
    for (const pair of info.slice(space + 1).split(";")) {
      const eq = pair.indexOf("=");
      if (eq > 0 && eq < pair.length - 1)
        properties[pair.slice(0, eq)] = unescapeWith(pair.slice(eq + 1), LEGACY_ESCAPES);
    }
  return { name, properties, data: unescapeWith(line.slice(close + 1), LEGACY_ESCAPES) };
}

export type LineDecision =
  /** Plain output: print it. */
  | { readonly kind: "output"; readonly text: string }
  /** A command to carry out (the line itself is not printed). */
  | { readonly kind: "command"; readonly command: WorkflowCommand }
  /** stop-commands or its resume token: print the line, nothing else. */
  | { readonly kind: "stopped" | "resumed"; readonly text: string; readonly token: string }
  /** A stop-commands token that is not allowed (empty, a command name): fail the step. */
  | { readonly kind: "invalid-stop"; readonly text: string; readonly token: string };

/**
 * Decides what each output line of a step is. While `::stop-commands::TOKEN` is in force every
 * line is output until a line `::TOKEN::` resumes command processing. The state lasts for one
 * process's output, as on GitHub.
 */
export class CommandStream {
  private stopToken: string | undefined;

  constructor(private readonly allowUnsafeStopTokens = false) {}

  get stopped(): boolean {
    return this.stopToken !== undefined;
  }

  accept(line: string): LineDecision {
    if (this.stopToken !== undefined) {
      const token = this.stopToken;
      const resume = parseCommand(line, new Set([token.toLowerCase()]));
      if (resume && resume.name.toLowerCase() === token.toLowerCase()) {
        this.stopToken = undefined;
        return { kind: "resumed", text: line, token };
      }
      return { kind: "output", text: line };
    }
    const cmd = parseCommand(line);
    if (!cmd) return { kind: "output", text: line };
    if (cmd.name.toLowerCase() === "stop-commands") {
      const token = cmd.data;
      const invalid =
        token === "" || KNOWN_COMMANDS.has(token.toLowerCase()) || token.toLowerCase() === "pause-logging";
      if (invalid && !this.allowUnsafeStopTokens) return { kind: "invalid-stop", text: line, token };
      this.stopToken = token;
      return { kind: "stopped", text: line, token };
    }
    return { kind: "command", command: cmd };
  }
}
