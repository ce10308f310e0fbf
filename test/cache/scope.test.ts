// Which entries a job reads and where it writes, by GitHub's rules ("Restrictions for accessing a
// cache"): its own ref, a pull request's base, the default branch; writes into its own ref only.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cacheScopeOf, NO_REF_SCOPE } from "../../src/cache/scope.js";

const FORGE = "https://forge.test/";
const repo = { repository: "Alice/App", event: { repository: { default_branch: "main" } } };

describe("cache scope", () => {
  it("a push to a branch reads its branch, then the default branch, and writes its branch", () => {
    assert.deepEqual(cacheScopeOf({ ...repo, event_name: "push", ref: "refs/heads/feature" }, FORGE), {
      repository: "https://forge.test/alice/app",
      write: "refs/heads/feature",
      read: ["refs/heads/feature", "refs/heads/main"],
    });
  });

  it("a run on the default branch reads and writes it alone", () => {
    assert.deepEqual(cacheScopeOf({ ...repo, event_name: "push", ref: "refs/heads/main" }, FORGE)?.read, [
      "refs/heads/main",
    ]);
  });

  it("a pull request reads its own ref, then its base branch, then the default branch", () => {
    const s = cacheScopeOf(
      { ...repo, event_name: "pull_request", ref: "refs/pull/7/head", base_ref: "release/1.x", head_ref: "topic" },
      FORGE,
    );
    assert.equal(s?.write, "refs/pull/7/head");
    assert.deepEqual(s?.read, ["refs/pull/7/head", "refs/heads/release/1.x", "refs/heads/main"]);
  });

  it("pull_request_target runs on the base: it writes there (as on GitHub), and base_ref adds nothing", () => {
    const s = cacheScopeOf(
      { ...repo, event_name: "pull_request_target", ref: "refs/heads/main", base_ref: "main" },
      FORGE,
    );
    assert.deepEqual(s, {
      repository: "https://forge.test/alice/app",
      write: "refs/heads/main",
      read: ["refs/heads/main"],
    });
  });

  it("a tag reads the tag, then the default branch", () => {
    assert.deepEqual(cacheScopeOf({ ...repo, event_name: "push", ref: "refs/tags/v1.0" }, FORGE)?.read, [
      "refs/tags/v1.0",
      "refs/heads/main",
    ]);
  });

  it("the repository is qualified by its forge and compared without case: the same name elsewhere is another repository", () => {
    const a = cacheScopeOf({ ...repo, ref: "refs/heads/main" }, "https://forge.test");
    const b = cacheScopeOf({ ...repo, repository: "alice/app", ref: "refs/heads/main" }, "https://FORGE.test/");
    const c = cacheScopeOf({ ...repo, ref: "refs/heads/main" }, "https://other.test/");
    assert.equal(a?.repository, b?.repository);
    assert.notEqual(a?.repository, c?.repository);
  });

  it("without a ref, the default branch (or a fixed scope) is where it reads and writes; without a repository, no cache", () => {
    assert.deepEqual(cacheScopeOf({ ...repo, ref: "" }, FORGE)?.read, ["refs/heads/main"]);
    assert.deepEqual(cacheScopeOf({ repository: "a/b", ref: "", event: {} }, "local")?.read, [NO_REF_SCOPE]);
    assert.equal(cacheScopeOf({ repository: "", ref: "refs/heads/main" }, FORGE), undefined);
  });
});
