// Real git repositories for the fake forges: bare repositories under a folder of their own, built
// from files or from a directory (../shared/actions), with tags that can move, served over git's
// smart HTTP protocol by git's own http-backend (CGI), as Forgejo and GitHub serve them. The fakes
// decide who may read and push; this module only speaks git. Imports nothing from gnomon.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const HTTP_BACKEND = "/usr/lib/git-core/git-http-backend";
const IDENTITY = {
  GIT_AUTHOR_NAME: "Fake Forge",
  GIT_AUTHOR_EMAIL: "fake@forge.test",
  GIT_COMMITTER_NAME: "Fake Forge",
  GIT_COMMITTER_EMAIL: "fake@forge.test",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

/** A git request: which repository ("owner/name") and whether it writes (a push). */
export interface GitRequest {
  readonly repo: string;
  readonly push: boolean;
}

/** Pure: the repository and kind of a smart-HTTP request path, or undefined when it is not one. */
export function gitRequestOf(method: string, path: string, query: string): GitRequest | undefined {
  const m = /^\/([^/]+)\/([^/]+?)(?:\.git)?\/(info\/refs|git-upload-pack|git-receive-pack)$/.exec(path);
  if (!m) return undefined;
  const service = m[3] === "info/refs" ? new URLSearchParams(query).get("service") : m[3];
  if (method === "GET" && m[3] !== "info/refs") return undefined;
  return { repo: `${m[1]}/${m[2]}`.toLowerCase(), push: service === "git-receive-pack" };
}

export class GitRepos {
  readonly root: string;

  constructor(root = mkdtempSync(join(tmpdir(), "fake-forge-git-"))) {
    this.root = root;
  }

  #bare(repo: string): string {
    return join(this.root, `${repo.toLowerCase()}.git`);
  }

  #git(cwd: string, ...args: string[]): string {
    return execFileSync("git", args, { cwd, env: { ...process.env, ...IDENTITY }, encoding: "utf8" }).trim();
  }

  has(repo: string): boolean {
    try {
      this.#git(this.#bare(repo), "rev-parse", "--git-dir");
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Adds a commit on `branch` of `repo` (created bare on first use) whose tree is exactly `files`
   * (path → text) plus the contents of `fromDir`; returns the commit.
   */
  commit(
    repo: string,
    o: { files?: Readonly<Record<string, string>>; fromDir?: string; message?: string; branch?: string },
  ): string {
    const bare = this.#bare(repo);
    const branch = o.branch ?? "main";
    if (!this.has(repo)) {
      mkdirSync(bare, { recursive: true });
      this.#git(bare, "init", "-q", "--bare", "-b", branch);
    }
    const work = mkdtempSync(join(tmpdir(), "fake-forge-work-"));
    try {
      this.#git(work, "init", "-q", "-b", branch);
      const parent = this.ref(repo, `refs/heads/${branch}`);
      if (parent) {
        this.#git(work, "fetch", "-q", bare, `refs/heads/${branch}`);
        this.#git(work, "reset", "-q", "--soft", "FETCH_HEAD");
      }
      for (const e of readdirSync(work)) if (e !== ".git") rmSync(join(work, e), { recursive: true, force: true });
      if (o.fromDir) cpSync(o.fromDir, work, { recursive: true });
      for (const [path, text] of Object.entries(o.files ?? {})) {
        mkdirSync(dirname(join(work, path)), { recursive: true });
        writeFileSync(join(work, path), text, { mode: path.endsWith(".sh") ? 0o755 : 0o644 });
      }
      this.#git(work, "add", "-A");
      this.#git(work, "commit", "-q", "--allow-empty", "-m", o.message ?? "a commit");
      this.#git(work, "push", "-q", bare, `HEAD:refs/heads/${branch}`);
      return this.#git(work, "rev-parse", "HEAD");
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** Points a tag at a commit (moving it if it exists); annotated tags get a tag object. */
  tag(repo: string, name: string, commit: string, o: { annotated?: boolean } = {}): void {
    const bare = this.#bare(repo);
    if (o.annotated) this.#git(bare, "tag", "-f", "-a", "-m", name, name, commit);
    else this.#git(bare, "tag", "-f", name, commit);
  }

  /** The object a ref points at, or undefined. */
  ref(repo: string, ref: string): string | undefined {
    try {
      return this.#git(this.#bare(repo), "rev-parse", "--verify", "-q", ref);
    } catch {
      return undefined;
    }
  }

  /** `git log --format=%s` of a ref, newest first. */
  log(repo: string, ref: string): string[] {
    return this.#git(this.#bare(repo), "log", "--format=%s", ref).split("\n");
  }

  /**
   * Serves one smart-HTTP request with git-http-backend. `user` is who the fake authenticated (git
   * lets only a known user push); the fake has checked they may.
   */
  serve(req: IncomingMessage, res: ServerResponse, path: string, query: string, user?: string): void {
    const [, owner = "", name = "", rest = ""] = /^\/([^/]+)\/([^/]+?)(?:\.git)?(\/.*)$/.exec(path) ?? [];
    const env: NodeJS.ProcessEnv = {
      PATH: process.env["PATH"],
      GIT_PROJECT_ROOT: this.root,
      GIT_HTTP_EXPORT_ALL: "1",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      PATH_INFO: `/${owner.toLowerCase()}/${name.toLowerCase()}.git${rest}`,
      QUERY_STRING: query,
      REQUEST_METHOD: req.method ?? "GET",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      ...(user ? { REMOTE_USER: user } : {}),
      ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
      ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"]) } : {}),
      ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
    };
    const cgi = spawn(HTTP_BACKEND, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    req.pipe(cgi.stdin);
    cgi.stdin.on("error", () => undefined);
    let head = Buffer.alloc(0);
    let headersDone = false;
    let stderr = "";
    cgi.stderr.on("data", (b: Buffer) => {
      stderr += b.toString("utf8");
    });
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const crlf = head.indexOf("\r\n\r\n");
      const lf = head.indexOf("\n\n");
      const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf : lf;
      if (end < 0) return;
      const sep = end === crlf ? 4 : 2;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString("latin1").split(/\r?\n/)) {
        const i = line.indexOf(":");
        if (i < 0) continue;
        const key = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (key.toLowerCase() === "status") status = Number.parseInt(value, 10) || 200;
        else res.setHeader(key, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + sep));
    });
    cgi.on("close", (code) => {
      if (!headersDone) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`git-http-backend exited with ${code}: ${stderr}`);
      } else res.end();
    });
  }
}

