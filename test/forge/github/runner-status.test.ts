// What a GitHub runner says about itself (status(), what /healthz lists under "runners"): ready
// while it polls, degraded with GitHub's error while polls fail (ready again once they work), and
// stopped with "register again" once GitHub deleted the registration.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startFakeGitHub } from "../../fakes/github-server.js";
import { until } from "../../support/qemu-processes.js";
import { startRunner } from "./harness.js";

describe("GitHub runner status", () => {
  it("is ready while it polls, degraded while GitHub's polls fail, ready again after", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 100 });
    const { runner, registration } = await startRunner(t, fake);
    await fake.waitFor(() => fake.calls("/broker/message").length > 0, "polling");
    const ready = runner.status();
    assert.equal(ready.state, "ready");
    assert.match(ready.detail ?? "", new RegExp(`\\(id ${registration.settings.agentId}\\) listening for jobs at `));

    fake.faults.pollErrors = 1_000_000;
    const down = await until(
      () => {
        const s = runner.status();
        return s.state === "degraded" ? s : undefined;
      },
      "the runner degraded",
      10_000,
      20,
    );
    assert.match(down.detail, /^polling for jobs at .+ fails since \d{4}-\d\d-\d\dT[\d:.]+Z: .*503/);

    fake.faults.pollErrors = 0;
    await until(() => runner.status().state === "ready", "ready again once GitHub answers", 10_000, 20);
  });

  it("is stopped, saying to register again, once GitHub deleted the registration", async (t) => {
    const fake = await startFakeGitHub(t, { flow: "v2", pollHoldMs: 100 });
    const { runner, registration } = await startRunner(t, fake);
    await fake.waitFor(() => fake.calls("/broker/message").length > 0, "polling");
    fake.deleteRunner(registration.settings.agentId);
    await runner.done;
    const gone = await until(
      () => {
        const s = runner.status();
        return s.state === "stopped" ? s : undefined;
      },
      "the runner stopped",
      5_000,
      20,
    );
    assert.match(gone.detail ?? "", /no longer exists .*run `gnomon github register` again/);
  });
});
