// Where a job's steps run: a fresh VM for a catalog label (the normal case) or this host for an
// explicitly allowed `host` label. A VM gets what gnomon serves into it on purpose: its egress
// proxy and, when the job's forge is on this host, that forge's endpoints (forge-forwards.ts). The
// orchestrator asks a Provisioner for a Workspace and always destroys it; nothing else in the
// orchestrator knows about QEMU.
import type { ClientChannel } from "ssh2";
import type { ProvisioningPhase } from "../contract/job-event.js";
import type { EgressPolicy } from "../egress/policy.js";
import { EgressProxy } from "../egress/proxy.js";
import type { NodeLocator } from "../engine/action-node.js";
import type { HostActionCache } from "../engine/host-actions.js";
import { type Executor, ServeRefusedError } from "../executor/executor.js";
import { createHostExecutor } from "../executor/host.js";
import { createSshExecutor, type SessionRequest, type SshExecutor } from "../executor/ssh.js";
import type { Logger } from "../telemetry/log.js";
import { type Catalog, type ImageSpec, resolveImage } from "../vm/catalog.js";
import { handOver, poolConnection } from "../vm/identity.js";
import { bootMachine, type Machine, type SpawnedVm } from "../vm/machine.js";
import type { NodeRuntimes } from "../vm/node-runtime.js";
import type { Accel } from "../vm/qemu-args.js";
import type { Size } from "./capacity.js";
import { type ForgeForwards, serveForgeForwards } from "./forge-forwards.js";
import { hostNodeLocator, type NodeDelivery, prepareNodeDelivery } from "./node-delivery.js";

export interface Workspace {
  readonly executor: Executor;
  /** Tears everything down (VM, overlay, seed); idempotent, never throws. */
  destroy(): Promise<void>;
  readonly describe: string;
  /** This host, for git fetches the machine cannot do itself (it has no git). */
  readonly hostGit?: () => Promise<Executor>;
  /** A URL of the job's forge as the machine reaches it (its forge on this host is forwarded). */
  readonly machineUrl?: (url: string) => string;
  /** Remote actions fetched on this host, once per commit, and copied into the machine. */
  readonly actionCache?: HostActionCache;
  /** Node.js for JavaScript actions beyond the machine's PATH (node-delivery.ts). */
  readonly node?: NodeLocator;
  /**
   * A session in the machine as the job's user, over gnomon's own connection (debug SSH). Only
   * VMs have it: a host label runs on this machine, which nobody may enter through gnomon.
   */
  readonly openSession?: (req: SessionRequest) => Promise<ClientChannel>;
  /** How its machine started: handed out of a warm pool, or booted for the job (cold). Absent: no VM. */
  readonly path?: StartPath;
}

/** How a job's VM started, for its set-up log and gnomon_vm_start_seconds. */
export type StartPath = "pooled" | "cold";

export interface ProvisionHooks {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** A boot phase began; the forge shows it while the job waits for its machine. */
  onPhase(phase: ProvisioningPhase, message?: string): void;
  /** QEMU started: record it so a crash of this process still gets it reaped. */
  onSpawn(vm: SpawnedVm): Promise<void>;
  /** The last serial console lines, when boot failed, for the job log. */
  onSerialTail?(lines: readonly string[]): void;
  /** "host:port" of the job's forge services: reachable from the VM even in private networks. */
  readonly forgeEndpoints?: readonly string[];
  /** The job may run JavaScript actions: its VM gets Node.js runtime disks (engine/action-node.ts mayRunJavaScript). */
  readonly javascript?: boolean;
  /** How long delivering Node.js took, per stage (node-delivery.ts), for the metrics. */
  onNodeTimed?(stage: "obtain" | "locate", ms: number): void;
  /**
   * A warm pool's idle VM of the target's image to hand to the job instead of booting one
   * (warm-pool.ts); it is the job's from here, destroyed with its workspace. If it cannot take the
   * job's key, it is destroyed and the job boots cold, with a line saying so.
   */
  readonly pooled?: Machine;
}

/** What a warm pool needs to boot a VM that waits for a job. */
export interface PrebootHooks {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** QEMU started: record it so a crash of this process still gets it reaped. */
  onSpawn(vm: SpawnedVm): Promise<void>;
}

/** What a label resolves to on this host. */
export type Target =
  | { readonly kind: "vm"; readonly label: string; readonly image: ImageSpec }
  | { readonly kind: "host"; readonly label: string };

export interface Provisioner {
  /** The labels this host serves. */
  readonly labels: readonly string[];
  /** The per-VM run folders' parent (<dataDir>/vms): the reaper deletes no file outside it. None: no VMs. */
  readonly runDir?: string;
  /**
   * Resolves a label to what runs it; throws UnknownLabelError (not served here) or
   * ImageMissingError (served, but the image is not on this host), both with the fix in the message.
   */
  resolve(label: string): Promise<Target>;
  sizeOf(target: Target): Size;
  provision(target: Target, hooks: ProvisionHooks): Promise<Workspace>;
  /** Boots a VM of `image` with a key of its own, for a warm pool; absent: this host pools nothing. */
  preboot?(image: ImageSpec, hooks: PrebootHooks): Promise<Machine>;
}

