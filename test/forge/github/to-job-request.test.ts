// The pure mapping of a GitHub job message onto the contract's JobRequest: steps and their inputs
// as unevaluated template tokens, context data as contexts, secrets sealed (GITHUB_TOKEN = the
// job's token), nothing secret in the clear.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { openSecrets } from "../../../src/contract/sealed-secrets.js";
import {
  contractJobId,
  describeJob,
  MASK_ENTRY_PREFIX,
  toJobRequest,
} from "../../../src/forge/github/to-job-request.js";
import { AgentJobRequestMessage } from "../../../src/forge/github/wire.js";
import { LogMasker } from "../../../src/forge/log-masker.js";
import { startFakeGitHub } from "../../fakes/github-server.js";

const key = randomBytes(32);
const ctx = {
  instance: "https://github.com/o/r",
  runnerId: "42",
  replyTo: "github-github.com-42",
  runsOn: "debian-12",
  clusterKey: key,
  now: "2026-05-01T10:00:00.000Z",
};

describe("a GitHub job message", () => {
  it("becomes a JobRequest with its steps as template tokens and its contexts decoded", async (t) => {
    const fake = await startFakeGitHub(t);
    const job = fake.queueJob({
      steps: [
        { uses: "actions/checkout@v4" },
        { name: "Greet", run: "echo ${{ vars.GREETING }} on ${{ matrix.os }}", env: { WHO: "${{ inputs.who }}" } },
        { id: "second", run: "true" },
      ],
      secrets: { DEPLOY_KEY: "k3y-material" },
      outputs: { result: "steps.second.outputs.value" },
    });
    const msg = AgentJobRequestMessage.parse(fake.jobMessage(job.jobId, "v2"));
    const described = describeJob(msg, "run-service");
    assert.ok(described.ok);
    const r = toJobRequest(msg, described.job, ctx);
    assert.ok(r.ok, r.ok ? "" : r.reason);
    const req = r.request;

    assert.equal(req.id, job.jobId);
    assert.equal(req.runsOn, "debian-12");
    assert.equal(req.replyTo, ctx.replyTo);
    assert.deepEqual(req.source, {
      forge: "github",
      instance: ctx.instance,
      runner: "42",
      ref: {
        flow: "run-service",
        planId: job.planId,
        jobId: job.jobId,
        timelineId: job.timelineId,
        requestId: 0,
        serviceUrl: `${fake.url}/run/`,
        runtimeUrl: `${fake.url}/run/`,
        resultsUrl: `${fake.url}/results/`,
        cacheUrl: `${fake.url}/cache/`,
      },
    });
    // The cache service GitHub names: v2 (its results service) when the job says so, as the official runner reads it.
    assert.deepEqual(req.runtime, {
      url: `${fake.url}/run/`,
      resultsUrl: `${fake.url}/results/`,
      cacheUrl: `${fake.url}/cache/`,
      cacheServiceV2: true,
    });
    assert.deepEqual(req.spec.workflow, { name: "ci", file: ".github/workflows/ci.yml" });
    assert.deepEqual(req.spec.job, { id: "build", name: "build (linux)" });
    assert.deepEqual(req.spec.env, [{ type: 2, map: [{ Key: "CI_VAR", Value: "yes" }] }]);
    assert.deepEqual(req.spec.outputs, {
      type: 2,
      map: [{ Key: "result", Value: { type: 3, expr: "steps.second.outputs.value" } }],
    });

    const [checkout, greet, second] = req.spec.steps;
    assert.deepEqual(checkout, {
      id: "__actions_checkout",
      if: "success()",
      kind: "uses",
      uses: "actions/checkout@v4",
    });
    assert.equal(greet?.kind, "run");
    assert.deepEqual(greet, {
      id: "__run_2",
      name: "Greet",
      if: "success()",
      env: { type: 2, map: [{ Key: "WHO", Value: { type: 3, expr: "inputs.who" } }] },
      kind: "run",
      run: { type: 3, expr: "format('echo {0} on {1}', vars.GREETING, matrix.os)" },
    });
    // this step's inputs came with lower-case pair names
    assert.deepEqual(second, { id: "second", if: "success()", kind: "run", run: "true" });

    assert.equal(req.contexts.github["repository"], "gnomon-org/gnomon-repo");
    assert.equal(req.contexts.github["token"], undefined, "the github context carries no token");
    assert.deepEqual(req.contexts.github["event"], {
      ref: "refs/heads/main",
      repository: { private: false, name: "gnomon-repo" },
    });
    assert.deepEqual(req.contexts.matrix, { os: "linux" });
    assert.deepEqual(req.contexts.strategy, { "fail-fast": true, "job-index": 0, "job-total": 1, "max-parallel": 1 });
    assert.deepEqual(req.contexts.vars, { GREETING: "hello" });
    assert.deepEqual(req.contexts.needs, {});
    assert.deepEqual(req.contexts.inputs, {});
    assert.equal(req.actionsUrl, fake.url);

    const secrets = openSecrets(req.secrets, key, req.id);
    assert.equal(secrets["GITHUB_TOKEN"], job.githubToken);
    assert.equal(secrets["DEPLOY_KEY"], "k3y-material");
    assert.equal(secrets["ACTIONS_RUNTIME_TOKEN"], job.accessToken);
    assert.equal(secrets["github_token"], undefined, "github_token is GITHUB_TOKEN, not a second secret");
    assert.equal(secrets["system.github.token"], undefined);
    assert.deepEqual(
      Object.keys(secrets).filter((k) => k.startsWith(MASK_ENTRY_PREFIX)).length,
      2,
      "both mask hints travel sealed",
    );
    const onQueue = JSON.stringify(req);
    for (const s of [job.githubToken, job.accessToken, "k3y-material"])
      assert.ok(!onQueue.includes(s), "no secret in the clear");
  });

  it("keeps the runner-side facts: record ids, display names, mask values", async (t) => {
    const fake = await startFakeGitHub(t);
    const job = fake.queueJob({ secrets: { TOKEN: "abc\ndef" } });
    const msg = AgentJobRequestMessage.parse(fake.jobMessage(job.jobId, "classic"));
    const d = describeJob(msg, "classic");
    assert.ok(d.ok);
    assert.equal(d.job.cacheServiceV2, false, "GHES names no v2 cache service");
    assert.equal(d.job.requestId, job.requestId);
    assert.equal(d.job.planVersion, 13);
    assert.equal(d.job.planType, "Actions");
    assert.equal(d.job.accessToken, job.accessToken);
    assert.deepEqual(
      d.job.steps.map((s) => [s.displayName, s.actionName, s.ref]),
      [
        ["Run actions/checkout@v4", "actions/checkout", "v4"],
        ["Say hello", "", ""],
      ],
    );
    for (const v of ["abc\ndef", job.githubToken, job.accessToken]) assert.ok(d.job.maskValues.includes(v), v);
    const masker = new LogMasker(d.job.maskValues);
    assert.equal(masker.mask("abc def"), "*** ***", "each line of a multi-line secret is masked alone");
  });

  it("says the run asked for debug logging when a re-run with debug logging set ACTIONS_*_DEBUG among its variables", async (t) => {
    const fake = await startFakeGitHub(t);
    const toRequest = (script: Parameters<typeof fake.queueJob>[0]) => {
      const job = fake.queueJob(script);
      const msg = AgentJobRequestMessage.parse(fake.jobMessage(job.jobId, "v2"));
      const d = describeJob(msg, "run-service");
      assert.ok(d.ok);
      const r = toJobRequest(msg, d.job, ctx);
      assert.ok(r.ok, r.ok ? "" : r.reason);
      return r.request;
    };
    assert.equal(toRequest({}).debugLogging, undefined, "an ordinary run");
    // What GitHub sends on "re-run with debug logging": plain variables, in no context and no secret.
    for (const name of ["ACTIONS_STEP_DEBUG", "actions_runner_debug"]) {
      const req = toRequest({ variables: { [name]: "true" } });
      assert.equal(req.debugLogging, true, name);
      assert.equal(req.contexts.vars[name], undefined, "it is not a repository variable");
      assert.equal(openSecrets(req.secrets, key, req.id)[name], undefined, "nor a secret");
    }
    assert.equal(toRequest({ variables: { ACTIONS_STEP_DEBUG: "false" } }).debugLogging, undefined);
  });

  it("fails with a sentence for a step kind gnomon cannot run", async (t) => {
    const fake = await startFakeGitHub(t);
    const job = fake.queueJob();
    const raw = fake.jobMessage(job.jobId, "v2");
    (raw["steps"] as Record<string, unknown>[])[1]!["type"] = "backgroundStepControl";
    const msg = AgentJobRequestMessage.parse(raw);
    const d = describeJob(msg, "run-service");
    assert.ok(d.ok);
    const r = toJobRequest(msg, d.job, ctx);
    assert.deepEqual(r, {
      ok: false,
      reason: 'step 2 (Say hello) is of type "backgroundStepControl", which gnomon cannot run yet',
    });
  });

  it("fails with the limit when its steps' tokens hold more values than a workflow may", async (t) => {
    const fake = await startFakeGitHub(t);
    const job = fake.queueJob();
    const raw = fake.jobMessage(job.jobId, "v2");
    const values = Array.from({ length: 130_000 }, (_, i) => ({ Key: `K${i}`, Value: "v" }));
    (raw["steps"] as Record<string, unknown>[])[1]!["environment"] = { type: 2, map: values };
    const msg = AgentJobRequestMessage.parse(raw);
    const d = describeJob(msg, "run-service");
    assert.ok(d.ok);
    const r = toJobRequest(msg, d.job, ctx);
    assert.ok(!r.ok);
    assert.match(
      r.reason,
      /^the job's steps and settings hold more than 250000 values, over gnomon's limit of 250000 \(maxNodes\) for what it reads from a job; simplify the workflow/,
    );
  });

  it("fails with the limit when a context nests deeper than a workflow may", async (t) => {
    const fake = await startFakeGitHub(t);
    const job = fake.queueJob();
    const raw = fake.jobMessage(job.jobId, "v2");
    let payload: unknown = "leaf";
    for (let i = 0; i < 150; i++) payload = { t: 2, d: [{ k: "inner", v: payload }] };
    (raw["contextData"] as Record<string, unknown>)["inputs"] = payload;
    const msg = AgentJobRequestMessage.parse(raw);
    const d = describeJob(msg, "run-service");
    assert.ok(d.ok);
    const r = toJobRequest(msg, d.job, ctx);
    assert.ok(!r.ok);
    assert.match(r.reason, /^the inputs context of the job message nests more than 100 arrays and objects deep/);
  });

  it("keeps a job id that is a UUID and derives a stable one from a GUID without a version", () => {
    assert.equal(contractJobId("AF60F1ED-E283-516C-8D88-01CC3EE1C589"), "af60f1ed-e283-516c-8d88-01cc3ee1c589");
    const odd = "af60f1ed-e283-016c-0d88-01cc3ee1c589";
    assert.notEqual(contractJobId(odd), odd);
    assert.equal(contractJobId(odd), contractJobId(odd));
    assert.match(contractJobId(odd), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
