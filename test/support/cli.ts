// Runs the shipped program (dist/gnomon.mjs, the package bin; `npm run build` first) as a user would.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const GNOMON_BIN = fileURLToPath(new URL("../../dist/gnomon.mjs", import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runGnomon(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GNOMON_BIN, ...args], {
      cwd: opts.cwd,
      env: { PATH: process.env["PATH"], HOME: process.env["HOME"], ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 60_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

export interface GnomonProcess {
  readonly child: import("node:child_process").ChildProcess;
  /** Everything it wrote to stderr so far (its JSON log lines). */
  stderr(): string;
  /** Resolves when a log line's msg matches, rejects after timeoutMs or when it exits first. */
  waitForLog(msg: RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string | null>;
}

/** Starts the shipped program in the background (a daemon role); the caller stops it. */
export function spawnGnomon(
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): GnomonProcess {
  const child = spawn(process.execPath, [GNOMON_BIN, ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env["PATH"], HOME: process.env["HOME"], GNOMON_LOG_FORMAT: "json", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  const listeners = new Set<() => void>();
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
    for (const l of [...listeners]) l();
  });
  child.stdout?.resume();
  const exited = new Promise<number | string | null>((resolve) =>
    child.on("exit", (code, sig) => resolve(code ?? sig)),
  );
  return {
    child,
    stderr: () => err,
    exited,
    waitForLog(msg, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const line of err.split("\n")) {
            if (!line.startsWith("{")) continue;
            try {
              const o = JSON.parse(line) as Record<string, unknown>;
              if (typeof o["msg"] === "string" && msg.test(o["msg"])) {
                cleanup();
                resolve(o);
                return;
              }
            } catch {}
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no log line matching ${msg} within ${timeoutMs} ms; stderr:\n${err.slice(-3_000)}`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`gnomon exited before logging ${msg}; stderr:\n${err.slice(-3_000)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off("exit", onExit);
        };
        listeners.add(check);
        child.once("exit", onExit);
        check();
      });
    },
  };
}

/**
 * `gnomon forgejo register` through the shipped bundle, non-interactive, in `cwd` (a fresh folder
 * by default); returns the credentials file it wrote there (`.runner`).
 */
export async function registerForgejoWithCli(
  forgejo: { readonly url: string; readonly registrationToken: string },
  labels: string,
  cwd = mkdtempSync(join(tmpdir(), "gnomon-forgejo-reg-")),
): Promise<string> {
  const file = join(cwd, ".runner");
  const reg = await runGnomon(
    [
      "forgejo",
      "register",
      "--no-interactive",
      "--instance",
      forgejo.url,
      "--token",
      forgejo.registrationToken,
      "--name",
      "e2e",
      "--labels",
      labels,
      "--credentials-file",
      file,
    ],
    { cwd },
  );
  assert.equal(reg.code, 0, reg.stderr);
  assert.ok(existsSync(file), reg.stdout);
  return file;
}

/** What `gnomon github register` is given; `labels` left out: no --labels (a usage error). */
export interface GitHubRegisterArgs {
  readonly url: string;
  readonly token: string;
  readonly labels?: string;
  readonly name?: string;
  readonly ephemeral?: boolean;
  /** --credentials-dir */
  readonly dir: string;
}

/** The command line of `gnomon github register`, non-interactive, for runGnomon. */
export function githubRegisterArgs(o: GitHubRegisterArgs): string[] {
  return [
    "github",
    "register",
    "--url",
    o.url,
    "--token",
    o.token,
    ...(o.name !== undefined ? ["--name", o.name] : []),
    ...(o.labels !== undefined ? ["--labels", o.labels] : []),
    ...(o.ephemeral ? ["--ephemeral"] : []),
    "--credentials-dir",
    o.dir,
  ];
}

/**
 * `gnomon github register` through the shipped bundle against a (fake) GitHub with a fresh
 * registration token, into `dir` (a fresh folder by default); fails the test unless it succeeds.
 * Returns the credentials folder and what the command printed.
 */
export async function registerGitHubWithCli(
  github: { readonly repoUrl: string; registrationToken(): string },
  o: Partial<Omit<GitHubRegisterArgs, "url" | "token">> & { readonly env?: NodeJS.ProcessEnv } = {},
): Promise<{ readonly dir: string; readonly stdout: string }> {
  const dir = o.dir ?? join(mkdtempSync(join(tmpdir(), "gnomon-github-reg-")), "github");
  const reg = await runGnomon(
    githubRegisterArgs({
      ...o,
      labels: o.labels ?? "debian-12",
      url: github.repoUrl,
      token: github.registrationToken(),
      dir,
    }),
    o.env ? { env: o.env } : {},
  );
  assert.equal(reg.code, 0, reg.stderr);
  return { dir, stdout: reg.stdout };
}
