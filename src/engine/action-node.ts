// Which Node.js runs a JavaScript action, and where it is on the machine. The major follows GitHub's
// runner (node12/16 run on 20; node20 on 24 only when FORCE_JAVASCRIPT_ACTIONS_TO_NODE24 asks);
// the program is the machine's own `node` when it is that major, else the one the job's NodeLocator
// delivers (gnomon's runtime disk, an image's declared node). A node24 action never runs on a
// node of another major: without one the step fails with what to install or configure.
import type { JobSpec } from "../contract/job-request.js";
import type { NodeVersion } from "../workflow/action-file.js";
import { parseUses } from "./action-source.js";
import { isCheckout } from "./checkout.js";
import type { JobRuntime } from "./runtime.js";

export type NodeMajor = 20 | 24;

export type NodeLocation =
  | {
      readonly found: true;
      /** The node program on the executor. */
      readonly path: string;
      /** For the debug log: "gnomon's Node.js 24.22.3 (runtime disk)". */
      readonly describe: string;
    }
  | {
      readonly found: false;
      /** Why there is none, ending with what to install or configure. */
      readonly reason: string;
    };

/** Finds Node.js of one major on the job's machine beyond its PATH (given by whoever provides the machine). */
export interface NodeLocator {
  locate(major: NodeMajor, signal: AbortSignal): Promise<NodeLocation>;
}

export interface NodeChoice {
  readonly major: NodeMajor;
  /** A warning for the step's log, when the action does not get the node it declares. */
  readonly warning?: string;
}

const truthy = (v: string | undefined) => v?.trim().toLowerCase() === "true";

/**
 * The major `using:` runs on, as GitHub's runner chooses it (actions/runner HandlerFactory and
 * NodeUtil): node12 and node16 are past their end of life and run on 20; node20 runs on 24 when
 * the step's environment sets FORCE_JAVASCRIPT_ACTIONS_TO_NODE24=true (unless it also sets
 * ACTIONS_ALLOW_USE_UNSECURE_NODE_VERSION=true); node24 on 24.
 */
export function nodeMajorFor(using: NodeVersion, env: Readonly<Record<string, string>>): NodeChoice {
  switch (using) {
    case "node12":
    case "node16":
      return {
        major: 20,
        warning: `${using} has reached its end of life; the action runs on Node.js 20, as on GitHub's runners. Ask its authors for a node20 or node24 release.`,
      };
    case "node20": {
      const force = truthy(env["FORCE_JAVASCRIPT_ACTIONS_TO_NODE24"]);
      const keep = truthy(env["ACTIONS_ALLOW_USE_UNSECURE_NODE_VERSION"]);
      return force && !keep ? { major: 24 } : { major: 20 };
    }
    case "node24":
      return { major: 24 };
  }
}

/**
 * Whether a job may run a JavaScript action: it has a `uses:` step that gnomon does not run itself
 * (anything but actions/checkout and docker://). Decided before the machine boots, so that only
 * such jobs get Node.js runtime disks; composite actions are `uses:` steps too.
 */
export function mayRunJavaScript(spec: JobSpec): boolean {
  return spec.steps.some((s) => {
    if (s.kind !== "uses") return false;
    const ref = parseUses(s.uses);
    return ref.kind === "local" || (ref.kind === "remote" && !isCheckout(ref));
  });
}

/** Where node `major` is on the job's machine; looked up once per job and major. */
export function findNode(job: JobRuntime, major: NodeMajor, signal: AbortSignal): Promise<NodeLocation> {
  let found = job.nodes.get(major);
  if (!found) {
    found = lookUp(job, major, signal);
    job.nodes.set(major, found);
    // A cancelled look-up is not an answer: the next step asks again.
    found.catch(() => job.nodes.delete(major));
  }
  return found;
}

async function lookUp(job: JobRuntime, major: NodeMajor, signal: AbortSignal): Promise<NodeLocation> {
  const reasons: string[] = [];
  const own = job.facts.node;
  if (own) {
    const version = await machineNodeVersion(job, own, signal);
    if (version !== undefined && majorOf(version) === major)
      return { found: true, path: own, describe: `the machine's ${own} (${version})` };
    reasons.push(
      version === undefined ? `its ${own} does not run` : `its ${own} is ${version}, another major than ${major}`,
    );
  } else reasons.push("it has no node on its PATH");
  if (job.nodeLocator) {
    const delivered = await job.nodeLocator.locate(major, signal);
    if (delivered.found) return delivered;
    reasons.push(delivered.reason);
  } else
    reasons.push(
      `install Node.js ${major} in the image, or run the job where gnomon brings its own (a VM of a linux-x64 image)`,
    );
  return { found: false, reason: reasons.join("; ") };
}

async function machineNodeVersion(job: JobRuntime, node: string, signal: AbortSignal): Promise<string | undefined> {
  let out = "";
  const r = await job.executor.run({
    argv: [node, "--version"],
    env: {},
    cwd: job.executor.platform.tempDir,
    signal,
    onLine: (stream, line) => {
      if (stream === "stdout" && out === "") out = line.trim();
    },
  });
  return r.exitCode === 0 && /^v\d+\./.test(out) ? out : undefined;
}

const majorOf = (version: string): number => Number(/^v(\d+)\./.exec(version)?.[1] ?? Number.NaN);
