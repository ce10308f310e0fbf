// `gnomon up` through the shipped program: what it refuses at start, saying what to do, with exit
// code 2 (a forge runner whose labels no image of this host serves, whose jobs would wait for ever;
// a runner deleted on Forgejo, with a register command that works), and its /healthz, built from
// every service of the process, the forge runners included.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startFakeForgejo } from "../fakes/forgejo-server.js";
import { registerForgejoWithCli, runGnomon, spawnGnomon } from "../support/cli.js";
import { until } from "../support/qemu-processes.js";

const uuidIn = (file: string): string => (JSON.parse(readFileSync(file, "utf8")) as { uuid: string }).uuid;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

interface Healthz {
  readonly status: number;
  readonly body: Record<string, unknown> & {
    services: { name: string; state: string }[];
    runners: { name: string; state: string; detail?: string }[];
  };
}

describe("gnomon up", () => {
  it("refuses a Forgejo registration whose label no image serves, and exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gnomon-up-"));
    writeFileSync(
      join(dir, ".runner"),
      JSON.stringify({
        id: 1,
        uuid: "u-1",
        name: "r",
        token: "t",
        address: "http://127.0.0.1:9/",
        labels: ["solaris-10"],
      }),
      { mode: 0o600 },
    );
    const r = await runGnomon(["up"], { cwd: dir, env: { GNOMON_DATA_DIR: join(dir, "data") }, timeoutMs: 120_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /declares "solaris-10", which no image of this host serves .*register it with labels of the image catalog/,
    );
  });

  it("exits 2 when Forgejo deletes the runner while it serves, and the register command it prints works as given", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-up-deleted-"));
    const file = await registerForgejoWithCli(forgejo, "debian-12", cwd);
    const old = uuidIn(file);
    const up = spawnGnomon(["up"], { cwd, env: { GNOMON_DATA_DIR: join(cwd, "data") } });
    t.after(() => up.child.kill("SIGKILL"));
    await up.waitForLog(/forgejo runner ready/, 120_000);
    forgejo.deleteRunner(old);
    assert.equal(await up.exited, 2, up.stderr().slice(-2_000));
    const said = up.stderr();
    assert.match(said, /^gnomon up: Forgejo at .* no longer accepts runner e2e \(/m);
    const command = /`(gnomon forgejo register [^`]+)`/.exec(said)?.[1];
    assert.ok(command, said);
    assert.match(command, /--replace/, "the credentials file is still there: register refuses without --replace");

    const [, ...args] = command.split(" ").map((w) => (w === "TOKEN" ? forgejo.registrationToken : w));
    const again = await runGnomon([...args, "--no-interactive"], { cwd });
    assert.equal(again.code, 0, again.stderr);
    assert.notEqual(uuidIn(file), old, "a new runner's credentials replace the deleted one's");
    assert.deepEqual(
      forgejo.runners().map((x) => [x.name, x.labels]),
      [["e2e", ["debian-12"]]],
    );
  });

  it("serves /healthz from every service, the Forgejo runner included: 503 while Forgejo does not answer, saying so", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-up-health-"));
    await registerForgejoWithCli(forgejo, "debian-12", cwd);
    const port = await freePort();
    const up = spawnGnomon(["up"], {
      cwd,
      env: { GNOMON_DATA_DIR: join(cwd, "data"), GNOMON_METRICS_LISTEN: `127.0.0.1:${port}` },
    });
    t.after(() => up.child.kill("SIGKILL"));
    await up.waitForLog(/forgejo runner ready/, 120_000);
    const health = async (): Promise<Healthz> => {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      return { status: r.status, body: (await r.json()) as Healthz["body"] };
    };
    const ok = await until(
      async () => {
        const h = await health();
        return h.status === 200 ? h : undefined;
      },
      "a healthy gnomon up",
      30_000,
    );
    assert.equal(ok.body["queue"], "connected");
    assert.equal(ok.body["database"], "ok");
    assert.deepEqual(
      ok.body.services.map((s) => `${s.name}: ${s.state}`),
      ["store: ready", "queue (in-process): ready", "orchestrator: ready"],
    );
    assert.equal(ok.body.runners.length, 1);
    assert.match(ok.body.runners[0]?.name ?? "", /^forgejo-runner e2e \(http:\/\/127\.0\.0\.1:\d+/);
    assert.equal(ok.body.runners[0]?.state, "ready");

    forgejo.failNext("FetchTask", 1_000_000, "before");
    const down = await until(
      async () => {
        const h = await health();
        return h.status === 503 ? h : undefined;
      },
      "unhealthy while Forgejo does not answer",
      30_000,
    );
    assert.equal(down.body.runners[0]?.state, "degraded");
    assert.match(down.body.runners[0]?.detail ?? "", /^cannot fetch tasks from forgejo at /);
    assert.equal(down.body["queue"], "connected", "the rest of the process is fine");

    forgejo.failNext("FetchTask", 0, "before");
    await until(async () => (await health()).status === 200, "healthy again", 30_000);
  });

  it("exits 2 at start, with the same sentence, when the runner was deleted before gnomon started", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-up-deleted-"));
    const file = await registerForgejoWithCli(forgejo, "debian-12", cwd);
    forgejo.deleteRunner(uuidIn(file));
    const r = await runGnomon(["up"], {
      cwd,
      env: { GNOMON_DATA_DIR: join(cwd, "data"), GNOMON_LOG_LEVEL: "silent" },
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no longer accepts runner e2e .*`gnomon forgejo register --replace --instance /);
  });
});
