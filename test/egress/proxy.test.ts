// The egress proxy of a job: a host on the internet is reachable through it, the gnomon host and
// its private networks are not, whatever name or address form the job uses.
import assert from "node:assert/strict";
import { once } from "node:events";
import { request } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, describe, it } from "node:test";
import { egressPolicy } from "../../src/egress/policy.js";
import { EgressProxy, type EgressProxyOptions, parseAuthority } from "../../src/egress/proxy.js";
import { rootLogger } from "../../src/telemetry/log.js";
import { type FakeInternet, startFakeInternet } from "../support/fake-internet.js";

const DEFAULT_DENY = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"];

interface Served {
  readonly proxy: EgressProxy;
  readonly port: number;
}

/** A proxy fed by a loopback listener, as the SSH forward feeds it in a VM. */
async function serveProxy(t: { after(fn: () => unknown): unknown }, opts: Partial<EgressProxyOptions> = {}) {
  const proxy = new EgressProxy({
    policy: egressPolicy({ denyNetworks: DEFAULT_DENY, allowNetworks: [] }),
    log: rootLogger(),
    ...opts,
  });
  const server: Server = createServer((s) => proxy.accept(s));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(async () => {
    await proxy.close();
    server.close();
  });
  return { proxy, port: (server.address() as { port: number }).port } satisfies Served;
}

