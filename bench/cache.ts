// Cache save and restore throughput for one archive (100 MiB by default), as actions/cache moves it:
// reserve, 32 MiB chunks four at a time, commit; lookup, download. Two paths: a client on this host
// over loopback (the service and the disk alone), and python3 in a VM of the offline test image
// through the SSH forward every VM job uses (what a job sees under TCG). Prints medians.
// Usage: node --import tsx bench/cache.ts [--runs 3] [--size-mib 100] [--path host|vm|both]
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CacheService } from "../src/cache/service.js";
import { createSshExecutor } from "../src/executor/ssh.js";
import { rootLogger } from "../src/telemetry/log.js";
import { bootMachine } from "../src/vm/machine.js";
import { CacheClient, serveCache } from "../test/support/cache-client.js";
import { TEST_RUN_DIR, testImage } from "../test/support/test-image.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    "size-mib": { type: "string", default: "100" },
    path: { type: "string", default: "both" },
  },
});
const RUNS = Number(values.runs);
const SIZE = Number(values["size-mib"]) * 2 ** 20;
const V = "b".repeat(64);
const SCOPE = { repository: "bench/repo", write: "refs/heads/main", read: ["refs/heads/main"] };

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mibs = (ms: number) => (SIZE / 2 ** 20 / (ms / 1000)).toFixed(1);

