// The file commands GITHUB_ENV, GITHUB_OUTPUT, GITHUB_STATE (NAME=VALUE lines and NAME<<DELIMITER
// heredocs) and GITHUB_PATH (one directory per line), parsed as GitHub's runner parses them. Pure.

export class EnvFileError extends Error {
  override readonly name = "EnvFileError";
  readonly code = "engine.env-file";
}

/**
 * The name/value pairs of an env-style file, in order. Throws EnvFileError with GitHub's reasons:
 * a line that is neither form, an empty name or delimiter, a heredoc whose delimiter never comes.
 */
export function parseEnvFile(text: string): [name: string, value: string][] {
  const pairs: [string, string][] = [];
  let index = 0;
  const readLine = (): { line: string; newline: boolean } | undefined => {
    if (index >= text.length) return undefined;
    const lf = text.indexOf("\n", index);
    if (lf < 0) {
      const line = text.slice(index);
      index = text.length;
      return { line, newline: false };
    }
    const line = text.slice(index, lf);
    index = lf + 1;
    return { line, newline: true };
  };
  for (let next = readLine(); next; next = readLine()) {
    const { line } = next;
    if (line === "") continue;
    const eq = line.indexOf("=");
    const heredoc = line.indexOf("<<");
    if (eq >= 0 && (heredoc < 0 || eq < heredoc)) {
      const name = line.slice(0, eq);
      if (name === "") throw new EnvFileError(`Invalid format '${line}'. Name must not be empty`);
      pairs.push([name, line.slice(eq + 1)]);
    } else if (heredoc >= 0) {
      const name = line.slice(0, heredoc);
      const delimiter = line.slice(heredoc + 2);
      if (name === "" || delimiter === "")
        throw new EnvFileError(`Invalid format '${line}'. Name must not be empty and delimiter must not be empty`);
      const start = index;
      let end = index;
      for (;;) {
        const before = index;
        const l = readLine();
        if (!l) throw new EnvFileError(`Invalid value. Matching delimiter not found '${delimiter}'`);
        if (l.line === delimiter) break;
        if (!l.newline) throw new EnvFileError("Invalid value. EOF marker missing new line.");
        end = before + l.line.length;
      }
      pairs.push([name, end > start ? text.slice(start, end) : ""]);
    } else throw new EnvFileError(`Invalid format '${line}'`);
  }
  return pairs;
}

/** The directories of a GITHUB_PATH file, in the order written (empty lines skipped). */
export function parsePathFile(text: string): string[] {
  return text
    .split("\n")
    .map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l))
    .filter((l) => l !== "");
}

/** Environment variables a step may not set through GITHUB_ENV or set-env (GitHub's block list). */
export const BLOCKED_ENV = new Set(["NODE_OPTIONS"]);
