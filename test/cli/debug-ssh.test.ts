// Debug SSH as `gnomon up` wires it, through the shipped program and no VM: with
// orchestrator.debugSsh allowed the endpoint listens where GNOMON_DEBUG_SSH_LISTEN says, with a
// host key created under the data directory (0600) and kept across restarts, /healthz lists it,
// and `gnomon debug-sessions` lists the logins the store recorded.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Store } from "../../src/store/store.js";
import { runGnomon, spawnGnomon } from "../support/cli.js";
import { keyPair, login } from "../support/debug-ssh-client.js";
import { until } from "../support/qemu-processes.js";

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

describe("gnomon up with debug SSH", () => {
  it("listens with a host key kept under the data directory, lists the endpoint in /healthz, and shows the same key after a restart", async (t) => {
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-up-debug-ssh-"));
    const dataDir = join(cwd, "data");
    const [sshPort, metricsPort] = [await freePort(), await freePort()];
    const env = {
      GNOMON_DATA_DIR: dataDir,
      GNOMON_DEBUG_SSH_ENABLED: "true",
      GNOMON_DEBUG_SSH_LISTEN: `127.0.0.1:${sshPort}`,
      GNOMON_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
    };
    const start = async () => {
      const up = spawnGnomon(["up"], { cwd, env });
      t.after(() => up.child.kill("SIGKILL"));
      const listening = await up.waitForLog(/debug SSH endpoint listening/, 120_000);
      return { up, fingerprint: String(listening["fingerprint"]) };
    };

    const first = await start();
    assert.match(first.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    const keyFile = join(dataDir, "debug-ssh", "host_ed25519_key");
    assert.equal(statSync(keyFile).mode & 0o777, 0o600, "the host key is private");
    const attempt = await login(sshPort, "000000000000", keyPair());
    assert.equal(attempt.outcome, "refused", "no held job has that name");
    assert.equal(attempt.hostFingerprint, first.fingerprint, "the endpoint shows the key it logged");
    const health = await until(
      async () => {
        const r = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
        const body = (await r.json()) as { services: { name: string; state: string }[] };
        return r.status === 200 && body;
      },
      "a healthy gnomon up",
      30_000,
    );
    assert.deepEqual(
      health.services.map((s) => `${s.name}: ${s.state}`),
      ["store: ready", "queue (in-process): ready", "debug SSH endpoint: ready", "orchestrator: ready"],
    );
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^gnomon_debug_ssh_sessions_total\{outcome="refused"\} 1$/m);
    first.up.child.kill("SIGTERM");
    assert.equal(await first.up.exited, 0, first.up.stderr());

    const second = await start();
    assert.equal(second.fingerprint, first.fingerprint, "users who trusted the key are not warned again");
    second.up.child.kill("SIGTERM");
    assert.equal(await second.up.exited, 0, second.up.stderr());
  });

  it("`gnomon debug-sessions` lists the recorded logins, newest first, and says when there are none", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "gnomon-debug-sessions-"));
    const none = await runGnomon(["debug-sessions", "--data-dir", dataDir]);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, "no debug SSH sessions recorded\n");

    const job = randomUUID();
    const store = new Store({ dataDir });
    await store.start();
    await store.debugSessions.start({
      id: randomUUID(),
      jobId: job,
      orchestrator: "orch-a",
      actor: "alice",
      keyFingerprint: "SHA256:abc",
      source: "198.51.100.7:50412",
    });
    const [open] = await store.debugSessions.list({ jobId: job });
    await store.debugSessions.end(open!.id, { bytesIn: 2150, bytesOut: 49_152, reason: "logged out" });
    await store.stop(AbortSignal.timeout(10_000));

    const listed = await runGnomon(["debug-sessions", "--data-dir", dataDir, "--job", job]);
    assert.equal(listed.code, 0, listed.stderr);
    const [head, row, ...rest] = listed.stdout.trimEnd().split("\n");
    assert.match(head ?? "", /^STARTED\s+ENDED\s+JOB\s+ACTOR\s+SOURCE\s+IN\s+OUT\s+KEY\s+END$/);
    assert.match(
      row ?? "",
      new RegExp(
        `^\\S+Z\\s+\\S+Z\\s+${job}\\s+alice\\s+198\\.51\\.100\\.7:50412\\s+2150\\s+49152\\s+SHA256:abc\\s+logged out$`,
      ),
    );
    assert.deepEqual(rest, []);
    const json = await runGnomon(["debug-sessions", "--data-dir", dataDir, "--json"]);
    assert.equal(JSON.parse(json.stdout.trim()).actor, "alice");
    const bad = await runGnomon(["debug-sessions", "--data-dir", dataDir, "--job", "42"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--job "42" is not a job id/);
  });
});
