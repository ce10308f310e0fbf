// A host "on the internet" for egress tests: a network namespace of its own, joined to this host by
// a veth pair on a random /30 of 198.18.0.0/15 (the benchmarking range: no operator lists it as
// private), with an HTTP server inside. Everything else on this machine is a host address, so only
// such a namespace can show that a job reaches the internet but not the host. Needs root (ip netns);
// the namespace, its veth pair and its server go when the test ends.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface FakeInternet {
  /** The server's address, outside every network gnomon denies by default. */
  readonly address: string;
  /** Its HTTP port: GET answers `hello from <address>` and the request's path and Host header. */
  readonly port: number;
  /** The host's own end of the veth pair (a host address, which jobs must not reach). */
  readonly hostSide: string;
}

/**
 * The server run inside the namespace (plain Node, no gnomon code). With a folder to serve, a GET
 * for a file under it (query ignored) answers the file: enough for git's dumb HTTP protocol.
 */
const SERVER = `
const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const [address, port, root] = process.argv.slice(1);
http.createServer((req, res) => {
  if (root) {
    const file = path.join(root, decodeURIComponent(req.url.split("?")[0]));
    if (file.startsWith(root + "/") && fs.existsSync(file) && fs.statSync(file).isFile()) {
      res.setHeader("content-type", "application/octet-stream");
      fs.createReadStream(file).pipe(res);
      return;
    }
  }
  res.setHeader("content-type", "text/plain");
  res.end("hello from " + address + " path=" + req.url + " host=" + req.headers.host + "\\n");
}).listen(Number(port), address, () => process.stdout.write("listening\\n"));
`;

/**
 * `serveFiles`: the hello server also answers GETs for that folder's files (see SERVER). `script`
 * replaces the hello server: a Node script run inside the namespace with the address, the port and
 * then `args` as its arguments, which prints "listening" once it listens there.
 */
export async function startFakeInternet(
  t: { after(fn: () => Promise<void>): unknown },
  opts: { readonly serveFiles?: string; readonly script?: string; readonly args?: readonly string[] } = {},
): Promise<FakeInternet> {
  const id = randomBytes(3).toString("hex");
  const ns = `gnomon-t-${id}`;
  const hostIf = `gn${id}h`;
  const nsIf = `gn${id}n`;
  const base = `198.${18 + randomInt(2)}.${randomInt(256)}.${randomInt(64) * 4}`;
  const [a, b, c, d] = base.split(".").map(Number) as [number, number, number, number];
  const hostSide = `${a}.${b}.${c}.${d + 1}`;
  const address = `${a}.${b}.${c}.${d + 2}`;
  const port = 8080;
  let child: ChildProcess | undefined;
  t.after(async () => {
    child?.kill("SIGKILL");
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    await run("ip", ["link", "del", hostIf]).catch(() => undefined);
  });
  try {
    await run("ip", ["netns", "add", ns]);
  } catch (err) {
    throw new Error(
      `the egress tests need a network namespace as a host on the internet, and \`ip netns add\` failed (${(err as Error).message.trim()}); run the tests as root (README)`,
    );
  }
  const steps: string[][] = [
    ["link", "add", hostIf, "type", "veth", "peer", "name", nsIf],
    ["link", "set", nsIf, "netns", ns],
    ["addr", "add", `${hostSide}/30`, "dev", hostIf],
    ["link", "set", hostIf, "up"],
    ["-n", ns, "addr", "add", `${address}/30`, "dev", nsIf],
    ["-n", ns, "link", "set", nsIf, "up"],
    ["-n", ns, "link", "set", "lo", "up"],
  ];
  for (const s of steps) await run("ip", s);
  const args = opts.script ? (opts.args ?? []) : opts.serveFiles ? [opts.serveFiles] : [];
  child = spawn(
    "ip",
    ["netns", "exec", ns, process.execPath, "-e", opts.script ?? SERVER, address, String(port), ...args],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  await new Promise<void>((resolve, reject) => {
    child!.once("exit", (code) => reject(new Error(`the fake internet's server exited with ${code}`)));
    child!.stdout!.once("data", () => resolve());
  });
  // The veth pair carries traffic a moment after both ends are up: wait until the server answers.
  for (let tries = 0; ; tries++) {
    const answered = await new Promise<boolean>((resolve) => {
      const s = connect({ host: address, port, timeout: 1_000 }, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
      s.on("timeout", () => {
        s.destroy();
        resolve(false);
      });
    });
    if (answered) break;
    if (tries > 50) throw new Error(`the fake internet at ${address}:${port} does not answer`);
    await sleep(100);
  }
  return { address, port, hostSide };
}
