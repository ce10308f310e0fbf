// Run steps through the engine on the host executor: contexts, env, outputs, shells, workflow
// commands, env files, masking and the events a job emits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { printed, runJob } from "./run-job.js";

const job = (steps: string, extra = "") => `on: push
${extra}
jobs:
  j:
    runs-on: x
    steps:
${steps}`;

describe("engine: run steps", () => {
  it("layers env as GitHub does: workflow < job < GITHUB_ENV < step, and sets the default variables", async (t) => {
    const r = await runJob(
      t,
      `on: push
env: { W: workflow, OVER: workflow }
jobs:
  j:
    runs-on: x
    env: { J: job, OVER: job, FROM_EXPR: "job-\${{ github.repository }}" }
    steps:
      - run: echo "OVER=from-env-file" >> "$GITHUB_ENV"
      - run: echo "$W $J $OVER $FROM_EXPR"
      - run: echo "$OVER"
        env: { OVER: step }
      - run: echo "$CI $GITHUB_ACTIONS $GITHUB_REPOSITORY $GITHUB_SHA $GITHUB_REF $GITHUB_JOB $GITHUB_ACTOR $RUNNER_OS $GITHUB_EVENT_NAME"
      - run: test "$GITHUB_WORKSPACE" = "$PWD" && test -d "$RUNNER_TEMP" && test -f "$GITHUB_EVENT_PATH" && echo paths-ok
      - run: echo "\${{ env.OVER }} \${{ runner.os }} \${{ job.status }} \${{ github.job }}"
`,
    );
    assert.equal(r.outcome.result, "success");
    assert.deepEqual(printed(r.stepLines(1)), ["workflow job from-env-file job-octo/repo"]);
    assert.deepEqual(printed(r.stepLines(2)), ["step"]);
    assert.deepEqual(printed(r.stepLines(3)), [
      "true true octo/repo 0123456789abcdef0123456789abcdef01234567 refs/heads/main j mona Linux push",
    ]);
    assert.deepEqual(printed(r.stepLines(4)), ["paths-ok"]);
    assert.deepEqual(printed(r.stepLines(5)), ["from-env-file Linux success j"]);
  });

  it("gives github.token from the GITHUB_TOKEN secret to expressions, never to the environment", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: |
          test -z "$GITHUB_TOKEN" && echo no-env-token
          test "\${{ github.token }}" = "\${{ secrets.GITHUB_TOKEN }}" && echo same`),
      { secrets: { GITHUB_TOKEN: "ghs_thejobtoken123" } },
    );
    assert.deepEqual(printed(r.stepLines(0)), ["no-env-token", "same"]);
    assert.ok(!r.lines.some((l) => l.includes("ghs_thejobtoken123")));
  });

  it("collects outputs from GITHUB_OUTPUT (with heredocs) and set-output into the steps context and job outputs", async (t) => {
    const r = await runJob(
      t,
      `on: push
jobs:
  j:
    runs-on: x
    outputs:
      a: \${{ steps.one.outputs.a }}
      multi: \${{ steps.one.outputs.multi }}
      legacy: \${{ steps.two.outputs.legacy }}
    steps:
      - id: one
        run: |
          echo "a=1" >> "$GITHUB_OUTPUT"
          { echo "multi<<EOF_X"; echo "line 1"; echo "line 2"; echo "EOF_X"; } >> "$GITHUB_OUTPUT"
      - id: two
        run: echo "::set-output name=legacy::old way"
      - run: echo "\${{ steps.one.outputs.a }}|\${{ steps.two.outputs.legacy }}|\${{ steps.one.outcome }}"
`,
    );
    assert.deepEqual(r.finished(0).outputs, { a: "1", multi: "line 1\nline 2" });
    assert.deepEqual(printed(r.stepLines(2)), ["1|old way|success"]);
    assert.deepEqual(r.outcome.outputs, { a: "1", multi: "line 1\nline 2", legacy: "old way" });
  });

  it("drops a job output that would reveal a secret", async (t) => {
    const r = await runJob(
      t,
      `on: push
jobs:
  j:
    runs-on: x
    outputs: { leak: "\${{ secrets.S }}", fine: ok }
    steps: [{ run: "true" }]
`,
      { secrets: { S: "s3cr3t-value" } },
    );
    assert.deepEqual(r.outcome.outputs, { fine: "ok" });
    assert.ok(r.lines.includes("##[warning]Skip output 'leak' since it may contain secret."));
  });

  it("prepends GITHUB_PATH entries, newest first, for later steps", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: |
          mkdir -p "$RUNNER_TEMP/b1" "$RUNNER_TEMP/b2"
          printf '#!/bin/sh\\necho first\\n' > "$RUNNER_TEMP/b1/tool"; printf '#!/bin/sh\\necho second\\n' > "$RUNNER_TEMP/b2/tool"
          chmod +x "$RUNNER_TEMP/b1/tool" "$RUNNER_TEMP/b2/tool"
          echo "$RUNNER_TEMP/b1" >> "$GITHUB_PATH"
      - run: echo "$RUNNER_TEMP/b2" >> "$GITHUB_PATH" && tool
      - run: tool`),
    );
    assert.deepEqual(printed(r.stepLines(1)), ["first"]);
    assert.deepEqual(printed(r.stepLines(2)), ["second"]);
  });

  it("fails a step whose env file is malformed, saying why", async (t) => {
    const r = await runJob(t, job(`      - run: printf 'K<<EOF\\nvalue\\n' >> "$GITHUB_ENV"`));
    assert.equal(r.outcome.result, "failure");
    assert.ok(r.stepLines(0).some((l) => /Matching delimiter not found 'EOF'/.test(l)));
  });

  it("runs bash with -e -o pipefail, sh with -e, python, and custom {0} shells", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: false | true; echo "pipefail did not stop me"
        continue-on-error: true
        shell: bash
      - run: false | true; echo "default bash has no pipefail"
      - run: 'test -z "\${BASH_VERSION:-}" && echo "plain sh"'
        shell: sh
      - run: import sys; print("python", sys.version_info[0])
        shell: python
      - run: "hello from a custom shell"
        shell: cat {0}
      - run: echo x
        shell: perl`),
    );
    assert.deepEqual(r.conclusions, ["success", "success", "success", "success", "success", "failure"]);
    assert.equal(r.finished(0).outcome, "failure", "bash -o pipefail fails the pipeline");
    assert.deepEqual(printed(r.stepLines(1)), ["default bash has no pipefail"]);
    assert.deepEqual(printed(r.stepLines(2)), ["plain sh"]);
    assert.deepEqual(printed(r.stepLines(3)), ["python 3"]);
    assert.deepEqual(printed(r.stepLines(4)), ["hello from a custom shell"]);
    assert.ok(r.stepLines(5).some((l) => l.includes("invalid shell option 'perl'")));
  });

  it("honours working-directory and defaults.run, job over workflow", async (t) => {
    const r = await runJob(
      t,
      `on: push
defaults: { run: { shell: bash, working-directory: nope } }
jobs:
  j:
    runs-on: x
    defaults: { run: { working-directory: sub } }
    steps:
      - run: mkdir -p sub/deeper
        working-directory: .
      - run: echo "$0 \${PWD##*/}"
      - run: echo "\${PWD##*/}"
        working-directory: sub/deeper
      - run: echo never
        working-directory: missing-dir
`,
    );
    assert.match(printed(r.stepLines(1))[0] ?? "", /\.sh sub$/);
    assert.deepEqual(printed(r.stepLines(2)), ["deeper"]);
    assert.equal(r.finished(3).conclusion, "failure");
    assert.ok(r.stepLines(3).some((l) => /working directory '.*missing-dir'. No such file or directory/.test(l)));
  });

  it("carries out workflow commands: annotations with location, groups, masks, debug only when asked", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: |
          echo "::error file=app.js,line=10,col=3,title=Boom::it broke"
          echo "::warning::careful"
          echo "::notice::fyi"
          echo "::group::My group"
          echo inside
          echo "::endgroup::"
          echo "::debug::hidden"
          echo "::add-mask::masked-value-1"
          echo "now masked-value-1 is gone"`),
    );
    const annotations = r.events.filter((e) => e.kind === "annotation");
    assert.deepEqual(
      annotations.map((a) => (a.kind === "annotation" ? [a.level, a.message, a.file, a.line, a.col, a.title] : [])),
      [
        ["error", "it broke", "app.js", 10, 3, "Boom"],
        ["warning", "careful", undefined, undefined, undefined, undefined],
        ["notice", "fyi", undefined, undefined, undefined, undefined],
      ],
    );
    const lines = r.stepLines(0);
    assert.ok(lines.includes("##[group]My group") && lines.includes("inside"));
    assert.ok(!lines.includes("##[debug]hidden"), "debug lines need ACTIONS_STEP_DEBUG");
    assert.ok(lines.includes("now *** is gone"));
    assert.equal(r.outcome.result, "success", "an ::error:: annotation alone does not fail the step");
  });

  it("shows ::debug:: lines when ACTIONS_STEP_DEBUG is set", async (t) => {
    const r = await runJob(t, job(`      - run: echo "::debug::visible now"`), {
      secrets: { ACTIONS_STEP_DEBUG: "true" },
    });
    assert.ok(r.stepLines(0).includes("##[debug]visible now"));
  });

  it("suspends command processing between ::stop-commands:: and its token", async (t) => {
    const r = await runJob(
      t,
      job(`      - id: s
        run: |
          echo "::stop-commands::resume-9f1c"
          echo "::set-output name=ignored::yes"
          echo "::add-mask::not-a-mask"
          echo "::resume-9f1c::"
          echo "::set-output name=taken::yes"
          echo "not-a-mask is printed"`),
    );
    const lines = r.stepLines(0);
    assert.ok(lines.includes("::set-output name=ignored::yes"), "a command while stopped is printed as is");
    assert.ok(lines.includes("::add-mask::not-a-mask"));
    assert.ok(lines.includes("not-a-mask is printed"), "the mask was not applied");
    assert.deepEqual(r.finished(0).outputs, { taken: "yes" });
  });

  it("refuses set-env and add-path unless ACTIONS_ALLOW_UNSECURE_COMMANDS is true", async (t) => {
    const off = await runJob(t, job(`      - run: echo "::set-env name=A::1"`));
    assert.equal(off.finished(0).conclusion, "failure");
    assert.ok(off.stepLines(0).some((l) => l.includes("The `set-env` command is disabled")));
    const on = await runJob(
      t,
      job(`      - run: echo "::set-env name=A::1"; echo "::add-path::/opt/zz"
      - run: echo "$A $PATH"`),
      { baseEnv: { ACTIONS_ALLOW_UNSECURE_COMMANDS: "true" } },
    );
    assert.match(printed(on.stepLines(1))[0] ?? "", /^1 \/opt\/zz:/);
  });

  it("emits step-started and step-finished for every step, skipped ones too, with a masked name", async (t) => {
    const r = await runJob(
      t,
      job(`      - name: deploy with \${{ secrets.S }}
        run: "true"
      - if: false
        run: echo never
      - run: exit 2`),
      { secrets: { S: "name-secret" } },
    );
    const kinds = r.events
      .filter((e) => e.kind !== "log" && e.kind !== "annotation")
      .map((e) =>
        e.kind === "step-started"
          ? `start ${e.step} ${e.name}`
          : e.kind === "step-finished"
            ? `end ${e.step} ${e.conclusion}`
            : e.kind,
      );
    assert.deepEqual(kinds, [
      "start 0 deploy with ***",
      "end 0 success",
      "start 1 Run echo never",
      "end 1 skipped",
      "start 2 Run exit 2",
      "end 2 failure",
      "job-finished",
    ]);
    assert.equal(r.outcome.reason, "the step 'Run exit 2' failed");
    for (const e of r.events) if (e.kind === "log") for (const l of e.lines) assert.ok(l.t > 0);
  });
});

