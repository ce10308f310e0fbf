// VM states and their pure transitions.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { laterPhase, transition, type VmState } from "../../src/vm/machine-state.js";

const booting: VmState = { t: "booting", pid: 42, sshPort: 40022, phase: "booting" };

describe("VM state transitions", () => {
  it("goes from creating to booting when QEMU is spawned", () => {
    assert.deepEqual(transition({ t: "creating" }, { e: "spawned", pid: 42, sshPort: 40022 }), booting);
  });

  it("moves boot phases forward only", () => {
    const net = transition(booting, { e: "phase", phase: "network" });
    assert.deepEqual(net, { ...booting, phase: "network" });
    assert.deepEqual(transition(net, { e: "phase", phase: "kernel" }), net, "a late kernel sighting does not go back");
    assert.equal(laterPhase("ssh", "booting"), "ssh");
    assert.equal(laterPhase("kernel", "ssh"), "ssh");
  });

  it("becomes ready on SSH login and keeps the pid and port", () => {
    assert.deepEqual(transition(booting, { e: "ssh-ready" }), { t: "ready", pid: 42, sshPort: 40022 });
  });

  it("records why QEMU ended: boot failure, guest exit, or the reason it was stopped", () => {
    assert.deepEqual(transition(booting, { e: "exited", exitCode: 1 }), { t: "gone", why: "boot-failed", exitCode: 1 });
    const ready: VmState = { t: "ready", pid: 42, sshPort: 40022 };
    assert.deepEqual(transition(ready, { e: "exited", exitCode: 0 }), { t: "gone", why: "guest-exited", exitCode: 0 });
    const stopping = transition(ready, { e: "stop", why: "cancelled" });
    assert.deepEqual(stopping, { t: "stopping", pid: 42, why: "cancelled" });
    assert.deepEqual(transition(stopping, { e: "exited", exitCode: null }), {
      t: "gone",
      why: "cancelled",
      exitCode: null,
    });
  });

  it("ends a VM stopped before QEMU started without waiting for an exit", () => {
    assert.deepEqual(transition({ t: "creating" }, { e: "stop", why: "cancelled" }), {
      t: "gone",
      why: "cancelled",
      exitCode: null,
    });
  });

  it("ignores events that do not apply to the state", () => {
    const gone: VmState = { t: "gone", why: "destroyed", exitCode: 0 };
    assert.equal(transition(gone, { e: "stop", why: "cancelled" }), gone);
    assert.equal(transition(gone, { e: "exited", exitCode: 1 }), gone);
    assert.equal(transition(gone, { e: "ssh-ready" }), gone);
    const stopping: VmState = { t: "stopping", pid: 1, why: "destroyed" };
    assert.equal(transition(stopping, { e: "stop", why: "cancelled" }), stopping, "the first reason stays");
  });

  it("boots again after QEMU gave up its port at start (a respawn)", () => {
    const failed = transition(booting, { e: "exited", exitCode: 1 });
    assert.deepEqual(transition(failed, { e: "spawned", pid: 43, sshPort: 40023 }), {
      t: "booting",
      pid: 43,
      sshPort: 40023,
      phase: "booting",
    });
  });
});
