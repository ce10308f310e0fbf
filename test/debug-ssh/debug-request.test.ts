// Whether a run asked for debug SSH, as a table: the variable GNOMON_DEBUG_SSH (vars or secrets),
// debug logging as GitHub's re-run sets it or users set it, the window a run may ask for, which
// results are held, who may log in and where the forge lists their keys. Pure: no I/O.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobRequest } from "../../src/contract/job-request.js";
import {
  actorOf,
  apiUrlOf,
  type DebugAsk,
  type DebugSshPolicy,
  debugAskOf,
  holdsFor,
  keysUrlOf,
} from "../../src/debug-ssh/debug-request.js";
import { sampleJobRequest } from "../support/samples.js";

const POLICY: DebugSshPolicy = {
  windowMs: 30 * 60_000,
  maxWindowMs: 120 * 60_000,
  mode: "on-failure",
  onDebugLogging: true,
};

function ask(
  over: { vars?: Record<string, string>; secrets?: Record<string, string>; debugLogging?: boolean },
  policy: DebugSshPolicy = POLICY,
): DebugAsk {
  const req = sampleJobRequest({
    contexts: { github: { repository: "o/r" }, vars: over.vars ?? {} },
    ...(over.debugLogging !== undefined ? { debugLogging: over.debugLogging } : {}),
  });
  return debugAskOf(req, over.secrets ?? {}, policy);
}