describe("engine: masking", () => {
  const secret = "Sup3r-S3cret-Value";
  const multi = "first-line-of-key\nsecond-line-of-key\nthird-line-of-key";

  it("never shows a secret, whether printed whole, in pieces, across lines, or encoded", async (t) => {
    const r = await runJob(
      t,
      job(`      - run: |
          echo "whole: $S"
          printf 'pieces: Sup3r-'; sleep 0.2; printf 'S3cret-'; sleep 0.2; printf 'Value\\n'
          printf '%s\\n' "$M"
          echo "line by line:"; printf '%s\\n' "$M" | while read -r l; do echo "$l"; done
          printf '%s' "$S" | base64
          printf 'x%s' "$S" | base64
          echo "::warning::warning with $S"
          echo "$S" >&2
        env: { S: "\${{ secrets.S }}", M: "\${{ secrets.M }}" }`),
      { secrets: { S: secret, M: multi } },
    );
    const all = [...r.lines, ...r.events.map((e) => JSON.stringify(e))].join("\n");
    for (const needle of [
      secret,
      "first-line-of-key",
      "second-line-of-key",
      "third-line-of-key",
      Buffer.from(secret).toString("base64"),
    ])
      assert.ok(!all.includes(needle), `${needle} does not appear`);
    assert.ok(r.stepLines(0).includes("whole: ***"));
    assert.ok(r.stepLines(0).includes("pieces: ***"));
  });
});
