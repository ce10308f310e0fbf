// The fake's git repositories and repository REST API: git over smart HTTP at
// <url>/<owner>/<repo>(.git) — public repositories to anyone, private ones (the jobs' own) to the
// GITHUB_TOKEN of a running job of that repository, pushes only with that token — and
// GET /api/v3/repos/<owner>/<repo> as github.com answers it.
import { rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { GitRepos, gitRequestOf, seedActions, tokenOf } from "../git-http.js";
import { type GitHubBooks, REPO } from "./books.js";
import type { RepoApiCall } from "./shapes.js";

export class FakeRepos {
  readonly git = new GitRepos();
  readonly #public = new Set<string>();
  /** Every call of the repository REST API, in order. */
  readonly apiCalls: RepoApiCall[] = [];

  /** A repository: one commit per entry on main, private unless `public`. Returns the commits, oldest first. */
  create(
    fullName: string,
    commits: readonly { files: Readonly<Record<string, string>>; message?: string }[],
    o: { public?: boolean } = {},
  ): string[] {
    if (o.public) this.#public.add(fullName.toLowerCase());
    return commits.map((c) => this.git.commit(fullName, c));
  }

  /** Serves the actions under `root` (../shared/actions) as github.com does: public, version and major tags. */
  seedActions(root: string): { repo: string; version: string; commit: string }[] {
    const seeded = seedActions(this.git, root);
    for (const s of seeded) this.#public.add(s.repo);
    return seeded;
  }

  close(): void {
    rmSync(this.git.root, { recursive: true, force: true });
  }

  /** Answers git and repository API requests; false for anything else. Called before the body is read. */
  serve(b: GitHubBooks, req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    const token = tokenOf(req);
    const job = token
      ? [...b.jobs.values()].find((j) => j.githubToken === token && (j.state === "assigned" || j.state === "acquired"))
      : undefined;
    const own = (repo: string) => job !== undefined && repo === REPO;
    const git = gitRequestOf(req.method ?? "GET", url.pathname, url.search.slice(1));
    if (git) {
      if (!this.git.has(git.repo)) {
        res.writeHead(404, { "content-type": "text/plain" }).end("Repository not found.\n");
        return true;
      }
      if (git.push ? !own(git.repo) : !this.#public.has(git.repo) && !own(git.repo)) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"' }).end("Invalid username or token.\n");
        return true;
      }
      this.git.serve(req, res, url.pathname, url.search.slice(1), job ? `job-${job.jobId}` : undefined);
      return true;
    }
    const m = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!m || req.method !== "GET") return false;
    const name = `${m[1]}/${m[2]}`.toLowerCase();
    const answer = (status: number, body: unknown) => {
      this.apiCalls.push({ method: "GET", path: url.pathname, status, jobId: job?.jobId });
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
      b.changed();
      return true;
    };
    if (!this.git.has(name) || (!this.#public.has(name) && !own(name)))
      return answer(404, {
        message: "Not Found",
        documentation_url: "https://docs.github.com/rest/repos/repos#get-a-repository",
      });
    return answer(200, {
      full_name: name,
      private: !this.#public.has(name),
      default_branch: "main",
      clone_url: `${b.url}/${name}.git`,
    });
  }
}
