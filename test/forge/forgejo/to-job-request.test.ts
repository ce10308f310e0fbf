// The pure task → JobRequest conversion: the payload through the workflow parser, the context
// without tokens, the tokens and secrets sealed, vars, needs, matrix, the actions URL, the label.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { openSecrets } from "../../../src/contract/sealed-secrets.js";
import { TaskRejectedError } from "../../../src/forge/forgejo/errors.js";
import { parseLabels } from "../../../src/forge/forgejo/labels.js";
import { jobIdForTask, payloadStepCount, toJobRequest } from "../../../src/forge/forgejo/to-job-request.js";
import { Result, TaskSchema } from "../../../src/gen/runner/v1/messages_pb.js";
import { aliasBombWorkflow } from "../../support/yaml-bombs.js";

const KEY = randomBytes(32);
const INSTANCE = "https://forgejo.example/";

const PAYLOAD = `name: ci
on:
  push:
jobs:
  test:
    name: test (debian, 20)
    runs-on: [linux]
    needs: [build]
    incomplete_matrix: false
    timeout-minutes: "30"
    strategy:
      fail-fast: "false"
      max-parallel: "2"
      matrix:
        os: [debian]
        node: [20]
    steps:
      - name: hello
        run: echo "\${{ matrix.os }} \${{ needs.build.outputs.v }}"
      -
      - uses: actions/checkout@v4
`;

const CONTEXT: JsonObject = {
  event_name: "push",
  event: { ref: "refs/heads/main" },
  repository: "alice/demo",
  run_id: "9",
  run_number: "3",
  run_attempt: "1",
  workflow: "ci.yml",
  server_url: INSTANCE,
  token: "jobtoken0123",
  forgejo_runtime_token: "runtime-jwt",
  gitea_runtime_token: "runtime-jwt",
  forgejo_default_actions_url: "https://data.forgejo.org",
  gitea_default_actions_url: "https://github.com",
};

function task(over: { payload?: string; context?: JsonObject; secrets?: Record<string, string> } = {}) {
  return create(TaskSchema, {
    id: 42n,
    workflowPayload: new TextEncoder().encode(over.payload ?? PAYLOAD),
    context: over.context ?? CONTEXT,
    secrets: over.secrets ?? { GITHUB_TOKEN: "jobtoken0123", GITEA_TOKEN: "jobtoken0123", MY_SECRET: "s3cret" },
    vars: { COLOR: "blue" },
    needs: { build: { result: Result.SUCCESS, outputs: { v: "7" } } },
  });
}

const cx = {
  instance: INSTANCE,
  runnerUuid: "11111111-2222-4333-8444-555555555555",
  replyTo: "forgejo-11111111-2222-4333-8444-555555555555",
  labels: parseLabels(["linux:vm:debian-12"]),
  clusterKey: KEY,
  nowMs: Date.parse("2026-01-01T00:00:00Z"),
};

