// `images pull` against a real local HTTP server: verified downloads, resuming with Range after a
// dropped connection, checksum files, mismatches, and decompression.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { gzipSync } from "node:zlib";
import { ChecksumMismatchError } from "../../src/images/errors.js";
import { type PullProgress, parseChecksumFile, pullImage } from "../../src/images/pull.js";
import { parseCatalog, resolveImage } from "../../src/vm/catalog.js";

interface Served {
  readonly body: Buffer;
  /** Drop the connection after this many bytes of the first full response. */
  dropAfter?: number;
}

async function server(t: TestContext, files: Record<string, Served | string>) {
  const requests: { path: string; range?: string; ifRange?: string }[] = [];
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    requests.push({ path, range: req.headers.range, ifRange: req.headers["if-range"] as string | undefined });
    const f = files[path];
    if (f === undefined) {
      res.writeHead(404).end();
      return;
    }
    if (typeof f === "string") {
      res.writeHead(200, { "content-type": "text/plain" }).end(f);
      return;
    }
    const etag = `"${createHash("sha1").update(f.body).digest("hex")}"`;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (m && req.headers["if-range"] === etag) {
      const start = Number(m[1]);
      if (start >= f.body.length) {
        res.writeHead(416, { "content-range": `bytes */${f.body.length}` }).end();
        return;
      }
      res.writeHead(206, {
        etag,
        "content-length": f.body.length - start,
        "content-range": `bytes ${start}-${f.body.length - 1}/${f.body.length}`,
      });
      res.end(f.body.subarray(start));
      return;
    }
    res.writeHead(200, { etag, "content-length": f.body.length, "accept-ranges": "bytes" });
    if (f.dropAfter !== undefined) {
      const cut = f.dropAfter;
      f.dropAfter = undefined;
      res.write(f.body.subarray(0, cut), () => res.socket?.destroy());
      return;
    }
    res.end(f.body);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  return { base: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, requests };
}

