// hashFiles() on the executor: lists the workspace's files there, matches the patterns here, and
// hashes each matched file's sha256 into one sha256 (GitHub's construction; files in sorted
// order). Expression functions are synchronous, so evaluation runs again once the hashes are in.
import { createHash } from "node:crypto";
import { data } from "@actions/expressions";
import type { FunctionDefinition } from "@actions/expressions/funcs/info";
import type { Executor } from "../executor/executor.js";
import { FileNotFoundError } from "../executor/executor.js";
import type { Functions } from "../workflow/expressions.js";
import { matchFiles } from "./glob.js";

export class HashFilesError extends Error {
  override readonly name = "HashFilesError";
  readonly code = "engine.hash-files";
}

export class HashFiles {
  private readonly done = new Map<string, string>();
  private files: string[] | undefined;

  constructor(
    private readonly executor: Executor,
    private readonly workspace: string,
  ) {}

  /**
   * Runs `evaluate` with a hashFiles() that answers from what is computed; when it asked for
   * patterns not computed yet, computes them on the executor and runs it again.
   */
  async withHashFiles<T>(evaluate: (functions: Functions) => T, signal: AbortSignal): Promise<T> {
    for (let round = 0; ; round++) {
      const missing = new Map<string, string[]>();
      const fn: FunctionDefinition = {
        name: "hashFiles",
        minArgs: 1,
        maxArgs: 255,
        call: (...args) => {
          const patterns = args.map((a) => a.coerceString());
          const key = JSON.stringify(patterns);
          const hit = this.done.get(key);
          if (hit === undefined) missing.set(key, patterns);
          return new data.StringData(hit ?? "");
        },
      };
      const result = evaluate(new Map([["hashfiles", fn]]));
      if (missing.size === 0 || round >= 3) return result;
      for (const [key, patterns] of missing) this.done.set(key, await this.hash(patterns, signal));
    }
  }

  private async hash(patterns: string[], signal: AbortSignal): Promise<string> {
    let list = patterns;
    if (list[0]?.startsWith("--")) {
      if (list[0] !== "--follow-symbolic-links")
        throw new HashFilesError(
          `hashFiles(): unknown option ${list[0]}; the only option is '--follow-symbolic-links'`,
        );
      list = list.slice(1);
    }
    const relative = list.map((p) => {
      const neg = p.startsWith("!");
      const body = neg ? p.slice(1) : p;
      const rel = body.startsWith(`${this.workspace}/`) ? body.slice(this.workspace.length + 1) : body;
      return neg ? `!${rel}` : rel;
    });
    const files = matchFiles(await this.listFiles(signal), relative).sort();
    if (files.length === 0) return "";
    const all = createHash("sha256");
    for (const f of files) {
      try {
        all.update(
          createHash("sha256")
            .update(await this.executor.readFile(`${this.workspace}/${f}`))
            .digest(),
        );
      } catch (err) {
        if (!(err instanceof FileNotFoundError)) throw err; // a directory or a dangling link: not a file
      }
    }
    return all.digest("hex");
  }

  private async listFiles(signal: AbortSignal): Promise<string[]> {
    if (this.files) return this.files;
    const out: string[] = [];
    const errors: string[] = [];
    const r = await this.executor.run({
      argv: ["sh", "-c", "find . \\( -type f -o -type l \\) -print"],
      env: {},
      cwd: this.workspace,
      signal,
      onLine: (stream, line) => (stream === "stdout" ? out : errors).push(line),
    });
    if (r.exitCode !== 0)
      throw new HashFilesError(`hashFiles() could not list the workspace's files: ${errors.slice(0, 3).join("; ")}`);
    this.files = out.map((l) => l.replace(/^\.\//, ""));
    return this.files;
  }

  /** Files change while steps run: forget the listing and hashes after each step. */
  reset(): void {
    this.files = undefined;
    this.done.clear();
  }
}
