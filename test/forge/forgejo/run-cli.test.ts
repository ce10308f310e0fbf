// `gnomon forgejo run` as shipped (dist/gnomon.mjs), against the fake Forgejo and the real RabbitMQ:
// this test plays the orchestrator on the bus, as a real one would, and checks what Forgejo holds.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { JobEvent, JobEventBody } from "../../../src/contract/job-event.js";
import { openSecrets } from "../../../src/contract/sealed-secrets.js";
import { AmqpBus } from "../../../src/queue/amqp.js";
import { amqpTopology } from "../../../src/queue/amqp-topology.js";
import type { JobDelivery } from "../../../src/queue/bus.js";
import { startFakeForgejo } from "../../fakes/forgejo-server.js";
import { job } from "../../queue/helpers.js";
import { GNOMON_BIN, registerForgejoWithCli } from "../../support/cli.js";
import { deleteTopology, leftovers, queuePolicy, RABBIT_URL, readyMessages, testPrefix } from "../../support/rabbit.js";
import { workflow } from "./harness.js";

function startGnomon(
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; exit: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [GNOMON_BIN, ...args], {
    cwd,
    env: { PATH: process.env["PATH"], HOME: process.env["HOME"], ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, exit, stderr: () => err };
}

// Never the production prefix ("gnomon"): the broker is shared with other tests and installations.
const RUN = `gt-forgejo-cli-${process.pid}`;

describe("gnomon forgejo run", () => {
  after(async () => {
    assert.deepEqual(await leftovers(RUN), [], "every test deleted its queues and exchanges");
  });

  it("takes a task, queues it on RabbitMQ sealed, and reports the orchestrator's events back to Forgejo", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-run-"));
    const image = `forgejo-cli-${randomUUID().slice(0, 8)}`;
    await registerForgejoWithCli(forgejo, `linux:vm:${image}`, cwd);
    writeFileSync(join(cwd, "gnomon.yaml"), "forgejo:\n  fetchInterval: 100ms\n  reportInterval: 100ms\n");
    const key = randomBytes(32);

    const prefix = testPrefix(RUN);

    const orchestrator = new AmqpBus({ url: RABBIT_URL, prefix, connectionName: "test-orchestrator" });
    await orchestrator.start();
    t.after(() => orchestrator.stop(AbortSignal.timeout(5_000)));
    const jobs: JobDelivery[] = [];
    const consumer = await orchestrator.consumeJobs([image], 1, (j) => jobs.push(j));
    t.after(() => consumer.cancel());

    const gnomon = startGnomon(["forgejo", "run"], cwd, {
      AMQP_URL: RABBIT_URL,
      GNOMON_AMQP_PREFIX: prefix,
      GNOMON_CLUSTER_KEY: key.toString("hex"),
      GNOMON_LOG_LEVEL: "warn",
    });
    t.after(async () => {
      gnomon.child.kill("SIGKILL");
      await gnomon.exit;
    });
    // Last (hooks run in the order added), once gnomon and the test's bus are gone: everything under
    // the prefix, also a cancel queue a killed gnomon could not delete.
    t.after(() => deleteTopology(prefix));

    const jobId = forgejo.queueJob({ workflow: workflow(1), secrets: { API_KEY: "k-123" } });
    const job = await forgejo.waitFor(() => jobs[0], "the job on RabbitMQ", 30_000);
    const task = forgejo.taskOfJob(jobId)!;
    const secrets = openSecrets(job.request.secrets, key, job.request.id);
    assert.equal(secrets["GITHUB_TOKEN"], task.token);
    assert.equal(secrets["API_KEY"], "k-123");
    assert.equal(job.request.runsOn, image);

    let seq = 0;
    const emit = (body: JobEventBody) =>
      orchestrator.publishEvent(job.request.replyTo, {
        v: 1,
        jobId: job.request.id,
        seq: seq++,
        t: Date.now(),
        ...body,
      } as JobEvent);
    await emit({ kind: "accepted", orchestrator: "test" });
    await emit({ kind: "step-started", step: 0, stage: "main", name: "step 1" });
    await emit({ kind: "log", step: 0, stage: "main", lines: [{ t: Date.now(), text: "hello from the VM" }] });
    await emit({
      kind: "step-finished",
      step: 0,
      stage: "main",
      outcome: "success",
      conclusion: "success",
      outputs: {},
    });
    await emit({ kind: "job-finished", result: "success", outputs: {} });
    await job.ack();

    const done = await forgejo.waitFor(
      () => {
        const x = forgejo.taskOfJob(jobId);
        return x?.status === "success" && x.logArchived ? x : undefined;
      },
      "the task to succeed",
      30_000,
    );
    const s = done.steps[0]!;
    assert.deepEqual(done.rows.slice(s.logIndex, s.logIndex + s.logLength), ["hello from the VM"]);

    gnomon.child.kill("SIGTERM");
    assert.equal(await gnomon.exit, 0, gnomon.stderr());
  });
  it("fails a task whose job RabbitMQ refuses (a negative confirm), with the broker's refusal as its last line", async (t) => {
    const forgejo = await startFakeForgejo(t);
    const cwd = mkdtempSync(join(tmpdir(), "gnomon-run-"));
    const image = `forgejo-cli-${randomUUID().slice(0, 8)}`;
    await registerForgejoWithCli(forgejo, `linux:vm:${image}`, cwd);
    writeFileSync(join(cwd, "gnomon.yaml"), "forgejo:\n  fetchInterval: 100ms\n  reportInterval: 100ms\n");
    const prefix = testPrefix(RUN);
    // An operator's length limit on this test's queues only; a quorum queue takes one message over it.
    await queuePolicy(t, prefix, { "max-length": 0, overflow: "reject-publish" });
    const filler = new AmqpBus({ url: RABBIT_URL, prefix, connectionName: "test-filler" });
    await filler.start();
    t.after(() => filler.stop(AbortSignal.timeout(5_000)));
    await filler.publishJob(job(image)); // the queue is full from now on
    const queue = amqpTopology(prefix).jobQueue(image);

    const gnomon = startGnomon(["forgejo", "run"], cwd, {
      AMQP_URL: RABBIT_URL,
      GNOMON_AMQP_PREFIX: prefix,
      GNOMON_CLUSTER_KEY: randomBytes(32).toString("hex"),
      GNOMON_LOG_LEVEL: "warn",
    });
    t.after(async () => {
      gnomon.child.kill("SIGKILL");
      await gnomon.exit;
    });
    t.after(() => deleteTopology(prefix));

    const jobId = forgejo.queueJob({ workflow: workflow(1) });
    const task = await forgejo.waitFor(
      () => {
        const x = forgejo.taskOfJob(jobId);
        return x?.status === "failure" && x.logArchived ? x : undefined;
      },
      "the task to fail",
      30_000,
    );
    assert.match(
      task.rows.at(-1) ?? "",
      new RegExp(
        `^gnomon could not queue the job: RabbitMQ refused message [0-9a-f-]{36} for "${queue.replace(/\./g, "\\.")}"`,
      ),
      task.rows.join("\n"),
    );
    assert.equal(await readyMessages(queue), 1, "only the filler is queued: the refused job is not");
    gnomon.child.kill("SIGTERM");
    assert.equal(await gnomon.exit, 0, gnomon.stderr());
  });
});
