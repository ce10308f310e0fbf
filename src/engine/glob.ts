// File patterns as hashFiles() reads them (@actions/glob's syntax): `*`, `?`, `[...]`, `**` for
// any depth, `!` to exclude, later patterns winning. Dot files match. Pure: paths in, paths out.

function segmentRegex(segment: string): string {
  let out = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i] as string;
    if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const close = segment.indexOf("]", i + 1);
      if (close < 0) out += "\\[";
      else {
        let cls = segment.slice(i + 1, close);
        if (cls.startsWith("!")) cls = `^${cls.slice(1)}`;
        out += `[${cls.replace(/\\/g, "\\\\")}]`;
        i = close;
      }
    } else out += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return out;
}

/** A regular expression for one pattern relative to the root (leading `./` and `/` ignored). */
export function globRegex(pattern: string): RegExp {
  const parts = pattern
    .replace(/^\.\//, "")
    .replace(/\/+$/, "")
    .split("/")
    .filter((p, i) => p !== "" || i > 0);
  let re = "^";
  parts.forEach((p, i) => {
    const last = i === parts.length - 1;
    if (p === "**") re += last ? ".*" : "(?:[^/]+/)*";
    else re += segmentRegex(p) + (last ? "" : "/");
  });
  // A pattern naming a directory matches what is inside it, as @actions/glob does.
  return new RegExp(`${re}(?:/.*)?$`);
}

/**
 * The paths (relative, `/`-separated) matched by the patterns: each pattern includes what it
 * matches, a `!pattern` excludes it again; blank lines and `#` comments are ignored.
 */
export function matchFiles(paths: readonly string[], patterns: readonly string[]): string[] {
  const rules = patterns
    .flatMap((p) => p.split("\n"))
    .map((p) => p.trim())
    .filter((p) => p !== "" && !p.startsWith("#"))
    .map((p) =>
      p.startsWith("!") ? { include: false, re: globRegex(p.slice(1).trim()) } : { include: true, re: globRegex(p) },
    );
  return paths.filter((path) => {
    let matched = false;
    for (const r of rules) if (r.re.test(path)) matched = r.include;
    return matched;
  });
}
