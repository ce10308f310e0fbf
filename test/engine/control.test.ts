// Conditions, status functions, continue-on-error, timeouts, cancellation and the job-level
// refusals, through the engine on the host executor.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { printed, runJob } from "./run-job.js";

const job = (steps: string, jobExtra = "") => `on: push
jobs:
  j:
    runs-on: x
${jobExtra}    steps:
${steps}`;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const until = Date.now() + withinMs;
  while (isAlive(pid) && Date.now() < until) await sleep(50);
  return !isAlive(pid);
}

describe("engine: conditions and results", () => {
  it("skips success() steps after a failure and runs failure() and always() ones", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: exit 1
      - run: echo skipped
      - if: failure()
        run: echo on failure
      - if: always()
        run: echo always \${{ job.status }}
      - if: success()
        run: echo never
      - if: cancelled()
        run: echo never`),
    );
    assert.deepEqual(r.conclusions, ["failure", "skipped", "success", "success", "skipped", "skipped"]);
    assert.deepEqual(printed(r.stepLines(3)), ["always failure"]);
    assert.equal(r.outcome.result, "failure");
  });

  it("evaluates conditions with the step's own env, as GitHub does", async (t) => {
    const r = await runJob(
      t,
      job(`      - if: env.GO == 'yes'
        env: { GO: "yes" }
        run: echo ran`),
    );
    assert.equal(r.finished(0).conclusion, "success");
  });

  it("keeps the outcome and turns the conclusion to success with continue-on-error", async (t) => {
    const r = await runJob(
      t,
      job(`      - id: bad
        run: exit 4
        continue-on-error: true
      - run: echo "\${{ steps.bad.outcome }} \${{ steps.bad.conclusion }} \${{ job.status }}"`),
    );
    assert.deepEqual([r.finished(0).outcome, r.finished(0).conclusion], ["failure", "success"]);
    assert.deepEqual(printed(r.stepLines(1)), ["failure success success"]);
    assert.equal(r.outcome.result, "success");
  });

  it("fails a step whose expression uses an unknown function, without crashing the job", async (t) => {
    // Tokens from a forge are not validated by our parser: the engine must cope at run time.
    const r = await runJob(
      t,
      job(`      - run: echo fine
      - run: echo later`),
      {
        editSpec: (spec) => ({
          ...spec,
          steps: spec.steps.map((s, i) =>
            i === 0 && s.kind === "run" ? { ...s, run: { type: 3, expr: "nosuchfn('x')" } } : s,
          ),
        }),
      },
    );
    assert.deepEqual(r.conclusions, ["failure", "skipped"]);
    assert.ok(
      r.stepLines(0).some((l) => /Unrecognized function: 'nosuchfn'/.test(l)),
      r.stepLines(0).join("\n"),
    );
    assert.equal(r.outcome.result, "failure");
  });

  it("fails a step whose if: cannot be evaluated, naming the condition", async (t) => {
    const r = await runJob(t, job(`      - run: echo x`), {
      editSpec: (spec) => ({ ...spec, steps: spec.steps.map((s) => ({ ...s, if: "fromJSON('{')" })) }),
    });
    assert.equal(r.finished(0).conclusion, "failure");
    assert.ok(
      r.stepLines(0).some((l) => l.includes("the step's condition `if: fromJSON('{')` could not be evaluated")),
    );
  });

  it("computes hashFiles() over the workspace's files on the executor", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: mkdir -p a/b && printf one > a/x.lock && printf two > a/b/y.lock && printf skip > a/b/z.txt
      - run: |
          echo "\${{ hashFiles('**/*.lock') }}"
          echo "[\${{ hashFiles('**/*.nothing') }}]"
          echo "\${{ hashFiles('a/x.lock') }}"`),
    );
    const { createHash } = await import("node:crypto");
    const sha = (s: string) => createHash("sha256").update(s).digest();
    // In sorted path order: a/b/y.lock ("two") before a/x.lock ("one").
    const both = createHash("sha256").update(sha("two")).update(sha("one")).digest("hex");
    const one = createHash("sha256").update(sha("one")).digest("hex");
    assert.deepEqual(printed(r.stepLines(1)), [both, "[]", one]);
  });
});