/** Sends CONNECT target; resolves with the status, the body of a refusal, and the open socket. */
async function connectThrough(proxyPort: number, target: string) {
  const socket = connect({ host: "127.0.0.1", port: proxyPort });
  await once(socket, "connect");
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const text = await new Promise<string>((resolve, reject) => {
    let got = "";
    const onData = (chunk: Buffer) => {
      got += chunk.toString("latin1");
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      const len = Number(/Content-Length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? 0);
      if (got.length < end + 4 + len) return;
      socket.off("data", onData);
      socket.pause();
      resolve(got);
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.once("close", () => resolve(got));
  });
  const [head = "", body = ""] = text.split("\r\n\r\n");
  return { status: Number(head.split(" ")[1]), body, socket };
}

/** A GET through the tunnel of an open CONNECT. */
async function getOver(socket: Socket, host: string): Promise<string> {
  socket.write(`GET /tunnelled HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  socket.resume();
  let text = "";
  for await (const chunk of socket) text += (chunk as Buffer).toString("utf8");
  return text.split("\r\n\r\n")[1] ?? "";
}

/** A plain proxy request (absolute URL). */
function getVia(proxyPort: number, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = url.startsWith("http") ? { host: new URL(url).host } : {};
    const req = request({ host: "127.0.0.1", port: proxyPort, path: url, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (s: string) => {
        body += s;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const ownAddress = () =>
  Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .find((i) => i.family === "IPv4" && !i.internal)?.address;

describe("egress proxy", () => {
  let internet: FakeInternet;
  let decoy: Server;
  let decoyPort: number;
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  before(async () => {
    internet = await startFakeInternet({ after: (fn) => cleanups.push(fn) });
    // A service of the host's own, listening on every address, as RabbitMQ or a database might.
    decoy = createServer((s) => {
      s.on("error", () => undefined);
      s.end("host secret\n");
    });
    decoy.listen(0, "0.0.0.0");
    await once(decoy, "listening");
    decoyPort = (decoy.address() as { port: number }).port;
  });
  after(() => decoy.close());

  it("tunnels CONNECT to a host on the internet", async (t) => {
    const { port } = await serveProxy(t);
    const target = `${internet.address}:${internet.port}`;
    const r = await connectThrough(port, target);
    assert.equal(r.status, 200);
    assert.match(await getOver(r.socket, target), new RegExp(`hello from ${internet.address} path=/tunnelled`));
  });

  it("forwards a plain proxy request to the internet, keeping path and Host", async (t) => {
    const { port, proxy } = await serveProxy(t);
    const r = await getVia(port, `http://${internet.address}:${internet.port}/some/path?q=1`);
    assert.equal(r.status, 200);
    assert.equal(
      r.body,
      `hello from ${internet.address} path=/some/path?q=1 host=${internet.address}:${internet.port}\n`,
    );
    assert.equal(proxy.stats().connections, 1);
  });

  it("refuses the host's loopback, by address and by name, with the reason in the answer", async (t) => {
    const { port, proxy } = await serveProxy(t);
    const r = await connectThrough(port, `127.0.0.1:${decoyPort}`);
    assert.equal(r.status, 403);
    assert.match(
      r.body,
      /refused the job's connection to 127\.0\.0\.1:\d+: 127\.0\.0\.1 is a loopback address of the gnomon host/,
    );
    r.socket.destroy();
    const byName = await getVia(port, `http://localhost:${decoyPort}/`);
    assert.equal(byName.status, 403);
    assert.match(byName.body, /loopback address of the gnomon host/);
    assert.doesNotMatch(byName.body, /host secret/);
    const v6 = await connectThrough(port, `[::ffff:127.0.0.1]:${decoyPort}`);
    assert.equal(v6.status, 403);
    v6.socket.destroy();
    const decimal = await getVia(port, `http://2130706433:${decoyPort}/`);
    assert.equal(decimal.status, 403);
    assert.equal(proxy.stats().refused, 4);
  });

  it("refuses the host's own addresses, also those no interface list is asked about", async (t) => {
    const own = ownAddress();
    assert.ok(own, "this host has a non-loopback IPv4 address");
    const { port } = await serveProxy(t);
    const r = await connectThrough(port, `${own}:${decoyPort}`);
    assert.equal(r.status, 403);
    assert.match(r.body, new RegExp(`${own} is an address of the gnomon host`));
    r.socket.destroy();
    const vethEnd = await getVia(port, `http://${internet.hostSide}:${decoyPort}/`);
    assert.equal(vethEnd.status, 403);
    // With an empty interface list the kernel's choice of source address still gives the host away.
    const blind = await serveProxy(t, { hostAddresses: () => [] });
    const again = await connectThrough(blind.port, `${own}:${decoyPort}`);
    assert.equal(again.status, 403);
    assert.match(again.body, /address of the gnomon host/);
    again.socket.destroy();
  });

  it("refuses the operator's private networks without connecting, and lets the job's forge through", async (t) => {
    const denyInternet = egressPolicy({ denyNetworks: ["198.18.0.0/15"], allowNetworks: [] });
    const plain = await serveProxy(t, { policy: denyInternet });
    const r = await getVia(plain.port, `http://${internet.address}:${internet.port}/`);
    assert.equal(r.status, 403);
    assert.match(
      r.body,
      /is in 198\.18\.0\.0\/15, which this host keeps from jobs \(orchestrator\.egress\.denyNetworks\)/,
    );
    const forge = await serveProxy(t, {
      policy: denyInternet,
      forgeEndpoints: [`${internet.address}:${internet.port}`],
    });
    assert.equal((await getVia(forge.port, `http://${internet.address}:${internet.port}/`)).status, 200);
    const otherPort = await getVia(forge.port, `http://${internet.address}:${internet.port + 1}/`);
    assert.equal(otherPort.status, 403);
  });

  it("answers 502 for a name that does not resolve and 400 for a request that is not a proxy request", async (t) => {
    const { port } = await serveProxy(t, {
      resolve: async () => {
        throw new Error("ENOTFOUND");
      },
    });
    const r = await getVia(port, "http://no-such-host.invalid/");
    assert.equal(r.status, 502);
    assert.match(r.body, /no-such-host\.invalid could not be resolved/);
    const direct = await getVia(port, "/just-a-path");
    assert.equal(direct.status, 400);
    assert.match(direct.body, /gnomon's egress proxy: it takes proxy requests/);
  });

  it("ends the job's open tunnels when it is closed", async (t) => {
    const { port, proxy } = await serveProxy(t);
    const r = await connectThrough(port, `${internet.address}:${internet.port}`);
    assert.equal(r.status, 200);
    const closed = once(r.socket, "close");
    await proxy.close();
    await closed;
  });

  it("reads CONNECT authorities with names, IPv4 and bracketed IPv6", () => {
    assert.deepEqual(parseAuthority("example.com:443"), { host: "example.com", port: 443 });
    assert.deepEqual(parseAuthority("[::1]:22"), { host: "::1", port: 22 });
    assert.equal(parseAuthority("example.com"), undefined);
    assert.equal(parseAuthority("a b:1"), undefined);
  });
});
