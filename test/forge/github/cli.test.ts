// `gnomon github register | run | remove` through the shipped bundle (`npm run build` first), as a
// user runs them, against the fake GitHub; `run` uses the real RabbitMQ.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, statSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { startFakeGitHub } from "../../fakes/github-server.js";
import { githubRegisterArgs, registerGitHubWithCli, runGnomon } from "../../support/cli.js";
import { deleteTopology, leftovers, RABBIT_URL, testPrefix } from "../../support/rabbit.js";

// Never the production prefix ("gnomon"): the broker is shared with other tests and installations.
const RUN = `gt-github-cli-${process.pid}`;

/** The environment of a `github run` on the test broker, under a prefix deleted when `t` ends. */
function runEnv(t: { after(fn: () => Promise<void>): unknown }): NodeJS.ProcessEnv {
  const prefix = testPrefix(RUN);
  t.after(() => deleteTopology(prefix));
  return {
    AMQP_URL: RABBIT_URL,
    GNOMON_AMQP_PREFIX: prefix,
    GNOMON_CLUSTER_KEY: randomBytes(32).toString("hex"),
    GNOMON_LOG_LEVEL: "silent",
  };
}
const dirFor = () => join(mkdtempSync(join(tmpdir(), "gnomon-gh-cli-")), "github");

/** A local port nothing listens on (taken, then closed). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe("gnomon github (bundled CLI)", () => {
  after(async () => {
    assert.deepEqual(await leftovers(RUN), [], "every test deleted its queues and exchanges");
  });

  it("registers with the v2 flow, refuses a second registration into the same directory, and removes it", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    const dir = dirFor();
    const reg = await registerGitHubWithCli(fake, { name: "gnomon-cli", labels: "debian-12,fast", dir });
    const [runner] = fake.runners();
    assert.ok(runner);
    assert.equal(
      reg.stdout,
      `registered runner gnomon-cli (id ${runner.id}) with ${fake.repoUrl} (runner-admin flow, group Default, labels self-hosted,debian-12,fast); credentials in ${dir}\n`,
    );
    assert.deepEqual(runner.labels, ["self-hosted", "debian-12", "fast"]);
    for (const f of [".runner", ".credentials", ".credentials_rsaparams"])
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`);

    const again = await runGnomon(
      githubRegisterArgs({ url: fake.repoUrl, token: fake.registrationToken(), labels: "debian-12", dir }),
    );
    assert.equal(again.code, 2);
    assert.match(
      again.stderr,
      /already holds the registration of runner gnomon-cli .*run `gnomon github remove` first/,
    );

    const rm = await runGnomon(["github", "remove", "--token", fake.removalToken(), "--credentials-dir", dir]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /^removed runner gnomon-cli \(id \d+\) from .* and deleted its files/);
    assert.equal(fake.runners().length, 0);
    assert.ok(!existsSync(join(dir, ".runner")));
  });

  it("registers with the classic flow and advertises the configured runner version", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "classic" });
    const reg = await registerGitHubWithCli(fake, {
      labels: "omnios",
      env: { GNOMON_GITHUB_RUNNER_VERSION: "2.331.5" },
    });
    assert.match(reg.stdout, /\(classic flow, group Default, labels self-hosted,omnios\)/);
    assert.equal(fake.runners()[0]?.version, "2.331.5");
  });

  it("explains a rejected token and exits 2, like forgejo register", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    const r = await runGnomon(
      githubRegisterArgs({ url: fake.repoUrl, token: "AEXPIRED", labels: "debian-12", dir: dirFor() }),
    );
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^gnomon github register: GitHub did not accept the registration token .*create a new one at/,
    );
  });

  it("exits 2 for a missing --labels and for an endpoint that does not answer, naming what to fix", async () => {
    const noLabels = await runGnomon(githubRegisterArgs({ url: "https://github.com/o/r", token: "T", dir: dirFor() }));
    assert.equal(noLabels.code, 2, noLabels.stderr);
    assert.match(noLabels.stderr, /^gnomon github register: pass --labels with the runs-on label/);
    const port = await closedPort();
    const dead = await runGnomon(
      githubRegisterArgs({ url: `http://127.0.0.1:${port}/o/r`, token: "T", labels: "debian-12", dir: dirFor() }),
    );
    assert.equal(dead.code, 2, dead.stderr);
    assert.match(
      dead.stderr,
      new RegExp(
        `^gnomon github register: could not exchange the registration token: .*127\\.0\\.0\\.1:${port}.* did not answer`,
      ),
    );
  });

  it("run stops at once with 'run gnomon github register again' when GitHub deleted the runner", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    const { dir } = await registerGitHubWithCli(fake);
    fake.deleteRunner(fake.runners()[0]!.id);
    const run = await runGnomon(["github", "run", "--credentials-dir", dir], {
      env: runEnv(t),
    });
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /no longer exists .*run `gnomon github register` again/);
  });

  it("run of an ephemeral runner whose one job went to another runner exits 0, says so and deletes the used-up registration", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 500 });
    const { dir } = await registerGitHubWithCli(fake, { ephemeral: true });
    fake.faults.acquireConflicts = 1; // another runner acquires the job GitHub assigned to this one
    fake.queueJob({ labels: ["debian-12"] });
    fake.queueJob({ labels: ["debian-12"] });
    const run = await runGnomon(["github", "run", "--credentials-dir", dir], {
      env: runEnv(t),
      timeoutMs: 30_000,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      /GitHub gave the one job of the ephemeral runner .* to another runner.*register a new one/,
    );
    assert.equal(existsSync(join(dir, ".runner")), false, "the used-up registration's files are gone");
  });

  it("run says what to set when GitHub refuses the advertised version, and exits 2", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", minRunnerVersion: "2.331.0" });
    const { dir } = await registerGitHubWithCli(fake);
    const run = await runGnomon(["github", "run", "--credentials-dir", dir, "--runner-version", "2.330.0"], {
      env: runEnv(t),
    });
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      /refuses runner version 2\.330\.0 .*set github\.runnerVersion \(or GNOMON_GITHUB_RUNNER_VERSION\)/,
    );
  });

  it("run without RabbitMQ points at amqpUrl and gnomon up", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2" });
    const { dir } = await registerGitHubWithCli(fake);
    const run = await runGnomon(["github", "run", "--credentials-dir", dir]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /set amqpUrl \(AMQP_URL\), or run `gnomon up`/);
  });
});