describe("engine: timeouts", () => {
  it("kills the whole process tree of a step that exceeds its timeout-minutes", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: |
          sh -c 'trap "" TERM; echo $$ > "$RUNNER_TEMP/grandchild.pid"; while :; do sleep 1; done' &
          echo $$ > "$RUNNER_TEMP/shell.pid"
          sleep 300
        timeout-minutes: 0.02
      - if: always()
        run: echo "after \${{ job.status }}"`),
    );
    assert.equal(r.finished(0).conclusion, "failure");
    assert.ok(r.stepLines(0).some((l) => /has timed out after 0.02 minutes/.test(l)));
    const temp = r.executor.platform.tempDir;
    const { readFile } = await import("node:fs/promises");
    const grandchild = Number(await readFile(`${temp}/grandchild.pid`, "utf8"));
    const shell = Number(await readFile(`${temp}/shell.pid`, "utf8"));
    assert.ok(await gone(shell, 5_000), "the step's shell is gone");
    assert.ok(await gone(grandchild, 5_000), "the TERM-ignoring grandchild is gone");
    assert.deepEqual(printed(r.stepLines(1)), ["after failure"]);
  });

  it("fails a job that exceeds its timeout-minutes, still running always() steps", async (t) => {
    const r = await runJob(
      t,
      job(
        `      - run: sleep 300
      - run: echo never
      - if: always()
        run: echo cleanup`,
        "    timeout-minutes: 0.02\n",
      ),
    );
    assert.equal(r.outcome.result, "failure");
    assert.match(r.outcome.reason ?? "", /exceeded the maximum execution time of 0.02 minutes/);
    assert.deepEqual(r.conclusions, ["cancelled", "skipped", "success"]);
  });
});

describe("engine: cancellation", () => {
  it("stops the running step, runs always() and cancelled() steps and post steps, and ends cancelled", async (t) => {
    const controller = new AbortController();
    const r = await runJob(
      t,
      job(`      - uses: ./post-action
      - run: echo started; sleep 300
      - run: echo never
      - if: always()
        run: echo "always ran, job \${{ job.status }}"
      - if: cancelled()
        run: echo cancelled ran`),
      {
        signal: controller.signal,
        before: async (ex) => {
          const dir = `${ex.platform.workDir}/repo/repo/post-action`;
          await ex.writeFile(`${dir}/action.yml`, "runs:\n  using: node20\n  main: main.js\n  post: post.js\n");
          await ex.writeFile(`${dir}/main.js`, "");
          await ex.writeFile(`${dir}/post.js`, "console.log('post ran')");
        },
        onEvent: (e) => {
          if (e.kind === "log" && e.lines.some((l) => l.text === "started"))
            controller.abort(new Error("cancelled by the test"));
        },
      },
    );
    assert.equal(r.outcome.result, "cancelled");
    assert.equal(r.outcome.reason, "cancelled by the test");
    assert.deepEqual(r.conclusions, ["success", "cancelled", "skipped", "success", "success"]);
    assert.deepEqual(printed(r.stepLines(3)), ["always ran, job cancelled"]);
    assert.deepEqual(printed(r.stepLines(0, "post")), ["post ran"]);
    const last = r.events.at(-1);
    assert.equal(last?.kind, "job-finished");
  });

  it("ends cancelled without running steps when the signal is aborted before the job starts", async (t) => {
    const controller = new AbortController();
    controller.abort(new Error("cancelled on Forgejo"));
    const r = await runJob(t, job(`      - run: echo never`), { signal: controller.signal });
    assert.equal(r.outcome.result, "cancelled");
    assert.equal(r.outcome.reason, "cancelled on Forgejo");
    assert.ok(!r.lines.includes("never"));
  });
});

describe("engine: refusals", () => {
  it("fails a job that asks for a container or services, saying why and what to do", async (t) => {
    for (const extra of ["    container: alpine:3\n", "    services:\n      db: { image: postgres }\n"]) {
      const r = await runJob(t, job(`      - run: echo never`, extra));
      assert.equal(r.outcome.result, "failure");
      assert.match(r.outcome.reason ?? "", /no container runtime there\. Remove it and pick a runs-on label/);
      assert.ok(!r.events.some((e) => e.kind === "step-started"));
    }
  });

  it("runs a container job's steps on a host executor when asked, with the container's env and sh", async (t) => {
    const r = await runJob(
      t,
      job(
        `      - run: 'echo "$TEST_ENV \${BASH_VERSION:-no-bash}"'`,
        "    container:\n      image: node:20\n      env: { TEST_ENV: from-container }\n",
      ),
      { jobContainer: "run-on-executor" },
    );
    assert.equal(r.outcome.result, "success");
    assert.deepEqual(printed(r.stepLines(0)), ["from-container no-bash"]);
    assert.ok(r.lines.some((l) => l.startsWith("##[warning]") && l.includes("job container node:20")));
  });
});
