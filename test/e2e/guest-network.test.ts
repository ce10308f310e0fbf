// What a job in a VM can reach, tried from its own steps through the real orchestrator: the
// internet (a host in its own network namespace) through gnomon's egress proxy, and nothing of the
// gnomon host: not RabbitMQ, not PostgreSQL, not the metrics endpoint, not an arbitrary port,
// neither directly (QEMU's 10.0.2.2 alias, the host's own address) nor through the proxy.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, describe, it } from "node:test";
import { createMetrics } from "../../src/telemetry/metrics.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type FakeInternet, startFakeInternet } from "../support/fake-internet.js";
import { jobRequestFromYaml } from "../support/job-requests.js";
import { EventCollector, logText, resultOf, startOrchestrator } from "../support/orchestrators.js";
import { startTestBus } from "../support/rabbit.js";
import { testImage } from "../support/test-image.js";

/**
 * Python's urllib reads http_proxy like curl, git and pip do: the internet through it. The host's
 * services are asked for through the proxy explicitly (loopback names bypass a proxy by default;
 * a job can still send them to it, and the proxy must refuse).
 */
const PROBE = String.raw`
import http.client, os, sys, urllib.request, urllib.error
proxy = os.environ.get("http_proxy", "")
print("proxy set:", proxy.startswith("http://127.0.0.1:"))
phost, pport = proxy.split("//")[1].rstrip("/").split(":")
def via_env(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            print("GET", url, r.status, r.read().decode().strip())
    except Exception as e:
        print("GET", url, "error", e)
def via_proxy(url):
    c = http.client.HTTPConnection(phost, int(pport), timeout=20)
    c.request("GET", url)
    r = c.getresponse()
    print("GET", url, r.status, r.read().decode().strip().splitlines()[0])
def tunnel(host, port):
    c = http.client.HTTPConnection(phost, int(pport), timeout=20)
    c.set_tunnel(host, port)
    try:
        c.request("GET", "/through-a-tunnel")
        r = c.getresponse()
        print("CONNECT", host, port, r.status, r.read().decode().strip())
    except OSError as e:
        print("CONNECT", host, port, "refused:", str(e).splitlines()[0])
urls = sys.argv[1].split()
via_env(urls[0])
for url in urls[1:]:
    via_proxy(url)
for target in sys.argv[2].split():
    host, port = target.rsplit(":", 1)
    tunnel(host, int(port))
`;

