// Node.js for a job's JavaScript actions, as gnomon delivers it. Before a VM boots: the runtime
// disks its platform gets (prepared once per host by vm/node-runtime.ts, shared by every VM, never
// copied). Once it runs: a NodeLocator that finds node in the guest at a JavaScript step, either
// the image's declared node or gnomon's disk, mounted by its label (at boot by images that do so,
// else here with passwordless sudo). On this host: gnomon's runtime for the host's platform.
// Decides nothing about which major an action gets (engine/action-node.ts does).
import type { NodeLocation, NodeLocator, NodeMajor } from "../engine/action-node.js";
import type { Executor } from "../executor/executor.js";
import type { Logger } from "../telemetry/log.js";
import type { ImageSpec } from "../vm/catalog.js";
import {
  DELIVERED_PLATFORM,
  NODE_MAJORS,
  type NodeRuntime,
  type NodeRuntimes,
  nodePlatformOf,
} from "../vm/node-runtime.js";

/** Where a runtime disk is mounted in a Linux guest; images that mount it at boot use the same place. */
export const guestNodeDir = (major: NodeMajor): string => `/opt/gnomon/node${major}`;

/** What one major is in one job's machine. */
type Offer =
  | { readonly t: "image"; readonly path: string; readonly package?: string }
  | { readonly t: "disk"; readonly runtime: NodeRuntime }
  | { readonly t: "none"; readonly reason: string };

export interface NodeDeliveryHooks {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** A runtime is being downloaded (its first use on this host): for the job's provisioning message. */
  onObtaining?(what: string): void;
  /** How long a delivery stage took: "obtain" (host side, before boot) or "locate" (in the guest, at the first step). */
  onTimed?(stage: "obtain" | "locate", ms: number): void;
}

/** One job's Node.js: the disks to attach at boot, and how to find node once the machine runs. */
export interface NodeDelivery {
  readonly disks: readonly string[];
  /**
   * The job's locator. It starts looking for every major at once, in the background while the job
   * sets up and runs its first steps, so that a JavaScript step rarely waits for it.
   */
  locator(executor: Executor, signal: AbortSignal): NodeLocator;
}

/**
 * The runtimes a VM of `image` gets: its own declared node per major, else gnomon's runtime disk
 * for its platform (obtained now if this host has none yet). A runtime that cannot be had is not an
 * error here: the job runs, and a step that needs it fails with the reason.
 */
export async function prepareNodeDelivery(
  runtimes: NodeRuntimes | undefined,
  image: ImageSpec,
  hooks: NodeDeliveryHooks,
): Promise<NodeDelivery> {
  const started = performance.now();
  const platform = nodePlatformOf(image.os, image.arch);
  const offers = new Map<NodeMajor, Offer>();
  await Promise.all(
    NODE_MAJORS.map(async (major) => {
      const own = image.node?.[`node${major}`];
      if (own) {
        offers.set(major, { t: "image", path: own.path, package: own.package });
        return;
      }
      if (!runtimes || platform !== DELIVERED_PLATFORM) {
        offers.set(major, {
          t: "none",
          reason: `gnomon brings Node.js only for ${DELIVERED_PLATFORM} guests, and the image ${image.name} (${platform}) declares no Node.js ${major} of its own: install it in the image and add node.node${major} (its path and package) to ${image.name} in the image catalog`,
        });
        return;
      }
      try {
        if (!(await runtimes.cached(platform, major))) hooks.onObtaining?.(`Node.js ${major} for ${platform}`);
        offers.set(major, { t: "disk", runtime: await runtimes.prepare(platform, major, hooks.signal) });
      } catch (err) {
        hooks.signal.throwIfAborted();
        hooks.log.warn({ err, major, platform }, "node runtime unavailable; JavaScript steps that need it will fail");
        offers.set(major, { t: "none", reason: (err as Error).message });
      }
    }),
  );
  hooks.onTimed?.("obtain", performance.now() - started);
  const disks = [...offers.values()].flatMap((o) => (o.t === "disk" ? [o.runtime.disk] : []));
  return {
    disks,
    locator: (executor, signal) => {
      const found = new Map<NodeMajor, Promise<NodeLocation>>();
      for (const major of NODE_MAJORS) {
        const p = locateInGuest(executor, image, offers.get(major), major, signal);
        p.catch(() => undefined); // a failure is the answer of the step that asks
        found.set(major, p);
      }
      return {
        async locate(major) {
          const t0 = performance.now();
          try {
            return await found.get(major)!;
          } finally {
            // What a step waited for, not the look-up itself: the delivery's cost to the job.
            hooks.onTimed?.("locate", performance.now() - t0);
          }
        },
      };
    },
  };
}

