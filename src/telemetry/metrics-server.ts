// The /healthz and /metrics HTTP endpoint, as a Service. Health is computed by the caller from the
// services it runs (health.ts); metrics come from the Prometheus registry. It never exposes job data.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { deferred, type Service, type ServiceStatus } from "../lifecycle/service.js";
import type { Health } from "./health.js";
import type { Metrics } from "./metrics.js";

export interface MetricsServerOptions {
  /** host:port; port 0 picks a free one (see `address`). */
  readonly listen: string;
  readonly metrics: Metrics;
  readonly health: () => Health;
}

/** The endpoint cannot listen where orchestrator.metricsListen says: a setting to change, named in the message. */
export class MetricsListenError extends Error {
  override readonly name = "MetricsListenError";
  readonly code = "telemetry.metrics-listen";
  constructor(
    readonly listen: string,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(
      `orchestrator.metricsListen (GNOMON_METRICS_LISTEN, --metrics-listen) ${JSON.stringify(listen)}: ${problem}; ` +
        "choose a free port on an address of this host, e.g. 127.0.0.1:9464, or leave it empty for no endpoint",
      options,
    );
  }
}

export class MetricsServer implements Service {
  readonly name = "metrics endpoint";
  readonly done: Promise<Error | undefined>;
  readonly #ended = deferred<Error | undefined>();
  readonly #opts: MetricsServerOptions;
  #server: Server | undefined;
  #stopped = false;

  constructor(opts: MetricsServerOptions) {
    this.#opts = opts;
    this.done = this.#ended.promise;
  }

  /** Where it listens, once started: "127.0.0.1:9464". */
  get address(): string {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    return a ? `${a.address}:${a.port}` : "";
  }

  status(): ServiceStatus {
    if (this.#stopped) return { state: "stopped", detail: "not listening" };
    if (!this.#server) return { state: "starting", detail: `about to listen on ${this.#opts.listen}` };
    return { state: "ready", detail: `listening on ${this.address}` };
  }

  async start(): Promise<void> {
    const m = /^(.*):(\d+)$/.exec(this.#opts.listen);
    if (!m) throw new MetricsListenError(this.#opts.listen, "is not host:port");
    const host = m[1]!.replace(/^\[|\]$/g, "") || "0.0.0.0";
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET") {
        res.writeHead(405).end();
      } else if (path === "/metrics") {
        this.#opts.metrics.registry
          .metrics()
          .then((text) => res.writeHead(200, { "content-type": this.#opts.metrics.registry.contentType }).end(text))
          .catch((err: unknown) => res.writeHead(500).end(String(err)));
      } else if (path === "/healthz") {
        const h = this.#opts.health();
        res
          .writeHead(h.ok ? 200 : 503, { "content-type": "application/json" })
          .end(`${JSON.stringify({ ok: h.ok, ...h.detail })}\n`);
      } else res.writeHead(404, { "content-type": "text/plain" }).end("try /healthz or /metrics\n");
    });
    await new Promise<void>((resolve, reject) => {
      const refused = (err: NodeJS.ErrnoException) =>
        reject(
          new MetricsListenError(this.#opts.listen, `cannot listen there (${err.code ?? err.message})`, { cause: err }),
        );
      server.once("error", refused);
      server.listen(Number(m[2]), host, () => {
        server.off("error", refused);
        resolve();
      });
    });
    this.#server = server;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const s = this.#server;
    this.#server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
    s?.closeAllConnections();
    this.#ended.resolve(undefined);
  }
}
