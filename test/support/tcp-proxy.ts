// A TCP proxy a fault test controls: it forwards to a target (RabbitMQ) and can cut every live
// connection at once, refuse new ones (connection refused, as a broker that is down), and accept
// again on the same port. It never looks at the bytes it forwards.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";

export class TcpProxy {
  readonly #targetHost: string;
  readonly #targetPort: number;
  readonly #live = new Set<Socket>();
  readonly #clients = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;
  /** Connections accepted since start (for asserting that clients reconnected). */
  accepted = 0;

  constructor(target: { host: string; port: number }) {
    this.#targetHost = target.host;
    this.#targetPort = target.port;
  }

  get port(): number {
    return this.#port;
  }

  /** Live client connections. */
  get connections(): number {
    return this.#clients.size;
  }

  /** Listens (on a free port the first time, on the same port afterwards). */
  async listen(): Promise<number> {
    if (this.#server) return this.#port;
    const server = createServer((client) => this.#pipe(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#server = server;
    const addr = server.address();
    if (addr && typeof addr === "object") this.#port = addr.port;
    return this.#port;
  }

  /** Destroys every live connection, both sides, as a network failure would. */
  dropAll(): void {
    for (const s of this.#live) s.destroy();
    this.#live.clear();
    this.#clients.clear();
  }

  /** Stops listening: new connections are refused until accept(). Live ones stay unless dropped. */
  async refuse(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Listens again on the same port. */
  async accept(): Promise<void> {
    await this.listen();
  }

  async close(): Promise<void> {
    this.dropAll();
    await this.refuse();
  }

  #pipe(client: Socket): void {
    this.accepted += 1;
    client.setNoDelay(true);
    const upstream = tcpConnect({ host: this.#targetHost, port: this.#targetPort, noDelay: true });
    this.#live.add(client);
    this.#live.add(upstream);
    this.#clients.add(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.#live.delete(client);
      this.#live.delete(upstream);
      this.#clients.delete(client);
    };
    client.on("error", end);
    upstream.on("error", end);
    client.on("close", end);
    upstream.on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