export interface GitServer {
  /** http://127.0.0.1:PORT, no trailing slash. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A bare git server over `repos` on a loopback port: anonymous reads, pushes only with
 * `pushToken` (as the password of HTTP basic auth).
 */
export async function startGitServer(repos: GitRepos, o: { pushToken?: string } = {}): Promise<GitServer> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const git = gitRequestOf(req.method ?? "GET", url.pathname, url.search.slice(1));
    if (!git || !repos.has(git.repo)) {
      res.writeHead(404).end("not found");
      return;
    }
    const [, password = ""] = Buffer.from((req.headers.authorization ?? "").replace(/^basic /i, ""), "base64")
      .toString()
      .split(":");
    const pusher = o.pushToken !== undefined && password === o.pushToken;
    if (git.push && !pusher) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="git"' }).end("push needs the token");
      return;
    }
    repos.serve(req, res, url.pathname, url.search.slice(1), pusher ? "pusher" : undefined);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The token a request authenticates with, as Forgejo and GitHub read it: `token T`, `Bearer T`, or
 * HTTP basic auth with T as the password (git's x-access-token:T) or as the user name.
 */
export function tokenOf(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization ?? "";
  const m = /^(token|bearer|basic)\s+(.+)$/i.exec(h.trim());
  if (!m) return undefined;
  if (m[1]!.toLowerCase() !== "basic") return m[2];
  const [user = "", password = ""] = Buffer.from(m[2]!, "base64").toString("utf8").split(":");
  return password && password !== "x-oauth-basic" ? password : user || undefined;
}

/**
 * Adds the folders of ../shared/actions as repositories: `<owner>/<repo>/v<X.Y.Z>` becomes a commit
 * of owner/repo tagged vX.Y.Z and vX (the major tag that `uses: owner/repo@vX` names).
 */
export function seedActions(repos: GitRepos, root: string): { repo: string; version: string; commit: string }[] {
  const out: { repo: string; version: string; commit: string }[] = [];
  const dirs = (dir: string) =>
    readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  for (const owner of dirs(root))
    for (const name of dirs(join(root, owner)))
      for (const version of dirs(join(root, owner, name))
        .filter((v) => /^v\d+\.\d+\.\d+$/.test(v))
        .sort()) {
        const repo = `${owner}/${name}`;
        const commit = repos.commit(repo, { fromDir: join(root, owner, name, version), message: version });
        repos.tag(repo, version, commit);
        repos.tag(repo, version.split(".")[0]!, commit);
        out.push({ repo, version, commit });
      }
  return out;
}