function catalogFor(url: string, checksum: string, extra = "") {
  return parseCatalog(
    `images:
  cloud:
    labels: [cloud-latest]
    os: linux
    arch: x86_64
    source: { url: "${url}", ${checksum} }
    format: qcow2
    boot: bios
    login: { user: runner, shell: /bin/bash }
    cpus: 1
    memoryMiB: 512
    diskGiB: 4
    bootTimeout: 1m
${extra}`,
    "test-catalog.yaml",
  );
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function imagesDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-pull-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("images pull", () => {
  it("downloads, verifies the pinned checksum and makes the image resolvable", async (t) => {
    const body = randomBytes(300_000);
    const { base } = await server(t, { "/img/cloud.qcow2": { body } });
    const catalog = catalogFor(`${base}/img/cloud.qcow2`, `checksum: "sha256:${sha256(body)}"`);
    const dir = await imagesDir(t);
    const progress: PullProgress[] = [];
    const r = await pullImage(catalog, "cloud-latest", { imagesDir: dir, onProgress: (p) => progress.push(p) });
    assert.equal(r.name, "cloud");
    assert.equal(r.bytes, body.length);
    assert.equal(r.pinned, true);
    assert.deepEqual(await readFile(r.path), body);
    const downloads = progress.filter((p) => p.stage === "download");
    assert.ok(downloads.length > 1, "progress is reported while downloading");
    assert.equal(downloads.at(-1)?.receivedBytes, body.length);
    assert.equal(downloads.at(-1)?.totalBytes, body.length);
    for (let i = 1; i < downloads.length; i++)
      assert.ok(downloads[i]!.receivedBytes >= downloads[i - 1]!.receivedBytes);
    const spec = await resolveImage(catalog, "cloud-latest", dir);
    assert.equal(spec.disk.path, r.path);
    const again = await pullImage(catalog, "cloud", { imagesDir: dir });
    assert.equal(again.alreadyPresent, true, "a second pull finds the verified image");
  });

  it("resumes an interrupted download with a Range request instead of starting over", async (t) => {
    const body = randomBytes(2_000_000);
    const file: Served = { body, dropAfter: 700_000 };
    const { base, requests } = await server(t, { "/cloud.qcow2": file });
    const catalog = catalogFor(`${base}/cloud.qcow2`, `checksum: "sha256:${sha256(body)}"`);
    const dir = await imagesDir(t);
    const r = await pullImage(catalog, "cloud", { imagesDir: dir });
    assert.deepEqual(await readFile(r.path), body);
    assert.equal(requests.length, 2, "one dropped request and one resumed request");
    assert.equal(requests[0]?.range, undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(requests[1]?.range ?? "")?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 700_000, `resumed at byte ${resumedAt}`);
    assert.ok(requests[1]?.ifRange, "the resume is guarded by If-Range");
  });

  it("continues a partial file left by an earlier pull that was stopped", async (t) => {
    const body = randomBytes(500_000);
    const file: Served = { body, dropAfter: 200_000 };
    const { base, requests } = await server(t, { "/cloud.qcow2": file });
    const catalog = catalogFor(`${base}/cloud.qcow2`, `checksum: "sha256:${sha256(body)}"`);
    const dir = await imagesDir(t);
    await assert.rejects(pullImage(catalog, "cloud", { imagesDir: dir, attempts: 1 }), /Downloading .* failed/);
    assert.ok(existsSync(join(dir, "cloud", "cloud.qcow2.part")), "the partial download stays");
    const r = await pullImage(catalog, "cloud", { imagesDir: dir });
    assert.ok(r.resumedFrom > 0, "the second pull reports what it resumed from");
    assert.deepEqual(await readFile(r.path), body);
    assert.match(requests.at(-1)?.range ?? "", /^bytes=\d+-$/);
  });

  it("rejects a download whose checksum differs and deletes it", async (t) => {
    const body = randomBytes(10_000);
    const { base } = await server(t, { "/cloud.qcow2": { body } });
    const catalog = catalogFor(`${base}/cloud.qcow2`, `checksum: "sha256:${"0".repeat(64)}"`);
    const dir = await imagesDir(t);
    await assert.rejects(pullImage(catalog, "cloud", { imagesDir: dir }), (err: unknown) => {
      assert.ok(err instanceof ChecksumMismatchError);
      assert.match(err.message, new RegExp(`checksum sha256:${sha256(body)}`));
      assert.match(err.message, /update its checksum in the catalog/);
      return true;
    });
    assert.deepEqual(await readdir(join(dir, "cloud")), [], "nothing unverified is left");
  });

  it("verifies against the vendor's checksum file and decompresses a .gz download", async (t) => {
    const raw = randomBytes(100_000);
    const gz = gzipSync(raw);
    const { base } = await server(t, {
      "/r1/cloud.raw.gz": { body: gz },
      "/r1/SHA256SUMS": `${sha256(randomBytes(8))}  other.img\n${sha256(gz)} *cloud.raw.gz\n`,
    });
    const catalog = catalogFor(`${base}/r1/cloud.raw.gz`, `checksumUrl: "${base}/r1/SHA256SUMS"`);
    const dir = await imagesDir(t);
    const r = await pullImage(catalog, "cloud", { imagesDir: dir });
    assert.equal(r.pinned, false);
    assert.equal(r.checksum, `sha256:${sha256(gz)}`);
    assert.equal(r.path, join(dir, "cloud", "cloud.raw"));
    assert.deepEqual(await readFile(r.path), raw);
    assert.deepEqual((await readdir(join(dir, "cloud"))).sort(), ["cloud.raw", "cloud.raw.verified"]);
  });
});

describe("checksum files", () => {
  it("reads sha256sum, BSD and bare-hash formats", () => {
    const h = "ab".repeat(32);
    assert.equal(parseChecksumFile(`${h}  img.qcow2\n`, "img.qcow2"), `sha256:${h}`);
    assert.equal(
      parseChecksumFile(`SHA512 (img.qcow2) = ${"cd".repeat(64)}\n`, "img.qcow2"),
      `sha512:${"cd".repeat(64)}`,
    );
    assert.equal(parseChecksumFile(`${h}\n`, "anything"), `sha256:${h}`);
    assert.equal(parseChecksumFile(`${h}  other\n${h}  more\n`, "img.qcow2"), undefined);
  });
});
