// Handing a pre-booted VM (a warm pool's) to a job. The VM booted with a pool key that exists only
// in this process's memory; here, over the pool key's own SSH connection (a channel only gnomon
// holds), the guest's authorized_keys is replaced by the job's fresh ephemeral key alone and the
// pool key is wiped from memory, so no one can log in with it again before the job's first command
// runs. That connection is gnomon's and carries the job on (the provisioner opens the executor on
// it while the key goes in, which saves a new login); new connections need the job key. Nothing of
// the VM's time in the pool is something a job could use: it booted fresh for this one job, with
// its own host key, and is destroyed after it.
import { Client } from "ssh2";
import type { Machine } from "./machine.js";
import { generateJobKey, type JobKey } from "./ssh-key.js";

export class HandOverError extends Error {
  override readonly name = "HandOverError";
  readonly code = "vm.hand-over-failed";
}

/** The guest command that makes `publicKey` the only key its login user accepts (atomically). */
export function installKeyCommand(publicKey: string): string {
  if (!/^ssh-ed25519 [A-Za-z0-9+/=]+ [A-Za-z0-9._-]+$/.test(publicKey))
    throw new HandOverError("the job key is not an ed25519 authorized_keys line gnomon made");
  return [
    "umask 077",
    'mkdir -p "$HOME/.ssh"',
    `printf '%s\\n' '${publicKey}' > "$HOME/.ssh/authorized_keys.gnomon"`,
    'mv -f "$HOME/.ssh/authorized_keys.gnomon" "$HOME/.ssh/authorized_keys"',
  ].join(" && ");
}

/**
 * Gives `machine` a fresh job key over `client` (a connection gnomon made with the pool key):
 * installs it as the guest's only authorized key, then wipes the pool key from memory. From then on
 * only the job key logs in; `client` stays gnomon's own connection and may carry the job. Throws
 * HandOverError when the guest did not take the key (the caller destroys the VM).
 */
export async function handOver(machine: Machine, client: Client, signal?: AbortSignal): Promise<JobKey> {
  const key = generateJobKey(`gnomon-job-${machine.id}`);
  try {
    await run(client, installKeyCommand(key.publicKey), signal);
  } catch (err) {
    key.privateKey.fill(0);
    throw err instanceof HandOverError
      ? err
      : new HandOverError(`the pooled VM did not take the job's key: ${(err as Error).message}`, { cause: err });
  }
  machine.replaceKey(key);
  return key;
}

/**
 * The pool key's connection made at boot, or a new one if the machine has none. Only gnomon has
 * the key it logs in with. (A held connection that died while idle fails the hand-over: the VM is
 * destroyed and the job boots cold.)
 */
export async function poolConnection(machine: Machine, signal?: AbortSignal): Promise<Client> {
  const held = machine.takeSshClient();
  if (held) return held;
  try {
    return await connect(machine, signal);
  } catch (err) {
    throw new HandOverError(`the pooled VM does not answer SSH: ${(err as Error).message}`, { cause: err });
  }
}

function connect(machine: Machine, signal?: AbortSignal): Promise<Client> {
  const { host, port, username, privateKey, hostKey } = machine.ssh;
  return new Promise((resolve, reject) => {
    const c = new Client();
    const onAbort = () => {
      c.end();
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    c.once("ready", () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(c);
    });
    c.once("error", (err) => {
      signal?.removeEventListener("abort", onAbort);
      reject(err);
    });
    c.connect({
      host,
      port,
      username,
      privateKey,
      readyTimeout: 10_000,
      hostVerifier: (k: Buffer) => hostKey.length === 0 || k.equals(hostKey),
    });
  });
}

function run(client: Client, command: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, stream) => {
      if (err) return reject(err);
      let stderr = "";
      const onAbort = () => {
        stream.close();
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      stream.on("data", () => undefined);
      stream.stderr.on("data", (b: Buffer) => {
        stderr = (stderr + b.toString("utf8")).slice(-2_000);
      });
      stream.on("close", (code: number | null) => {
        signal?.removeEventListener("abort", onAbort);
        if (code === 0) resolve();
        else reject(new HandOverError(`installing the job key in the guest exited ${code}: ${stderr.trim()}`));
      });
    });
  });
}
