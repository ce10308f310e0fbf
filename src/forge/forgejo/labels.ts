// Runner labels in forgejo-runner's `name[:scheme[:argument]]` form, with gnomon's schemes: `vm`
// (a VM from an image catalog entry) and `host` (steps on the orchestrator's host, only where it
// allows host labels). Pure; the server only ever sees the names.
import { LabelError } from "./errors.js";

export interface RunnerLabel {
  /** What `runs-on:` names and what Register/Declare send. */
  readonly name: string;
  readonly scheme: "vm" | "host";
  /** The queue the job goes to: the catalog entry for `vm`, `<name>:host` for `host`. */
  readonly runsOn: string;
  /** The label as written, kept in the credentials file like forgejo-runner keeps it. */
  readonly text: string;
}

/** Parses one label; throws LabelError naming the problem. */
export function parseLabel(text: string): RunnerLabel {
  if (text.trim() !== text) throw new LabelError(text, "has leading or trailing spaces");
  const first = text.indexOf(":");
  const name = first < 0 ? text : text.slice(0, first);
  if (name === "") throw new LabelError(text, "has an empty name");
  if (first < 0) return { name, scheme: "vm", runsOn: name, text };
  const rest = text.slice(first + 1);
  const second = rest.indexOf(":");
  const scheme = second < 0 ? rest : rest.slice(0, second);
  // forgejo-runner writes `docker://image`; the `//` carries no meaning, so it is accepted here too.
  const arg = second < 0 ? "" : rest.slice(second + 1).replace(/^\/\//, "");
  switch (scheme) {
    case "vm":
      return { name, scheme: "vm", runsOn: arg === "" ? name : arg, text };
    case "host":
      if (arg !== "") throw new LabelError(text, "gives the host scheme an argument, which it does not take");
      return { name, scheme: "host", runsOn: `${name}:host`, text };
    case "docker":
    case "lxc":
      throw new LabelError(text, `uses forgejo-runner's ${scheme} scheme; gnomon runs every job in a VM`);
    default:
      throw new LabelError(text, `has the unknown scheme ${JSON.stringify(scheme)}`);
  }
}

/** Parses a list (duplicates by name are an error: the server would see one label twice). */
export function parseLabels(texts: readonly string[]): RunnerLabel[] {
  const seen = new Set<string>();
  return texts.map((t) => {
    const l = parseLabel(t);
    if (seen.has(l.name)) throw new LabelError(t, `repeats the name ${JSON.stringify(l.name)}`);
    seen.add(l.name);
    return l;
  });
}

/** Splits a comma-separated list as typed on the command line. */
export function splitLabelList(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/**
 * The label a job runs on: the first entry of its `runs-on` that names one of ours (the server has
 * already checked that every entry is one of our labels, so this only fails when the local labels
 * changed since Declare).
 */
export function labelForJob(runsOn: readonly string[], labels: readonly RunnerLabel[]): RunnerLabel | undefined {
  for (const want of runsOn) {
    const found = labels.find((l) => l.name === want);
    if (found) return found;
  }
  return undefined;
}
