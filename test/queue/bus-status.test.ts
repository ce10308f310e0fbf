// A bus's status from its phase and connection, the words /healthz shows for the queue.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type BusCondition, busStatus } from "../../src/queue/bus-status.js";

const base: BusCondition = { phase: "running", connected: true, where: "amqp://rabbit:5672" };

describe("bus status", () => {
  const table: [string, Partial<BusCondition>, ReturnType<typeof busStatus>][] = [
    ["before start", { phase: "new", connected: false }, { state: "starting", detail: "not started yet" }],
    [
      "while connecting",
      { phase: "starting", connected: false },
      { state: "starting", detail: "connecting to amqp://rabbit:5672" },
    ],
    ["connected", {}, { state: "ready", detail: "connected" }],
    ["connection lost", { connected: false }, { state: "degraded", detail: "reconnecting" }],
    [
      "publishing blocked by a resource alarm",
      { blocked: "low on memory" },
      { state: "degraded", detail: "publishing blocked by rabbitmq (low on memory)" },
    ],
    [
      "lost and blocked: reconnecting first",
      { connected: false, blocked: "low on disk" },
      { state: "degraded", detail: "reconnecting" },
    ],
    ["stopping", { phase: "stopping" }, { state: "stopping", detail: "closing" }],
    ["stopped", { phase: "stopped", connected: false }, { state: "stopped", detail: "stopped" }],
    [
      "ended on its own",
      { phase: "stopped", connected: false, fatal: new Error("rabbitmq refused the credentials") },
      { state: "stopped", detail: "rabbitmq refused the credentials" },
    ],
  ];
  for (const [name, over, want] of table)
    it(`says ${want.state}${want.detail ? ` (${want.detail})` : ""} ${name}`, () => {
      assert.deepEqual(busStatus({ ...base, ...over }), want);
    });
});
