// Pure parsing of Debian control data (apt-cache show output) and the choice among a dependency's
// alternatives. No processes, no files: debian-packages.ts feeds it and acts on the answers.

export type Stanza = Readonly<Record<string, string>>;

/** Splits RFC 822-style control text into stanzas; continuation lines are folded into their field. */
export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    let last: string | undefined;
    for (const line of block.split("\n")) {
      if (line === "") continue;
      if (/^\s/.test(line) && last !== undefined) {
        fields[last] = `${fields[last]}\n${line.trim()}`;
        continue;
      }
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      last = line.slice(0, colon);
      fields[last] = line.slice(colon + 1).trim();
    }
    if (fields["Package"]) out.push(fields);
  }
  return out;
}

/** One dependency: its alternatives, by package name (versions, arch qualifiers and profiles dropped). */
export type DependencyGroup = readonly string[];

export function parseDepends(field: string | undefined): DependencyGroup[] {
  if (!field) return [];
  return field
    .split(",")
    .map((group) =>
      group
        .split("|")
        .map((alt) =>
          alt
            .replace(/\(.*?\)|\[.*?\]|<.*?>/g, "")
            .trim()
            .replace(/:\S+$/, ""),
        )
        .filter((name) => name.length > 0),
    )
    .filter((g) => g.length > 0);
}

export interface ClosureRules {
  /** Never installed, even when depended on; a dependency whose alternatives are all excluded is dropped. */
  readonly exclude: ReadonlySet<string>;
  /** Virtual package → the real package chosen to provide it. */
  readonly provides: Readonly<Record<string, string>>;
}

/**
 * Which package satisfies `group`: undefined when an alternative is already taken (or all are
 * excluded), else the first alternative that is not excluded, with virtual names mapped.
 */
export function pickAlternative(
  group: DependencyGroup,
  taken: ReadonlySet<string>,
  rules: ClosureRules,
): string | undefined {
  const real = group.map((name) => rules.provides[name] ?? name);
  if (real.some((name) => taken.has(name))) return undefined;
  return real.find((name) => !rules.exclude.has(name));
}