describe("the network of a job's VM (RabbitMQ, PostgreSQL, a real VM, a host on the internet)", () => {
  let td: TestDatabase;
  let internet: FakeInternet;
  const cleanups: (() => Promise<void>)[] = [];
  let decoy: Server;
  let metrics: MetricsServer;
  before(async () => {
    await testImage();
    td = await createTestDatabase("postgres");
    internet = await startFakeInternet({ after: (fn) => cleanups.push(fn) });
    // An arbitrary service of the host, listening on every address.
    decoy = createServer((s) => {
      s.on("error", () => undefined);
      s.end("host secret\n");
    });
    decoy.listen(0, "0.0.0.0");
    await once(decoy, "listening");
    metrics = new MetricsServer({
      listen: "0.0.0.0:0",
      metrics: createMetrics({ defaultMetrics: false }),
      health: () => ({ ok: true, detail: {} }),
    });
    await metrics.start();
  });
  after(async () => {
    decoy?.close();
    await metrics?.stop();
    for (const fn of cleanups.reverse()) await fn();
    await td?.drop();
  });

  it("reaches the internet through its proxy and nothing of the host, directly or through the proxy", async (t) => {
    const hostIp = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .find((i) => i.family === "IPv4" && !i.internal)?.address;
    assert.ok(hostIp, "this host has a non-loopback IPv4 address");
    const decoyPort = (decoy.address() as { port: number }).port;
    const metricsPort = Number(metrics.address.split(":").at(-1));
    const hostPorts = { rabbitmq: 5672, postgresql: 5432, metrics: metricsPort, arbitrary: decoyPort };
    const direct = Object.entries(hostPorts).flatMap(([name, port]) => [
      `${name}=10.0.2.2:${port}`,
      `${name}=${hostIp}:${port}`,
    ]);
    const web = `http://${internet.address}:${internet.port}`;
    const viaProxy = [
      `${web}/hello`,
      `http://127.0.0.1:${hostPorts.rabbitmq}/`,
      `http://localhost:${hostPorts.postgresql}/`,
      `http://${hostIp}:${metricsPort}/metrics`,
      `http://${hostIp}:${decoyPort}/`,
      `http://${internet.hostSide}:${decoyPort}/`,
      `http://169.254.169.254/latest/meta-data/`,
    ];
    const tunnels = [
      `${internet.address}:${internet.port}`,
      `127.0.0.1:${hostPorts.rabbitmq}`,
      `${hostIp}:${hostPorts.postgresql}`,
      `localhost:${decoyPort}`,
    ];
    const workflow = `
on: push
jobs:
  net:
    runs-on: test
    steps:
      - name: Connect straight to the host
        env:
          TARGETS: ${direct.join(" ")}
        run: |
          for t in $TARGETS; do
            name=\${t%%=*}; hp=\${t#*=}; h=\${hp%:*}; p=\${hp##*:}
            if timeout 10 bash -c "exec 3<>/dev/tcp/$h/$p" 2>/dev/null; then echo "direct $name $hp reached"; else echo "direct $name $hp blocked"; fi
          done
      - name: Through the proxy
        env:
          PROBE: |
${PROBE.trim()
  .split("\n")
  .map((l) => `            ${l}`)
  .join("\n")}
        run: python3 -c "$PROBE" '${viaProxy.join(" ")}' '${tunnels.join(" ")}'
`;
    const { bus } = await startTestBus(t, "e2e-net");
    const replyTo = `runner-${randomUUID().slice(0, 8)}`;
    const events = await EventCollector.start(t, bus, replyTo);
    await startOrchestrator(t, { bus, databaseUrl: td.location, labels: ["test"], maxVms: 1 });
    const req = await jobRequestFromYaml(workflow, { runsOn: "test", replyTo });
    await bus.publishJob(req);
    const got = await events.finished(req.id, 300_000);
    const lines = logText(got);
    const all = lines.join("\n");
    assert.equal(resultOf(got)?.result, "success", all);

    for (const d of direct) {
      const [name, hp] = d.split("=");
      assert.ok(lines.includes(`direct ${name} ${hp} blocked`), `${name} at ${hp} must be blocked:\n${all}`);
    }
    assert.ok(!lines.some((l) => /^direct \S+ \S+ reached$/.test(l)), all);
    assert.ok(lines.includes("proxy set: True"), all);
    assert.ok(
      lines.includes(
        `GET ${web}/hello 200 hello from ${internet.address} path=/hello host=${internet.address}:${internet.port}`,
      ),
      all,
    );
    for (const url of viaProxy.slice(1))
      assert.ok(
        lines.some((l) => l.startsWith(`GET ${url} 403 gnomon refused the job's connection`)),
        `${url} must be refused by the proxy:\n${all}`,
      );
    assert.ok(
      lines.includes(
        `CONNECT ${internet.address} ${internet.port} 200 hello from ${internet.address} path=/through-a-tunnel host=${internet.address}:${internet.port}`,
      ),
      all,
    );
    for (const target of tunnels.slice(1)) {
      const [host, port] = [target.slice(0, target.lastIndexOf(":")), target.slice(target.lastIndexOf(":") + 1)];
      assert.ok(
        lines.some((l) => l.startsWith(`CONNECT ${host} ${port} refused: Tunnel connection failed: 403`)),
        `a tunnel to ${target} must be refused:\n${all}`,
      );
    }
    assert.ok(!all.includes("host secret"), all);
  });
});
