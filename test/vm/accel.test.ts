// The accelerator probe: KVM only where it really runs a guest faster than TCG.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseAccel, probeAccel, timeProbeGuest } from "../../src/vm/accel.js";

describe("acceleration probe", () => {
  it("runs its probe guest to the end under TCG and times it", async () => {
    const run = await timeProbeGuest("qemu-system-x86_64", "tcg", 60_000);
    assert.equal(run.detail, "finished");
    assert.ok(run.ms !== undefined && run.ms > 0);
  });

  it("gives up on a guest that does not finish within the budget", async () => {
    const run = await timeProbeGuest("qemu-system-x86_64", "tcg", 1);
    assert.equal(run.ms, undefined);
    assert.match(run.detail, /did not finish the probe guest within 1 ms/);
  });

  it("says why when QEMU cannot be started", async () => {
    const run = await timeProbeGuest("qemu-system-nonexistent", "tcg", 5_000);
    assert.equal(run.ms, undefined);
    assert.match(run.detail, /could not start/);
  });

  it("uses TCG without probing when the KVM device is missing", async () => {
    const choice = await probeAccel("qemu-system-x86_64", "/nonexistent/kvm");
    assert.deepEqual(choice, { accel: "tcg", why: "/nonexistent/kvm is missing or not accessible" });
  });

  it("picks KVM only when it finished sooner than TCG", () => {
    assert.equal(chooseAccel({ ms: 400, detail: "finished" }, { ms: 120, detail: "finished" }).accel, "kvm");
    const slow = chooseAccel({ ms: 400, detail: "finished" }, { ms: 5_400, detail: "finished" });
    assert.equal(slow.accel, "tcg");
    assert.match(slow.why, /no faster than TCG \(400 ms\): nested or emulated KVM/);
    const stuck = chooseAccel(
      { ms: 400, detail: "finished" },
      { detail: "did not finish the probe guest within 1000 ms" },
    );
    assert.equal(stuck.accel, "tcg");
    assert.match(stuck.why, /KVM did not finish the probe guest within 1000 ms \(TCG took 400 ms\)/);
    const aborted = chooseAccel({ ms: 400, detail: "finished" }, { detail: "did not start: KVM_RUN failed" });
    assert.equal(aborted.accel, "tcg");
  });

  it("still picks a working KVM when TCG could not give a figure", () => {
    assert.equal(chooseAccel({ detail: "did not finish" }, { ms: 90, detail: "finished" }).accel, "kvm");
  });
});