describe("Forgejo task → JobRequest", () => {
  it("parses the single-job payload into the spec, with Forgejo's quirks undone", async () => {
    const r = await toJobRequest(task(), cx);
    assert.equal(r.spec.job.id, "test");
    assert.equal(r.spec.job.name, "test (debian, 20)");
    assert.equal(r.spec.workflow.name, "ci");
    assert.equal(r.spec.steps.length, 2, "the null step is dropped, as Forgejo dropped its step row");
    assert.equal(r.spec.timeoutMinutes, 30);
    assert.equal(r.spec.steps[1]?.kind, "uses");
  });

  it("puts the job on the queue of the label's catalog image", async () => {
    const r = await toJobRequest(task(), cx);
    assert.equal(r.runsOn, "debian-12");
    assert.equal(r.replyTo, cx.replyTo);
    assert.deepEqual(r.source, {
      forge: "forgejo",
      instance: INSTANCE,
      runner: cx.runnerUuid,
      ref: { taskId: 42, job: "test", runId: "9", runNumber: "3", runAttempt: "1", repository: "alice/demo" },
    });
  });

  it("gives the github context without any token, and vars, needs, matrix and strategy", async () => {
    const r = await toJobRequest(task(), cx);
    const github = r.contexts.github;
    assert.equal(github["repository"], "alice/demo");
    assert.equal(github["job"], "test");
    for (const k of ["token", "forgejo_runtime_token", "gitea_runtime_token"]) assert.ok(!(k in github), `${k} leaked`);
    assert.doesNotMatch(JSON.stringify(r.contexts), /jobtoken0123|runtime-jwt|s3cret/);
    assert.deepEqual(r.contexts.vars, { COLOR: "blue" });
    assert.deepEqual(r.contexts.needs, { build: { result: "success", outputs: { v: "7" } } });
    assert.deepEqual(r.contexts.matrix, { os: "debian", node: 20 });
    assert.deepEqual(r.contexts.strategy, { "fail-fast": false, "job-index": 0, "job-total": 1, "max-parallel": 2 });
  });

  it("seals the secrets with GITHUB_TOKEN set to the job token, its aliases and the runtime token", async () => {
    const r = await toJobRequest(task(), cx);
    assert.doesNotMatch(JSON.stringify(r), /jobtoken0123|s3cret/);
    const s = openSecrets(r.secrets, KEY, r.id);
    assert.equal(s["GITHUB_TOKEN"], "jobtoken0123");
    assert.equal(s["FORGEJO_TOKEN"], "jobtoken0123");
    assert.equal(s["GITEA_TOKEN"], "jobtoken0123");
    assert.equal(s["MY_SECRET"], "s3cret");
    assert.equal(s["ACTIONS_RUNTIME_TOKEN"], "runtime-jwt");
  });

  it("resolves uses: against Forgejo's default actions URL, forgejo_* before gitea_*", async () => {
    assert.equal((await toJobRequest(task(), cx)).actionsUrl, "https://data.forgejo.org");
    const gitea = task({ context: { token: "t", gitea_default_actions_url: "https://gitea.com" } });
    assert.equal((await toJobRequest(gitea, cx)).actionsUrl, "https://gitea.com");
  });

  it("refuses a task without a default actions URL, saying what to do", async () => {
    await assert.rejects(toJobRequest(task({ context: { token: "t" } }), cx), /default actions URL.*upgrade Forgejo/);
  });

  it("gives the same job id for the same task of the same instance, and another for another task", () => {
    assert.equal(jobIdForTask(INSTANCE, 42n), jobIdForTask("https://forgejo.example", 42n));
    assert.notEqual(jobIdForTask(INSTANCE, 42n), jobIdForTask(INSTANCE, 43n));
    assert.match(jobIdForTask(INSTANCE, 42n), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("rejects a payload that is not one job, not YAML, or not valid Actions syntax, as TaskRejectedError", async () => {
    const two = "on: push\njobs:\n  a: {runs-on: linux, steps: [{run: x}]}\n  b: {runs-on: linux, steps: [{run: y}]}\n";
    await assert.rejects(toJobRequest(task({ payload: two }), cx), /exactly one job \(found 2\)/);
    await assert.rejects(toJobRequest(task({ payload: "jobs: [" }), cx), TaskRejectedError);
    const bad = "on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: echo\n        bogus: 1\n";
    await assert.rejects(toJobRequest(task({ payload: bad }), cx), (err: Error) => {
      assert.ok(err instanceof TaskRejectedError);
      assert.match(err.message, /cannot be run/);
      return true;
    });
  });

  it("rejects a job for a label this runner no longer has, naming its labels", async () => {
    const other = { ...cx, labels: parseLabels(["big"]) };
    await assert.rejects(
      toJobRequest(task(), other),
      /runs on "linux", which this runner no longer serves \(its labels are big\)/,
    );
  });

  it("rejects an alias bomb in the payload with the limit it passes, citing the workflow's file", async () => {
    const bomb = task({ payload: aliasBombWorkflow(8), context: { ...CONTEXT, workflow: "bomb.yml" } });
    await assert.rejects(toJobRequest(bomb, cx), (err: Error) => {
      assert.ok(err instanceof TaskRejectedError, String(err));
      assert.match(
        err.message,
        /^The workflow Forgejo sent for task 42 cannot be read: bomb\.yml:\d+:\d+: the YAML holds more than 250000 values once its aliases are expanded .*\(maxNodes\)/,
      );
      return true;
    });
    assert.equal(payloadStepCount(bomb), 0, "no step rows to count in a payload that cannot be read");
  });

  it("cites the workflow's path from workflow_ref, else the file name Forgejo gives, never one made up", async () => {
    const bad = "on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: echo\n        bogus: 1\n";
    const withRef = {
      ...CONTEXT,
      workflow: "build.yml",
      workflow_ref: "alice/demo/.forgejo/workflows/build.yml@refs/heads/main",
    };
    const cited = async (context: JsonObject) =>
      toJobRequest(task({ payload: bad, context }), cx).then(
        () => assert.fail("the payload is invalid"),
        (err: Error) => err.message,
      );
    assert.match(await cited(withRef), /: \.forgejo\/workflows\/build\.yml:7:9: Unexpected value 'bogus'$/);
    assert.match(await cited({ ...CONTEXT, workflow: "build.yml" }), /: build\.yml:7:9: Unexpected value 'bogus'$/);
    const { workflow: _, ...unnamed } = CONTEXT;
    assert.match(await cited(unnamed), /: workflow_payload:7:9: Unexpected value 'bogus'$/);
  });

  it("rejects a task whose context nests past the depth limit", async () => {
    let deep: JsonObject = { x: 1 };
    for (let i = 0; i < 150; i++) deep = { inner: deep };
    await assert.rejects(
      toJobRequest(task({ context: { ...CONTEXT, event: deep } }), cx),
      /context Forgejo sent for task 42 .* nests more than 100 arrays and objects deep, over gnomon's limit of 100 \(maxDepth\)/,
    );
  });

  it("counts the step rows Forgejo made: the non-null entries", () => {
    assert.equal(payloadStepCount(task()), 2);
    assert.equal(payloadStepCount(task({ payload: "" })), 0);
  });
});