describe("debug SSH requests", () => {
  it("a run that says nothing asks for nothing", () => {
    assert.deepEqual(ask({}), { kind: "none" });
    assert.deepEqual(ask({ vars: { OTHER: "x" }, secrets: { GITHUB_TOKEN: "t" } }), { kind: "none" });
  });

  it("GNOMON_DEBUG_SSH names the mode, in vars or secrets, any case; true takes this host's mode; off says no", () => {
    const table: [Parameters<typeof ask>[0], DebugAsk["kind"], string?, string?][] = [
      [{ vars: { GNOMON_DEBUG_SSH: "always" } }, "asked", "always", "variable GNOMON_DEBUG_SSH=always"],
      [{ vars: { GNOMON_DEBUG_SSH: "on-failure" } }, "asked", "on-failure"],
      [{ vars: { gnomon_debug_ssh: " Always " } }, "asked", "always"],
      [{ secrets: { GNOMON_DEBUG_SSH: "always" } }, "asked", "always", "secret GNOMON_DEBUG_SSH=always"],
      [{ vars: { GNOMON_DEBUG_SSH: "true" } }, "asked", "on-failure"],
      [{ vars: { GNOMON_DEBUG_SSH: "off" }, debugLogging: true }, "none"],
      [{ vars: { GNOMON_DEBUG_SSH: "" }, secrets: { ACTIONS_STEP_DEBUG: "true" } }, "none"],
      [{ vars: { GNOMON_DEBUG_SSH: "sometimes" } }, "invalid"],
    ];
    for (const [input, kind, mode, why] of table) {
      const got = ask(input);
      assert.equal(got.kind, kind, JSON.stringify(input));
      if (got.kind === "asked") {
        assert.equal(got.mode, mode, JSON.stringify(input));
        if (why) assert.equal(got.why, why);
        assert.equal(got.windowMs, POLICY.windowMs);
      }
      if (got.kind === "invalid")
        assert.equal(
          got.message,
          'debug SSH: variable GNOMON_DEBUG_SSH="sometimes" is not understood; set it to on-failure, always or off',
        );
    }
  });

  it("debug logging asks in this host's mode: re-run with debug logging, or ACTIONS_*_DEBUG as a variable or secret", () => {
    for (const input of [
      { debugLogging: true },
      { vars: { ACTIONS_STEP_DEBUG: "true" } },
      { secrets: { ACTIONS_RUNNER_DEBUG: "TRUE" } },
    ]) {
      const got = ask(input);
      assert.equal(got.kind, "asked", JSON.stringify(input));
      assert.equal(got.kind === "asked" && got.mode, "on-failure");
      const always = ask(input, { ...POLICY, mode: "always" });
      assert.equal(always.kind === "asked" && always.mode, "always", "a host whose mode is always");
    }
    assert.equal(
      (ask({ secrets: { ACTIONS_STEP_DEBUG: "true" } }) as Extract<DebugAsk, { kind: "asked" }>).why,
      "debug logging (secret ACTIONS_STEP_DEBUG)",
    );
    assert.deepEqual(ask({ vars: { ACTIONS_STEP_DEBUG: "false" } }), { kind: "none" });
    // A host may keep debug logging from holding VMs; the explicit variable still asks.
    const quiet = { ...POLICY, onDebugLogging: false };
    assert.deepEqual(ask({ debugLogging: true, vars: { ACTIONS_STEP_DEBUG: "true" } }, quiet), { kind: "none" });
    assert.equal(ask({ vars: { GNOMON_DEBUG_SSH: "always" } }, quiet).kind, "asked");
  });

  it("GNOMON_DEBUG_SSH_MINUTES sets the window up to this host's maximum, and a bad value keeps the default, saying so", () => {
    const window = (minutes: string) =>
      ask({ vars: { GNOMON_DEBUG_SSH: "always", GNOMON_DEBUG_SSH_MINUTES: minutes } });
    const ten = window("10");
    assert.ok(ten.kind === "asked");
    assert.equal(ten.windowMs, 10 * 60_000);
    assert.deepEqual(ten.notes, []);
    const long = window("600");
    assert.ok(long.kind === "asked");
    assert.equal(long.windowMs, POLICY.maxWindowMs);
    assert.deepEqual(long.notes, [
      "debug SSH: variable GNOMON_DEBUG_SSH_MINUTES asks for 600 minutes; this host allows at most 120",
    ]);
    for (const bad of ["0", "-5", "ten", "1.5"]) {
      const got = window(bad);
      assert.ok(got.kind === "asked");
      assert.equal(got.windowMs, POLICY.windowMs, bad);
      assert.match(got.notes[0] ?? "", /is not a whole number of minutes \(1 or more\); using 30 minutes$/);
    }
  });

  it("holds a failed job in either mode, a successful one only in always, a cancelled one never", () => {
    assert.deepEqual(
      (["success", "failure", "cancelled"] as const).map((r) => [holdsFor("on-failure", r), holdsFor("always", r)]),
      [
        [false, true],
        [true, true],
        [false, false],
      ],
    );
  });

  it("lets in the user who started the run (a re-run's triggering actor), else the run's actor", () => {
    const of = (github: Record<string, unknown>) => actorOf({ contexts: { ...sampleJobRequest().contexts, github } });
    assert.equal(of({ actor: "alice", triggering_actor: "bob" }), "bob");
    assert.equal(of({ actor: "alice", triggering_actor: "" }), "alice"); // Forgejo sends it empty
    assert.equal(of({ actor: "alice" }), "alice");
    assert.equal(of({}), undefined);
    assert.equal(of({ actor: "../admin" }), undefined, "a name that is not a user name");
  });

  it("finds the actor's keys at the forge's API: github.api_url, else the forge's own default", () => {
    const req = (forge: "github" | "forgejo", instance: string, github: Record<string, unknown>): JobRequest =>
      sampleJobRequest({ source: { forge, instance, runner: "r" }, contexts: { github } });
    assert.equal(
      apiUrlOf(req("github", "https://github.com", { api_url: "https://api.github.com" })),
      "https://api.github.com",
    );
    assert.equal(apiUrlOf(req("github", "https://github.com", {})), "https://api.github.com");
    assert.equal(apiUrlOf(req("github", "https://ghe.example", {})), "https://ghe.example/api/v3");
    assert.equal(apiUrlOf(req("forgejo", "https://code.example/", {})), "https://code.example/api/v1");
    assert.equal(
      apiUrlOf(req("forgejo", "https://code.example", { api_url: "https://code.example/api/v1/" })),
      "https://code.example/api/v1",
    );
    assert.equal(
      keysUrlOf("https://api.github.com", "alice", "github"),
      "https://api.github.com/users/alice/keys?per_page=100",
    );
    assert.equal(
      keysUrlOf("https://code.example/api/v1", "a.b", "forgejo"),
      "https://code.example/api/v1/users/a.b/keys?limit=50",
    );
  });
});
