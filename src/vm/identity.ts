// Handing a pre-booted VM (a warm pool's) to a job. The VM booted with a pool key that exists only
// in this process's memory; here, over the pool key's own SSH connection (a channel only gnomon
// holds), the guest's authorized_keys is replaced by the job's fresh ephemeral key alone, that
// connection is closed, and the machine logs in with the job key from then on. So the pool key is
// gone from the guest before any job command runs, and nothing of the VM's time in the pool is
// something a job could use: the VM booted fresh for this job alone and is destroyed after it.
import { setTimeout as sleep } from "node:timers/promises";
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
 * Gives `machine` a fresh job key: installs it as the guest's only authorized key over the pool
 * key's connection (reconnecting once if that connection died while the VM was idle), then closes
 * every pool-key connection. Throws HandOverError when the guest did not take the key.
 */
export async function handOver(machine: Machine, signal?: AbortSignal): Promise<JobKey> {
  const key = generateJobKey(`gnomon-job-${machine.id}`);
  const command = installKeyCommand(key.publicKey);
  let client = machine.takeSshClient();
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        client ??= await connect(machine, signal);
        await run(client, command, signal);
        break;
      } catch (err) {
        client?.end();
        client = undefined;
        if (attempt >= 2 || signal?.aborted) {
          key.privateKey.fill(0);
          throw err instanceof HandOverError
            ? err
            : new HandOverError(`the pooled VM did not take the job's key: ${(err as Error).message}`, { cause: err });
        }
        await sleep(100, undefined, { signal }).catch(() => undefined);
      }
    }
  } finally {
    client?.end();
  }
  machine.replaceKey(key);
  return key;
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
