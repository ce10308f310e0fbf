// The fake's users and their public SSH keys: GET /api/v3/users/{username}/keys as GitHub answers
// it (public, no token needed; a token is accepted too): [{id, key}], the keys as authorized_keys
// lines without comments; 404 for a user it does not know. Debug SSH reads the actor's keys here.
import { HttpError } from "./http-error.js";

export class FakeUsers {
  /** Public keys by lower-case login (GitHub logins are case-insensitive). */
  readonly #keys = new Map<string, readonly string[]>();
  /** Every keys request, in order: the login asked for and whether it carried a token. */
  readonly calls: { readonly user: string; readonly authorized: boolean }[] = [];

  setKeys(user: string, keys: readonly string[]): void {
    this.#keys.set(user.toLowerCase(), [...keys]);
  }

  /** Answers /api/v3/users/…; undefined for another path. */
  route(method: string, url: URL, authorization: string | undefined): unknown {
    const m = /^\/api\/v3\/users\/([^/]+)\/keys$/.exec(url.pathname);
    if (!m || method !== "GET") return undefined;
    const user = decodeURIComponent(m[1]!);
    this.calls.push({ user, authorized: authorization !== undefined });
    const keys = this.#keys.get(user.toLowerCase());
    if (!keys)
      throw new HttpError(404, {
        message: "Not Found",
        documentation_url: "https://docs.github.com/rest/users/keys#list-public-keys-for-a-user",
        status: "404",
      });
    // GitHub drops the comment and numbers the keys; it lists up to per_page (default 30, at most 100).
    const perPage = Math.min(100, Number(url.searchParams.get("per_page") ?? 30) || 30);
    return keys.slice(0, perPage).map((line, i) => ({ id: 1000 + i, key: line.split(" ").slice(0, 2).join(" ") }));
  }
}