async function withService<T>(fn: (service: CacheService, port: number) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-bench-cache-"));
  const afters: (() => unknown)[] = [];
  const service = new CacheService({
    dir,
    limits: { maxBytes: 8 * SIZE, repositoryMaxBytes: 8 * SIZE, unusedExpiryMs: 3_600_000 },
    log: rootLogger(),
  });
  try {
    const port = await serveCache({ after: (f) => afters.push(f) }, service);
    return await fn(service, port);
  } finally {
    for (const f of afters) await f();
    await service.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function report(where: string, save: number[], restore: number[]): void {
  console.log(
    `${where}: save ${SIZE / 2 ** 20} MiB median ${Math.round(median(save))} ms (${mibs(median(save))} MiB/s), ` +
      `restore median ${Math.round(median(restore))} ms (${mibs(median(restore))} MiB/s); ${RUNS} runs, ` +
      `save ${save.map(Math.round).join("/")} ms, restore ${restore.map(Math.round).join("/")} ms`,
  );
}

async function hostPath(): Promise<void> {
  const data = randomBytes(SIZE);
  const save: number[] = [];
  const restore: number[] = [];
  await withService(async (service, port) => {
    for (let i = 0; i < RUNS; i++) {
      const client = new CacheClient(service.grant(`bench-${i}`, SCOPE, 600_000).urlFor(port));
      let t0 = performance.now();
      await client.save(`k-${i}`, V, data);
      save.push(performance.now() - t0);
      t0 = performance.now();
      const got = await client.restore([`k-${i}`], V);
      restore.push(performance.now() - t0);
      if (!got?.data.equals(data)) throw new Error("the restored archive differs");
    }
  });
  report("host loopback", save, restore);
}

/**
 * The baseline of the VM path: the same bytes through a port served into the guest with nothing
 * behind it (a sink for "put", zeros for "get"), to tell the forward's cost from the cache's.
 */
const RAW = String.raw`
import socket, sys, time
port, size = int(sys.argv[1]), int(sys.argv[2])
block = b"\0" * (1 << 20)
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"put\n")
left = size
while left > 0:
    n = min(left, len(block))
    s.sendall(block[:n])
    left -= n
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("put %d" % ((time.monotonic() - t0) * 1000))
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"get\n")
got = 0
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += len(b)
assert got == size
print("get %d" % ((time.monotonic() - t0) * 1000))
`;

/** python3 in the guest: the same calls, timed there; prints "save <ms>" and "restore <ms>". */
const GUEST = String.raw`
import json, os, sys, time, urllib.request, urllib.parse, concurrent.futures
base, key, path = os.environ["ACTIONS_CACHE_URL"], sys.argv[1], sys.argv[2]
version = "b" * 64
size = os.path.getsize(path)
def call(method, url, body=None, headers={}):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.read()
api = lambda r: base + "_apis/artifactcache/" + r
t0 = time.monotonic()
_, b = call("POST", api("caches"), json.dumps({"key": key, "version": version, "cacheSize": size}).encode(), {"Content-Type": "application/json"})
cid = json.loads(b)["cacheId"]
chunk = 32 * 1024 * 1024
def put(start):
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(min(chunk, size - start))
    call("PATCH", api("caches/%d" % cid), data, {"Content-Type": "application/octet-stream", "Content-Range": "bytes %d-%d/*" % (start, start + len(data) - 1)})
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    list(ex.map(put, range(0, size, chunk)))
call("POST", api("caches/%d" % cid), json.dumps({"size": size}).encode(), {"Content-Type": "application/json"})
print("save %d" % ((time.monotonic() - t0) * 1000))
t0 = time.monotonic()
_, b = call("GET", api("cache?keys=" + urllib.parse.quote(key) + "&version=" + version))
with urllib.request.urlopen(json.loads(b)["archiveLocation"], timeout=600) as r, open(path + ".back", "wb") as out:
    while True:
        block = r.read(1 << 20)
        if not block:
            break
        out.write(block)
print("restore %d" % ((time.monotonic() - t0) * 1000))
assert os.path.getsize(path + ".back") == size
os.remove(path + ".back")
`;

async function vmPath(): Promise<void> {
  const image = await testImage();
  const vm = await bootMachine(image, { runDir: TEST_RUN_DIR });
  const save: number[] = [];
  const restore: number[] = [];
  const rawPut: number[] = [];
  const rawGet: number[] = [];
  try {
    const ex = await createSshExecutor(vm.takeSshClient() ?? vm.ssh, { label: "bench" });
    await withService(async (service) => {
      const served = await ex.serve((s) => service.accept(s));
      const home = ex.platform.homeDir;
      const run = async (argv: string[], env: Record<string, string> = {}) => {
        const lines: string[] = [];
        const r = await ex.run({
          argv,
          env,
          cwd: home,
          signal: AbortSignal.timeout(1_800_000),
          onLine: (_s, l) => lines.push(l),
        });
        if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (${r.exitCode}): ${lines.join("\n")}`);
        return lines;
      };
      await ex.writeFile(`${home}/bench.py`, GUEST);
      await ex.writeFile(`${home}/raw.py`, RAW);
      const raw = await ex.serve((stream) => {
        let head = "";
        const onData = (b: Buffer) => {
          head += b.toString("latin1");
          if (!head.includes("\n")) return;
          stream.off("data", onData);
          if (head.startsWith("put")) {
            stream.on("data", () => undefined);
            stream.once("end", () => stream.end("k"));
          } else {
            const zeros = Buffer.alloc(1 << 20);
            let left = SIZE;
            const pump = () => {
              while (left > 0) {
                const n = Math.min(left, zeros.length);
                left -= n;
                if (!stream.write(zeros.subarray(0, n))) return void stream.once("drain", pump);
              }
              stream.end();
            };
            pump();
          }
        };
        stream.on("data", onData);
      });
      await run(["sh", "-c", `head -c ${SIZE} /dev/urandom > archive.bin`]); // outside the measurement
      for (let i = 0; i < RUNS; i++) {
        const out = await run(["python3", "raw.py", String(raw.port), String(SIZE)]);
        const ms = (what: string) => Number(out.find((l) => l.startsWith(`${what} `))?.split(" ")[1]);
        rawPut.push(ms("put"));
        rawGet.push(ms("get"));
      }
      for (let i = 0; i < RUNS; i++) {
        const url = service.grant(`bench-vm-${i}`, SCOPE, 1_800_000).urlFor(served.port);
        const out = await run(["python3", "bench.py", `k-${i}`, "archive.bin"], { ACTIONS_CACHE_URL: url });
        const ms = (what: string) => Number(out.find((l) => l.startsWith(`${what} `))?.split(" ")[1]);
        save.push(ms("save"));
        restore.push(ms("restore"));
      }
    });
    await ex.close();
  } finally {
    await vm.destroy();
  }
  report(`vm (${vm.accel.toUpperCase()}, python3 in the guest, SSH forward)`, save, restore);
  report(
    `  the same forward with nothing behind it (guest → host as "save", host → guest as "restore")`,
    rawPut,
    rawGet,
  );
}

if (values.path !== "vm") await hostPath();
if (values.path !== "host") await vmPath();
