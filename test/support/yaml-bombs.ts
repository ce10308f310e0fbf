// Hostile YAML for the document-limit tests: an "alias bomb" (each level an anchor holding nine
// aliases of the level below, so `levels` levels of text expand to 9^levels values) in the places
// a job or a forge can put YAML: an action.yml, a workflow, Forgejo's single-job payload.

/** `levels` anchored sequences under `indent`, each repeating the previous nine times. */
export function aliasLevels(levels: number, indent: string): string {
  let s = `${indent}l0: &l0 [x, x, x, x, x, x, x, x, x]\n`;
  for (let i = 1; i < levels; i++)
    s += `${indent}l${i}: &l${i} [${Array(9)
      .fill(`*l${i - 1}`)
      .join(",")}]\n`;
  return s;
}

/**
 * A composite action.yml with the bomb in a step's `env:`: 8 levels are about 500 bytes and
 * 43 million values expanded, what froze an orchestrator for minutes.
 */
export function aliasBombAction(levels = 8): string {
  return `runs:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo never\n      env:\n${aliasLevels(levels, "        ")}`;
}

/** A single-job workflow (also a Forgejo payload) with the bomb in its job's `env:`. */
export function aliasBombWorkflow(levels = 8, runsOn = "linux"): string {
  return `on: push\njobs:\n  bomb:\n    runs-on: ${runsOn}\n    env:\n${aliasLevels(levels, "      ")}    steps:\n      - run: echo never\n`;
}
