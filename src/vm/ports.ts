// Host ports for VMs' forwarded SSH: asks the kernel for a free loopback port (bind to port 0) and
// remembers which ports this process has handed to VMs, so two VMs starting together never get the
// same one. Another program can still take a port between our probe and QEMU's bind; machine.ts
// retries with a new port when QEMU reports that its hostfwd could not bind.
import { createServer } from "node:net";

const held = new Set<number>();

function probeFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A loopback port that is free now and not held by another VM of this process; release it later. */
export async function acquirePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await probeFreePort();
    if (port > 0 && !held.has(port)) {
      held.add(port);
      return port;
    }
  }
  throw new Error("the kernel kept handing out loopback ports this process already uses");
}

export function releasePort(port: number): void {
  held.delete(port);
}