export interface VmProvisionerOptions {
  readonly catalog: Catalog;
  readonly imagesDir: string;
  /** Per-VM run folders (overlays, seeds, QMP sockets). */
  readonly runDir: string;
  /** Labels to serve: empty = every catalog label. */
  readonly labels?: readonly string[];
  /** Labels that run on this host without a VM, as `<name>:host` (never by default). */
  readonly hostLabels?: readonly string[];
  readonly accel?: Accel;
  /** Where host-label jobs get their per-job directories. */
  readonly hostWorkDir?: string;
  /** What jobs in VMs reach through their egress proxy (images with `network: nat`). */
  readonly egress: EgressPolicy;
  /** The host's action cache (<dataDir>/actions); without it, actions are fetched where git runs. */
  readonly actionCache?: HostActionCache;
  /** Node.js runtimes for JavaScript actions (<dataDir>/runtimes); none: only what images have. */
  readonly nodeRuntimes?: NodeRuntimes;
}

export class NotServedError extends Error {
  override readonly name = "NotServedError";
  readonly code = "orchestrator.label-not-served";
  constructor(
    readonly label: string,
    readonly served: readonly string[],
  ) {
    super(
      `no VM image serves runs-on "${label}" here; this fleet serves: ${served.join(", ") || "(nothing)"}. ` +
        "Use one of those labels, or add an image for it to the catalog (docs/images.md).",
    );
  }
}

export function createVmProvisioner(opts: VmProvisionerOptions): Provisioner {
  const hostLabels = new Set(opts.hostLabels ?? []);
  // A queue exists per label and per image name: `name:vm:image` labels queue under the image name.
  const catalogLabels = [...new Set([...opts.catalog.labels.keys(), ...opts.catalog.images.keys()])];
  const vmLabels =
    opts.labels && opts.labels.length > 0 ? opts.labels.filter((l) => !hostLabels.has(l)) : catalogLabels;
  const labels = [...new Set([...vmLabels, ...hostLabels])].sort();
  return {
    labels,
    runDir: opts.runDir,
    async resolve(label) {
      if (hostLabels.has(label)) return { kind: "host", label };
      if (!vmLabels.includes(label) || !catalogLabels.includes(label)) throw new NotServedError(label, labels);
      return { kind: "vm", label, image: await resolveImage(opts.catalog, label, opts.imagesDir) };
    },
    sizeOf(target) {
      return target.kind === "vm"
        ? { cpus: target.image.cpus, memoryMiB: target.image.memoryMiB }
        : { cpus: 0, memoryMiB: 0 };
    },
    async provision(target, hooks) {
      if (target.kind === "host") {
        const executor = await createHostExecutor({ parentDir: opts.hostWorkDir });
        hooks.onPhase("ready", "running on this host (no VM): the job is not isolated from it");
        const node = opts.nodeRuntimes
          ? hostNodeLocator(opts.nodeRuntimes, { log: hooks.log, onTimed: hooks.onNodeTimed })
          : undefined;
        return {
          executor,
          describe: "this host",
          actionCache: opts.actionCache,
          node,
          destroy: () => executor.close().catch(() => undefined),
        };
      }
      const image = target.image;
      let node: NodeDelivery | undefined;
      if (hooks.javascript)
        node = await prepareNodeDelivery(opts.nodeRuntimes, image, {
          signal: hooks.signal,
          log: hooks.log,
          onTimed: hooks.onNodeTimed,
          onObtaining: (what) =>
            hooks.onPhase("creating-disk", `obtaining ${what} for JavaScript actions (once per host)…`),
        });
      const pooled = hooks.pooled ? await handOverPooled(hooks.pooled, target.label, hooks) : undefined;
      // The machine reports creating-disk itself (its first phase): saying it here too showed it twice.
      const machine =
        pooled?.machine ??
        (await bootMachine(image, {
          runDir: opts.runDir,
          signal: hooks.signal,
          logger: hooks.log,
          accel: opts.accel,
          onSpawn: (vm) => hooks.onSpawn(vm),
          // "ready" is reported below, once the executor is connected too.
          onPhase: (step) => step !== "ready" && hooks.onPhase(step, phaseMessage(step, image)),
          readOnlyDisks: node?.disks,
        }).catch((err: unknown) => {
          const tail = (err as { serialTail?: readonly string[] }).serialTail;
          if (tail && hooks.onSerialTail) hooks.onSerialTail(tail);
          throw err;
        }));
      let executor: SshExecutor;
      if (pooled) executor = pooled.executor;
      else
        try {
          const client = machine.takeSshClient();
          executor = await createSshExecutor(client ?? machine.ssh, { label: target.label, signal: hooks.signal });
        } catch (err) {
          await machine.destroy({ why: "boot-failed" });
          throw err;
        }
      let egress: EgressProxy | undefined;
      let noEgress = "";
      if (image.network === "nat") {
        try {
          egress = await serveEgress(executor, opts.egress, hooks);
        } catch (err) {
          if (!(err instanceof ServeRefusedError)) {
            await executor.close().catch(() => undefined);
            await machine.destroy({ why: "boot-failed" });
            throw err;
          }
          hooks.log.warn({ err }, "the guest refused the egress forward; the job runs without network");
          noEgress = `; it has no network: ${err.message}`;
        }
      }
      let forge: ForgeForwards | undefined;
      let forgeNote = "";
      try {
        forge = await serveForgeForwards(executor, hooks.forgeEndpoints ?? [], { log: hooks.log });
        if (forge.forwards.length > 0) forgeNote = `; its forge on this host is forwarded into it: ${forge.describe()}`;
      } catch (err) {
        if (!(err instanceof ServeRefusedError)) {
          await egress?.close();
          await executor.close().catch(() => undefined);
          await machine.destroy({ why: "boot-failed" });
          throw err;
        }
        hooks.log.warn({ err }, "the guest refused the forge forwards; the job cannot reach its forge on this host");
        forgeNote = `; it cannot reach its forge on this host: ${err.message}`;
      }
      const started = pooled
        ? `${image.name} VM ${machine.id} from the warm pool (pre-booted in ${(machine.bootMs / 1000).toFixed(1)} s, ${machine.accel.toUpperCase()}), given this job's own key`
        : `${image.name} is up after ${(machine.bootMs / 1000).toFixed(1)} s (${machine.accel.toUpperCase()}, cold boot)`;
      hooks.onPhase("ready", `${started}${noEgress}${forgeNote}`);
      return {
        executor,
        describe: `${image.name} VM ${machine.id} (pid ${machine.pid})`,
        hostGit: () => createHostExecutor({ parentDir: opts.hostWorkDir }),
        machineUrl: forge?.machineUrl,
        actionCache: opts.actionCache,
        node: node?.locator(executor, hooks.signal),
        openSession: (req) => executor.openSession(req),
        path: pooled ? "pooled" : "cold",
        async destroy() {
          await forge?.close();
          await egress?.close();
          await executor.close().catch(() => undefined);
          await machine.destroy({ graceMs: 2_000 }).catch(() => undefined);
        },
      };
    },
    preboot(image, hooks) {
      return bootMachine(image, {
        runDir: opts.runDir,
        signal: hooks.signal,
        logger: hooks.log,
        accel: opts.accel,
        onSpawn: (vm) => hooks.onSpawn(vm),
      });
    },
  };
}

