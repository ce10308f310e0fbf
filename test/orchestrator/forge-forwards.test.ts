// Which forge endpoints are forwarded into a job's machine and how its URLs read there (pure), and
// the forwards themselves over the host executor's serve(): there the forge's own port is taken (the
// forge listens on it in the same network), so the fallback port and rewritten URLs are what a VM
// gets when its guest cannot listen on the forge's port. The same-port case runs in a real VM in
// test/e2e/forge-on-host.test.ts.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createHostExecutor } from "../../src/executor/host.js";
import { forgeEndpointsOf } from "../../src/orchestrator/forge-endpoints.js";
import {
  type Forward,
  isLoopbackHost,
  loopbackEndpoints,
  machineUrlOf,
  serveForgeForwards,
} from "../../src/orchestrator/forge-forwards.js";
import { rootLogger } from "../../src/telemetry/log.js";
import { jobRequestFromYaml } from "../support/job-requests.js";

describe("forge forwards: which endpoints, and the URLs a job is given", () => {
  it("takes the loopback endpoints of the job's forge, each once, and leaves forges elsewhere alone", () => {
    assert.deepEqual(
      loopbackEndpoints([
        "127.0.0.1:3000",
        "localhost:3000",
        "127.0.0.1:3000",
        "::1:8080",
        "127.1.2.3:80",
        "forgejo.example.org:443",
        "10.0.2.2:3000",
        "192.168.1.10:3000",
      ]),
      [
        { host: "127.0.0.1", port: 3000 },
        { host: "::1", port: 8080 },
        { host: "127.1.2.3", port: 80 },
      ],
    );
    for (const h of ["127.0.0.1", "LOCALHOST", "forge.localhost", "[::1]", "::ffff:127.0.0.1", "127.255.0.9"])
      assert.ok(isLoopbackHost(h), h);
    for (const h of ["128.0.0.1", "localhost.example.org", "::2", "10.0.2.2", "1270.0.0.1"])
      assert.ok(!isLoopbackHost(h), h);
  });

  it("forwards the server, API, actions and Actions service endpoints of a job whose forge is on loopback", async () => {
    const req = await jobRequestFromYaml("on: push\njobs:\n  j:\n    runs-on: x\n    steps: [{ run: 'true' }]\n", {
      runsOn: "x",
      replyTo: "r",
    });
    const local = {
      ...req,
      actionsUrl: "http://localhost:3000/",
      contexts: {
        ...req.contexts,
        github: {
          ...req.contexts.github,
          server_url: "http://127.0.0.1:3000/",
          api_url: "http://127.0.0.1:3000/api/v1",
        },
      },
      runtime: { url: "http://127.0.0.1:3000/api/actions_pipeline/", cacheUrl: "http://127.0.0.1:9999/cache/" },
    };
    assert.deepEqual(loopbackEndpoints(forgeEndpointsOf(local)), [
      { host: "127.0.0.1", port: 3000 },
      { host: "127.0.0.1", port: 9999 },
    ]);
    // localhost:3000 (the actions URL) goes with 127.0.0.1:3000: the guest's localhost is its 127.0.0.1.
    assert.deepEqual(loopbackEndpoints(["localhost:3000", "localhost:4000", "127.0.0.1:3000"]), [
      { host: "localhost", port: 4000 },
      { host: "127.0.0.1", port: 3000 },
    ]);
  });

  it("keeps a URL as it is when the guest reaches it under the same name and port, and rewrites only host and port otherwise", () => {
    const forwards: Forward[] = [
      { endpoint: { host: "127.0.0.1", port: 3000 }, guestPort: 3000 },
      { endpoint: { host: "localhost", port: 80 }, guestPort: 41_234 },
      { endpoint: { host: "::1", port: 8443 }, guestPort: 8443 },
      { endpoint: { host: "127.0.0.2", port: 3000 }, guestPort: 40_000 },
    ];
    const cases: [string, string][] = [
      ["http://127.0.0.1:3000/", "http://127.0.0.1:3000/"],
      ["http://127.0.0.1:3000/api/v1?x=1#y", "http://127.0.0.1:3000/api/v1?x=1#y"],
      ["http://localhost/owner/repo.git", "http://127.0.0.1:41234/owner/repo.git"],
      ["http://localhost:80", "http://127.0.0.1:41234"],
      ["http://user:pw@localhost/api", "http://user:pw@127.0.0.1:41234/api"],
      ["https://[::1]:8443/x", "https://127.0.0.1:8443/x"],
      ["http://127.0.0.2:3000/", "http://127.0.0.1:40000/"],
      ["http://127.0.0.1:3001/", "http://127.0.0.1:3001/"],
      ["http://localhost:3000/o/r", "http://localhost:3000/o/r"],
      ["https://localhost/", "https://localhost/"],
      ["https://forgejo.example.org/", "https://forgejo.example.org/"],
      ["not a url", "not a url"],
      ["refs/heads/main", "refs/heads/main"],
    ];
    for (const [given, expected] of cases) assert.equal(machineUrlOf(given, forwards), expected, given);
  });
});

describe("forge forwards over an executor's serve()", () => {
  let forge: Server;
  let port: number;
  let decoy: Server;
  before(async () => {
    forge = createServer((req, res) => res.end(`forge says ${req.method} ${req.url}`));
    forge.listen(0, "127.0.0.1");
    await once(forge, "listening");
    port = (forge.address() as AddressInfo).port;
    decoy = createServer((_req, res) => res.end("a host service that must stay out of reach"));
    decoy.listen(0, "127.0.0.1");
    await once(decoy, "listening");
  });
  after(() => {
    forge?.close();
    decoy?.close();
  });

  it("serves the forge on another port when its own is taken, rewrites its URLs to it, and reaches nothing else", async (t) => {
    const ex = await createHostExecutor();
    t.after(() => ex.close());
    const decoyPort = (decoy.address() as AddressInfo).port;
    const forwards = await serveForgeForwards(
      ex,
      [`127.0.0.1:${port}`, `forgejo.example.org:443`, `10.1.2.3:${decoyPort}`],
      { log: rootLogger() },
    );
    t.after(() => forwards.close());
    assert.equal(forwards.forwards.length, 1, "only the loopback endpoint");
    const guestPort = forwards.forwards[0]!.guestPort;
    assert.notEqual(guestPort, port, "the forge's own port is taken here");
    const url = forwards.machineUrl(`http://127.0.0.1:${port}/api/v1/repos/o/r?x=1`);
    assert.equal(url, `http://127.0.0.1:${guestPort}/api/v1/repos/o/r?x=1`);
    assert.equal(forwards.machineUrl("https://forgejo.example.org/x"), "https://forgejo.example.org/x");
    assert.equal(await get(url), "forge says GET /api/v1/repos/o/r?x=1");
    assert.equal(forwards.describe(), `127.0.0.1:${port} at 127.0.0.1:${guestPort}`);
    await forwards.close();
    await assert.rejects(get(url), /ECONNREFUSED|socket hang up/, "closed: nothing listens any more");
  });
});

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve(body));
    })
      .on("error", reject)
      .end();
  });
}
