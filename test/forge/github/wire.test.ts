// The pure readers of GitHub's JSON: template tokens, context data, case-insensitive objects,
// time spans, route templates and error bodies.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { SerializedToken } from "../../../src/contract/template-token.js";
import { JobMessageLimitError } from "../../../src/forge/github/errors.js";
import { errorDetail } from "../../../src/forge/github/http.js";
import { expandRoute } from "../../../src/forge/github/locations.js";
import { isHostedHost, parseGitHubUrl } from "../../../src/forge/github/urls.js";
import {
  caseless,
  decodeContextData,
  TaskAgentMessage,
  TimeSpan,
  toSerializedToken,
} from "../../../src/forge/github/wire.js";

describe("GitHub template tokens", () => {
  it("become the contract's serialized tokens, dropping positions and accepting either pair casing", () => {
    const wire = {
      type: 2,
      file: 1,
      line: 55,
      col: 11,
      map: [
        { Key: { type: 0, lit: "MATRIX", file: 1, line: 55 }, Value: { type: 3, expr: "toJSON(matrix)", line: 55 } },
        { key: "plain", value: { type: 1 } },
        { Key: "n", Value: { type: 6 } },
        { Key: "b", Value: { type: 5 } },
        { Key: { type: 4, directive: "insert" }, Value: { type: 2 } },
        { Key: { lit: "untyped" }, Value: { type: 7 } },
      ],
    };
    const r = toSerializedToken(wire);
    assert.ok(r.ok);
    assert.deepEqual(r.token, {
      type: 2,
      map: [
        { Key: "MATRIX", Value: { type: 3, expr: "toJSON(matrix)" } },
        { Key: "plain", Value: { type: 1, seq: [] } },
        { Key: "n", Value: { type: 6, num: 0 } },
        { Key: "b", Value: { type: 5, bool: false } },
        { Key: { type: 4, expr: "insert" }, Value: { type: 2, map: [] } },
        { Key: "untyped", Value: { type: 7 } },
      ],
    });
    assert.ok(SerializedToken.safeParse(r.token).success, "the result passes the contract schema");
  });

  it("refuses a token of an unknown type with the path to it", () => {
    const r = toSerializedToken({ type: 1, seq: ["a", { type: 42 }] });
    assert.deepEqual(r, { ok: false, problem: "token.seq[1] has unknown token type 42" });
  });

  it("nest at most as deep as a workflow may; deeper is refused without exhausting the stack", () => {
    const nested = (n: number) => {
      let t: unknown = "leaf";
      for (let i = 0; i < n; i++) t = i % 2 ? { type: 1, seq: [t] } : { type: 2, map: [{ Key: "k", Value: t }] };
      return t;
    };
    assert.ok(toSerializedToken(nested(100)).ok);
    for (const n of [101, 200_000]) {
      const r = toSerializedToken(nested(n));
      assert.ok(!r.ok);
      assert.match(
        r.problem,
        /^token\.\S* nests more than 100 mappings and sequences deep, over gnomon's limit of 100 \(maxDepth\)$/,
      );
    }
  });
});

describe("PipelineContextData", () => {
  it("decodes strings, arrays, dictionaries, booleans and numbers in their pair order", () => {
    const v = decodeContextData({
      t: 2,
      d: [
        { k: "z", v: "last-written-first" },
        { k: "arr", v: { t: 1, a: ["x", { t: 3, b: true }, { t: 4, n: 1.5 }] } },
        { k: "empty", v: { t: 2 } },
        { k: "cs", v: { t: 5, d: [{ k: "Key", v: { t: 0, s: "S" } }] } },
        { k: "bare", v: false },
        { k: "nothing", v: null },
      ],
    });
    assert.deepEqual(v, {
      z: "last-written-first",
      arr: ["x", true, 1.5],
      empty: {},
      cs: { Key: "S" },
      bare: false,
      nothing: null,
    });
    assert.deepEqual(Object.keys(v as object), ["z", "arr", "empty", "cs", "bare", "nothing"]);
  });

  it("nests at most 100 arrays and dictionaries deep; deeper throws JobMessageLimitError", () => {
    const nested = (n: number) => {
      let v: unknown = "leaf";
      for (let i = 0; i < n; i++) v = i % 2 ? { t: 1, a: [v] } : { t: 2, d: [{ k: "k", v }] };
      return v;
    };
    assert.doesNotThrow(() => decodeContextData(nested(100), "github"));
    for (const n of [101, 200_000])
      assert.throws(
        () => decodeContextData(nested(n), "github"),
        (err: unknown) =>
          err instanceof JobMessageLimitError &&
          err.limit === "maxDepth" &&
          /^the github context of the job message nests more than 100 arrays and objects deep, over gnomon's limit of 100 \(maxDepth\)/.test(
            err.message,
          ),
      );
  });
});