/**
 * The pooled VM with the job's own key in it and an executor on gnomon's connection to it, or
 * undefined (it is destroyed) when it would not take the key: the job then boots cold, and its
 * set-up log says why. The key goes in while the executor probes the guest, over one connection.
 */
async function handOverPooled(
  machine: Machine,
  label: string,
  hooks: ProvisionHooks,
): Promise<{ machine: Machine; executor: SshExecutor } | undefined> {
  let executor: Promise<SshExecutor> | undefined;
  try {
    const client = await poolConnection(machine, hooks.signal);
    executor = createSshExecutor(client, { label, signal: hooks.signal });
    const [, ex] = await Promise.all([handOver(machine, client, hooks.signal), executor]);
    return { machine, executor: ex };
  } catch (err) {
    await executor?.then((ex) => ex.close()).catch(() => undefined);
    await machine.destroy({ why: "boot-failed" }).catch(() => undefined);
    hooks.signal.throwIfAborted();
    hooks.log.warn({ err, vm: machine.id }, "a pooled VM did not take the job's key; booting one for the job");
    hooks.onPhase(
      "creating-disk",
      `the warm pool's VM could not be handed over (${(err as Error).message}); booting a fresh one`,
    );
    return undefined;
  }
}

/**
 * Starts the job's egress proxy and serves it into the guest over SSH; every process of the job
 * gets it as its HTTP(S) proxy (names resolve on this host: the guest itself has no DNS).
 */
async function serveEgress(executor: SshExecutor, policy: EgressPolicy, hooks: ProvisionHooks): Promise<EgressProxy> {
  const egress = new EgressProxy({ policy, forgeEndpoints: hooks.forgeEndpoints, log: hooks.log });
  try {
    const served = await executor.serve((stream) => egress.accept(stream));
    executor.setMachineEnv(proxyEnv(`http://127.0.0.1:${served.port}`));
    return egress;
  } catch (err) {
    await egress.close();
    throw err;
  }
}

/** The variables proxy-aware tools read (curl, git, apt, pip, npm, pkg(5), Go, the actions toolkit). */
export function proxyEnv(url: string): Record<string, string> {
  const local = "localhost,127.0.0.1,::1";
  return { http_proxy: url, https_proxy: url, HTTP_PROXY: url, HTTPS_PROXY: url, no_proxy: local, NO_PROXY: local };
}

function phaseMessage(step: string, image: ImageSpec): string {
  switch (step) {
    case "creating-disk":
      return `creating a disk for ${image.name}`;
    case "booting":
      return `booting ${image.name}…`;
    case "kernel":
      return `${image.name}: kernel running, waiting for the network`;
    case "network":
      return `${image.name}: network up, waiting for SSH`;
    case "ssh":
      return `${image.name}: SSH is answering, logging in`;
    default:
      return `${image.name}: ${step}`;
  }
}