/**
 * Finds the disk by its label and mounts it read-only where a guest expects it, unless the image
 * did at boot. Node itself is not started here: under TCG a cold start costs seconds, which the
 * step pays anyway; a node that cannot start (missing libraries) says so in the step's log.
 */
const MOUNT_AND_CHECK = `d=$1 label=$2
if [ ! -x "$d/bin/node" ]; then
  dev=$( (findfs "LABEL=$label" || blkid -L "$label") 2>/dev/null ) || dev=/dev/disk/by-label/$label
  if [ ! -e "$dev" ]; then echo "no disk labelled $label is attached to this VM" >&2; exit 3; fi
  if [ "$(id -u)" = 0 ]; then s=; else s="sudo -n"; fi
  if ! { $s mkdir -p "$d" && $s mount -r -t iso9660 "$dev" "$d"; }; then
    echo "the job user cannot mount $dev on $d: it needs passwordless sudo, or the image must mount the disk labelled $label on $d at boot" >&2
    exit 4
  fi
fi
echo ready
`;

const CHECK = 'if [ ! -x "$1" ]; then exit 3; fi; echo ready';

async function locateInGuest(
  executor: Executor,
  image: ImageSpec,
  offer: Offer | undefined,
  major: NodeMajor,
  signal: AbortSignal,
): Promise<NodeLocation> {
  if (!offer || offer.t === "none")
    return { found: false, reason: offer?.reason ?? `gnomon has no Node.js ${major} for this machine` };
  if (offer.t === "image") {
    const r = await run(executor, ["sh", "-c", CHECK, "sh", offer.path], signal);
    if (r.ok) return { found: true, path: offer.path, describe: `the image's ${offer.path}` };
    const what = r.exitCode === 3 ? "is not there" : `could not be checked (${r.output || `exit ${r.exitCode}`})`;
    return {
      found: false,
      reason: `the image ${image.name} declares Node.js ${major} at ${offer.path}, which ${what}: install ${offer.package ?? `Node.js ${major}`} in the image`,
    };
  }
  const dir = guestNodeDir(major);
  const r = await run(executor, ["sh", "-c", MOUNT_AND_CHECK, "sh", dir, offer.runtime.label], signal);
  if (r.ok)
    return {
      found: true,
      path: `${dir}/bin/node`,
      describe: `gnomon's Node.js ${offer.runtime.version} (${offer.runtime.from}), from the disk labelled ${offer.runtime.label}`,
    };
  return {
    found: false,
    reason: `gnomon's Node.js ${major} disk (${offer.runtime.label}) is attached but could not be used in ${image.name}: ${r.output || `exit ${r.exitCode}`}`,
  };
}

async function run(
  executor: Executor,
  argv: readonly string[],
  signal: AbortSignal,
): Promise<{ ok: boolean; exitCode: number | null; output: string }> {
  const lines: string[] = [];
  let ready = false;
  const r = await executor.run({
    argv,
    env: {},
    cwd: executor.platform.tempDir,
    signal,
    onLine: (stream, line) => {
      if (stream === "stdout" && line.trim() === "ready") ready = true;
      else if (line.trim()) lines.push(line.trim());
    },
  });
  return { ok: r.exitCode === 0 && ready, exitCode: r.exitCode, output: lines.slice(-3).join(" / ") };
}

/** gnomon's runtime for this host's own platform, obtained at the first step that needs it (gnomon exec, host labels). */
export function hostNodeLocator(runtimes: NodeRuntimes, hooks: Omit<NodeDeliveryHooks, "signal">): NodeLocator {
  const platform = nodePlatformOf(process.platform === "sunos" ? "illumos" : process.platform, hostArch());
  return {
    async locate(major, signal) {
      const t0 = performance.now();
      try {
        if (!(await runtimes.cached(platform, major))) hooks.onObtaining?.(`Node.js ${major} for ${platform}`);
        const runtime = await runtimes.prepare(platform, major, signal);
        return { found: true, path: runtime.node, describe: `gnomon's Node.js ${runtime.version} (${runtime.from})` };
      } catch (err) {
        signal.throwIfAborted();
        return { found: false, reason: (err as Error).message };
      } finally {
        hooks.onTimed?.("locate", performance.now() - t0);
      }
    },
  };
}

function hostArch(): string {
  return process.arch === "x64" ? "x86_64" : process.arch === "arm64" ? "aarch64" : process.arch;
}
