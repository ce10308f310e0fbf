// Released actions for tests, served the way gnomon fetches `uses: owner/repo@ref`: git over smart
// HTTP (git http-backend) from <actionsUrl>/owner/repo, with each release tagged as it is on GitHub
// (v8.0.0, and v8 moved to the newest 8.x). The releases are the exact copies in ../shared/actions
// (its README). The server runs on a host of the fake internet, so a job in a VM reaches it through
// its egress proxy as it would reach github.com; host jobs can use file://<dir> instead.
//
// Hook for other tests (the cache service's): startActionsServer(t) serves actions/cache (v4, v5)
// and actions/github-script (v8) as they are; pass `repos` to add repositories of your own, e.g. a
// workspace repository for actions/checkout whose files include released actions as local ones.
import { execFileSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { startFakeInternet } from "./fake-internet.js";

const ROOT = new URL("../../", import.meta.url).pathname;

/** ../shared/actions: owner/repo/<version>/ folders of released actions. */
export const SHARED_ACTIONS_DIR = process.env["GNOMON_TEST_ACTIONS_DIR"] ?? join(ROOT, "..", "shared", "actions");

/** The released folder of one action version, e.g. releasedAction("actions/github-script", "v8.0.0"). */
export const releasedAction = (slug: string, version: string): string => join(SHARED_ACTIONS_DIR, slug, version);

/** A repository of a test's own: its files, and folders copied in (destination → source folder). */
export interface ExtraRepo {
  readonly files?: Readonly<Record<string, string>>;
  readonly copies?: Readonly<Record<string, string>>;
  /** Tags on its one commit (besides the branch main). */
  readonly tags?: readonly string[];
}

export interface ActionRepos {
  /** The folder holding owner/repo bare repositories (file://<dir> is an actions URL for host jobs). */
  readonly dir: string;
  /** The commit each extra repository's main points to. */
  readonly commits: ReadonlyMap<string, string>;
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "gnomon test",
      GIT_AUTHOR_EMAIL: "test@gnomon.invalid",
      GIT_COMMITTER_NAME: "gnomon test",
      GIT_COMMITTER_EMAIL: "test@gnomon.invalid",
      GIT_AUTHOR_DATE: "2026-01-01T00:00:00Z",
      GIT_COMMITTER_DATE: "2026-01-01T00:00:00Z",
    },
    maxBuffer: 64 * 1024 * 1024,
  })
    .toString()
    .trim();
}

const semver = (v: string) => v.replace(/^v/, "").split(".").map(Number) as [number, number, number];
const bySemver = (a: string, b: string) => {
  const [x, y] = [semver(a), semver(b)];
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
};

/** Bare repositories of every released action (one commit per release, tagged) plus `repos`. */
export async function buildActionRepos(
  t: { after(fn: () => Promise<void>): unknown },
  repos: Readonly<Record<string, ExtraRepo>> = {},
): Promise<ActionRepos> {
  const dir = await mkdtemp(join(tmpdir(), "gnomon-action-repos-"));
  const work = await mkdtemp(join(tmpdir(), "gnomon-action-work-"));
  t.after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });
  const commits = new Map<string, string>();
  const bare = (slug: string, from: string) => git(work, "clone", "-q", "--bare", from, join(dir, slug));
  for (const owner of await readdir(SHARED_ACTIONS_DIR, { withFileTypes: true })) {
    if (!owner.isDirectory()) continue;
    for (const repo of await readdir(join(SHARED_ACTIONS_DIR, owner.name))) {
      const slug = `${owner.name}/${repo}`;
      const tree = join(work, slug);
      await mkdir(tree, { recursive: true });
      git(tree, "init", "-q", "-b", "main");
      const versions = (await readdir(join(SHARED_ACTIONS_DIR, slug))).filter((v) => /^v\d+\.\d+\.\d+$/.test(v));
      for (const version of versions.sort(bySemver)) {
        git(tree, "rm", "-rqf", "--ignore-unmatch", ".");
        await cp(releasedAction(slug, version), tree, { recursive: true });
        git(tree, "add", "-A");
        git(tree, "commit", "-q", "--allow-empty", "-m", `${slug} ${version}`);
        git(tree, "tag", version);
        git(tree, "tag", "-f", `v${semver(version)[0]}`);
      }
      bare(slug, tree);
    }
  }
  for (const [slug, r] of Object.entries(repos)) {
    const tree = join(work, slug);
    await mkdir(tree, { recursive: true });
    git(tree, "init", "-q", "-b", "main");
    for (const [path, text] of Object.entries(r.files ?? {})) {
      await mkdir(dirname(join(tree, path)), { recursive: true });
      await writeFile(join(tree, path), text);
    }
    for (const [to, from] of Object.entries(r.copies ?? {})) await cp(from, join(tree, to), { recursive: true });
    git(tree, "add", "-A");
    git(tree, "commit", "-q", "-m", slug);
    for (const tag of r.tags ?? []) git(tree, "tag", tag);
    commits.set(slug, git(tree, "rev-parse", "HEAD"));
    bare(slug, tree);
  }
  return { dir, commits };
}

/** A CGI bridge to `git http-backend` (plain Node, run inside the fake internet's namespace). */
const SERVER = `
const http = require("node:http");
const { spawn } = require("node:child_process");
const [address, port, root] = process.argv.slice(1);
http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const h = req.headers;
  const env = {
    PATH: process.env.PATH,
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: "1",
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REQUEST_METHOD: req.method,
    CONTENT_TYPE: h["content-type"] || "",
    REMOTE_ADDR: req.socket.remoteAddress || "",
    GIT_PROTOCOL: h["git-protocol"] || "",
    HTTP_CONTENT_ENCODING: h["content-encoding"] || "",
  };
  if (h["content-length"]) env.CONTENT_LENGTH = h["content-length"];
  const cgi = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "inherit"] });
  req.pipe(cgi.stdin);
  let head = Buffer.alloc(0);
  let body = false;
  cgi.stdout.on("data", (chunk) => {
    if (body) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\\r\\n\\r\\n");
    if (end < 0) return;
    body = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString("latin1").split("\\r\\n")) {
      const i = line.indexOf(":");
      const name = line.slice(0, i).trim();
      const value = line.slice(i + 1).trim();
      if (name.toLowerCase() === "status") status = Number(value.split(" ")[0]);
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    res.write(head.subarray(end + 4));
  });
  cgi.on("close", () => (body ? res.end() : res.writeHead(502).end("git http-backend said nothing\\n")));
}).listen(Number(port), address, () => process.stdout.write("listening\\n"));
`;

export interface ActionsServer extends ActionRepos {
  /** The actions URL: http://<address>:<port>, a host of the fake internet. */
  readonly url: string;
}

/** The released actions (and `repos`) over smart HTTP from a host of the fake internet (needs root). */
export async function startActionsServer(
  t: { after(fn: () => Promise<void>): unknown },
  repos: Readonly<Record<string, ExtraRepo>> = {},
): Promise<ActionsServer> {
  const built = await buildActionRepos(t, repos);
  const host = await startFakeInternet(t, { script: SERVER, args: [built.dir] });
  return { ...built, url: `http://${host.address}:${host.port}` };
}