describe("classic JSON", () => {
  it("is read case-insensitively, as the Go client's PascalCase names are accepted", () => {
    const m = TaskAgentMessage.parse({ MessageId: "12", MESSAGETYPE: "JobCancellation", Iv: null, Body: "{}" });
    assert.deepEqual(m, { messageId: 12, messageType: "JobCancellation", iv: null, body: "{}" });
    const s = caseless({ sessionId: z.string() }).parse({ SessionID: "abc" });
    assert.equal(s.sessionId, "abc");
  });

  it("reads time spans with and without days", () => {
    assert.equal(TimeSpan.parse("00:05:00"), 300_000);
    assert.equal(TimeSpan.parse("1.02:00:30.5"), (26 * 3600 + 30) * 1000);
  });

  it("tells the services' error bodies apart", () => {
    assert.deepEqual(
      errorDetail(
        JSON.stringify({ source: "actions-broker-listener", errorKind: "RunnerNotFound", errorMessage: "gone" }),
      ),
      { kind: "broker", errorKind: "RunnerNotFound", message: "gone" },
    );
    assert.deepEqual(
      errorDetail(JSON.stringify({ source: "actions-run-service", statusCode: 409, errorMessage: "x" })),
      {
        kind: "run-service",
        message: "x",
      },
    );
    assert.deepEqual(errorDetail(JSON.stringify({ error: "invalid_client", error_description: "nope" })), {
      kind: "oauth",
      error: "invalid_client",
      description: "nope",
    });
    assert.deepEqual(
      errorDetail(JSON.stringify({ $id: "1", TypeKey: "TaskAgentSessionExpiredException", Message: "m" })),
      {
        kind: "vss",
        typeKey: "TaskAgentSessionExpiredException",
        message: "m",
      },
    );
    assert.deepEqual(errorDetail("<html>bad gateway</html>"), { kind: "text", text: "<html>bad gateway</html>" });
  });
});

describe("VSS route templates", () => {
  it("fill area, resource and route values and drop a trailing segment without a value", () => {
    assert.equal(
      expandRoute("_apis/{area}/pools/{poolId}/agents/{agentId}", "distributedtask", "agents", { poolId: 3 }),
      "_apis/distributedtask/pools/3/agents",
    );
    assert.equal(
      expandRoute(
        "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/logs/{*logId}",
        "distributedtask",
        "logs",
        {
          scopeIdentifier: "00000000-0000-0000-0000-000000000000",
          hubName: "Actions",
          planId: "p",
          logId: 7,
        },
      ),
      "00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/p/logs/7",
    );
    assert.equal(
      expandRoute("_apis/{area}/pools/{poolId}/jobrequests/{requestId}", "distributedtask", "jobrequests", {
        requestId: 9,
      }),
      "_apis/distributedtask/pools/jobrequests/9",
      "a missing value drops its own segment only, as the official SDK does",
    );
    assert.equal(expandRoute("_apis/{{x}}/{*path}", "a", "r", { path: "d/e f" }), "_apis/{x}/d/e f");
  });
});

describe("GitHub URLs", () => {
  it("map github.com scopes to api.github.com and GHES scopes to /api/v3", () => {
    const repo = parseGitHubUrl("https://github.com/octo/hello/");
    assert.equal(repo.kind, "repository");
    assert.equal(repo.apiBase, "https://api.github.com");
    assert.equal(repo.scopedBase, "https://api.github.com/repos/octo/hello/actions");
    assert.equal(repo.gitHubUrl, "https://github.com/octo/hello");
    const ent = parseGitHubUrl("https://ghes.example:8443/enterprises/acme");
    assert.equal(ent.kind, "enterprise");
    assert.equal(ent.scopedBase, "https://ghes.example:8443/api/v3/enterprises/acme/actions");
    assert.equal(parseGitHubUrl("https://octo.ghe.com/org").apiBase, "https://api.octo.ghe.com");
    assert.ok(isHostedHost("www.github.com"));
    assert.throws(() => parseGitHubUrl("https://github.com/a/b/c"), /does not name a repository/);
  });
});
