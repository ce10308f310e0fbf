// Fetches the public SSH keys a forge publishes for the job's actor, at the moment a job is held:
// GitHub's and Forgejo's GET /users/{name}/keys, with the job's token where the forge wants one
// (and without it where the forge refuses a job token on that endpoint: the keys are public). The
// keys live in memory for the window only; nothing else about the user is read.
import { z } from "zod";
import type { JobRequest } from "../contract/job-request.js";
import { withTimeout } from "../lifecycle/abort.js";
import { toError } from "../lifecycle/to-error.js";
import { type PublicKey, parsePublicKey } from "./ssh-keys.js";

/** How long the forge may take to answer. */
export const KEYS_FETCH_TIMEOUT_MS = 15_000;
/** More than any user's key list; an answer this long is not a key list. */
const MAX_BODY_BYTES = 1024 * 1024;

const KeyList = z.array(z.object({ key: z.string() }).passthrough()).max(1_000);

export interface ActorKeys {
  readonly keys: readonly PublicKey[];
  /** Lines the forge listed that are not keys gnomon can check (a type ssh2 does not know). */
  readonly unreadable: number;
}

/** The forge did not give the actor's keys: no window opens, and the job's log says why. */
export class ActorKeysError extends Error {
  override readonly name = "ActorKeysError";
  readonly code = "debug-ssh.actor-keys";
  constructor(
    readonly url: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`the forge did not list the actor's public SSH keys at ${url} (${detail})`, options);
  }
}

export async function fetchActorKeys(
  url: string,
  opts: { readonly forge: JobRequest["source"]["forge"]; readonly token?: string; readonly signal?: AbortSignal },
): Promise<ActorKeys> {
  const call = (withToken: boolean) => {
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "gnomon-debug-ssh" };
    if (opts.forge === "github") {
      headers["accept"] = "application/vnd.github+json";
      headers["x-github-api-version"] = "2022-11-28";
    }
    if (withToken && opts.token)
      headers["authorization"] = opts.forge === "github" ? `Bearer ${opts.token}` : `token ${opts.token}`;
    const signal = withTimeout(KEYS_FETCH_TIMEOUT_MS, opts.signal);
    return fetch(url, { headers, signal, redirect: "follow" });
  };
  let res: Response;
  try {
    res = await call(true);
    // The keys are public: a forge that does not take the job's token here answers without it.
    if ((res.status === 401 || res.status === 403) && opts.token) {
      await res.body?.cancel();
      res = await call(false);
    }
  } catch (err) {
    throw new ActorKeysError(url, toError(err).message, { cause: err });
  }
  if (res.status === 404) {
    await res.body?.cancel();
    throw new ActorKeysError(url, "the forge knows no such user");
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new ActorKeysError(url, `HTTP ${res.status}`);
  }
  const text = await readCapped(res, MAX_BODY_BYTES).catch((err: unknown) => {
    throw new ActorKeysError(url, toError(err).message, { cause: err });
  });
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new ActorKeysError(url, "the answer is not JSON", { cause: err });
  }
  const list = KeyList.safeParse(body);
  if (!list.success) throw new ActorKeysError(url, "the answer is not a list of keys");
  const keys: PublicKey[] = [];
  let unreadable = 0;
  for (const { key } of list.data) {
    const parsed = parsePublicKey(key);
    if (parsed) keys.push(parsed);
    else unreadable += 1;
  }
  return { keys, unreadable };
}

async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > maxBytes) {
      await reader.cancel();
      throw new Error(`the answer is longer than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}
