// `gnomon forgejo register` through the shipped program (dist/gnomon.mjs) against
// the fake Forgejo: the credentials file, and the exit code and message for every user mistake.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startFakeForgejo } from "../../fakes/forgejo-server.js";
import { runGnomon } from "../../support/cli.js";

const register = (cwd: string, ...args: string[]) =>
  runGnomon(["forgejo", "register", "--no-interactive", ...args], { cwd });

describe("gnomon forgejo register", () => {
  it("registers, and writes the credentials in forgejo-runner's .runner format with mode 0600", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const r = await register(
      cwd,
      "--instance",
      forgejo.url,
      "--token",
      forgejo.registrationToken,
      "--labels",
      "linux:vm:debian-12, omnios",
      "--name",
      "ci-1",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /registered runner ci-1 \(.+\) with Forgejo at/);
    const file = join(cwd, ".runner");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const saved = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    assert.deepEqual(Object.keys(saved), ["WARNING", "id", "uuid", "name", "token", "address", "labels"]);
    const [runner] = forgejo.runners();
    assert.equal(saved["uuid"], runner?.uuid);
    assert.equal(saved["name"], "ci-1");
    assert.equal(saved["address"], forgejo.url);
    assert.deepEqual(
      saved["labels"],
      ["linux:vm:debian-12", "omnios"],
      "full label texts, as forgejo-runner keeps them",
    );
    assert.deepEqual(runner?.labels, ["linux", "omnios"], "only the names go to Forgejo");
    assert.match(String(saved["token"]), /^[0-9a-f]{40}$/);
  });

  it("exits 2 naming the instance and the problem when the registration token is wrong", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const r = await register(cwd, "--instance", forgejo.url, "--token", "0".repeat(40), "--labels", "linux");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^gnomon forgejo register: Forgejo at http:\/\/127\.0\.0\.1:\d+\/ refused the registration/);
    assert.match(r.stderr, /runner registration token not found/);
    assert.match(r.stderr, /Settings → Actions → Runners/);
    assert.equal(existsSync(join(cwd, ".runner")), false);
    assert.equal(forgejo.runners().length, 0);
  });

  it("exits 2 saying the token was invalidated when it was regenerated in Forgejo", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const old = forgejo.registrationToken;
    forgejo.regenerateRegistrationToken();
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const r = await register(cwd, "--instance", forgejo.url, "--token", old, "--labels", "linux");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /invalidated, please use the latest one/);
  });

  it("exits 2 when nothing answers at the instance URL, naming it", async () => {
    const port = await freePort();
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const url = `http://127.0.0.1:${port}/`;
    const r = await register(cwd, "--instance", url, "--token", "t".repeat(40), "--labels", "linux");
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`Forgejo at ${url.replace(/[./]/g, "\\$&")} cannot be reached`));
    assert.match(r.stderr, /Check the URL/);
  });

  it("exits 2 for a label gnomon cannot serve, before calling Forgejo", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const r = await register(
      cwd,
      "--instance",
      forgejo.url,
      "--token",
      forgejo.registrationToken,
      "--labels",
      "ubuntu-latest:docker://node:20",
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, /gnomon runs every job in a VM/);
    assert.equal(forgejo.calls("Register"), 0);
  });

  it("exits 2 naming the missing flag without a terminal to ask on", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const r = await register(cwd, "--instance", "https://forgejo.example/", "--labels", "linux");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--token is needed/);
  });

  it("refuses to overwrite an existing registration unless --replace is given", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-reg-"));
    const args = ["--instance", forgejo.url, "--token", forgejo.registrationToken, "--labels", "linux"];
    assert.equal((await register(cwd, ...args)).code, 0);
    const again = await register(cwd, ...args);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already holds a runner registration; pass --replace/);
    assert.equal((await register(cwd, ...args, "--replace")).code, 0);
    assert.equal(forgejo.runners().length, 2);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
