// The run service (spec 6.1): acquirejob (the job message, once, to the runner it was assigned to),
// renewjob (the lock) and completejob (the result, outputs, step results and annotations), with the
// faults a test injects (lost acquire races, failing renewals and completions, slow answers).
import type { IncomingMessage } from "node:http";
import type { GitHubBooks } from "./books.js";
import { HttpError, noRoute, runError } from "./http-error.js";
import { deliveredMessage } from "./job-message.js";
import type { FakeJob } from "./shapes.js";

/** The routes under /run/. */
export async function runServiceRoute(gh: GitHubBooks, req: IncomingMessage, url: URL, raw: Buffer): Promise<unknown> {
  const m = req.method ?? "GET";
  const p = url.pathname;
  if (p === "/run/acquirejob" && m === "POST") return acquire(gh, req, raw);
  if (p === "/run/renewjob" && m === "POST") return renew(gh, req, raw);
  if (p === "/run/completejob" && m === "POST") return complete(gh, req, raw);
  throw noRoute(m, p);
}

function acquire(gh: GitHubBooks, req: IncomingMessage, raw: Buffer): unknown {
  const runner = gh.runnerOf(req);
  const body = gh.json(raw);
  const job = [...gh.jobs.values()].find((j) => j.runnerRequestId === body["jobMessageId"]);
  if (!job) throw runError(404, `job message ${String(body["jobMessageId"])} not found`);
  job.acquireAttempts += 1;
  if (gh.faults.acquireConflicts > 0) {
    // Another runner won the race for this job.
    gh.faults.acquireConflicts -= 1;
    job.state = "acquired";
    job.runnerId = -1;
    job.lockedUntil = Number.POSITIVE_INFINITY;
    throw runError(409, "job assignment is invalid: MissingKey");
  }
  if (job.runnerId !== runner.id || job.state !== "assigned")
    throw runError(409, "job assignment is invalid: MissingKey");
  if (typeof body["runnerOS"] !== "string") throw runError(422, "runnerOS is required");
  job.state = "acquired";
  job.lockedUntil = Date.now() + gh.opts.lockMs;
  return deliveredMessage(gh, job, "v2");
}

function renew(gh: GitHubBooks, req: IncomingMessage, raw: Buffer): unknown {
  const job = gh.jobByToken(req);
  const body = gh.json(raw);
  if (body["planId"] !== job.planId || body["jobId"] !== job.jobId)
    throw runError(400, "planId/jobId do not match the token");
  if (job.state !== "acquired") throw runError(404, `job ${job.jobId} not found`);
  if (gh.faults.renewFailing) throw new HttpError(500, { message: "internal error" });
  job.lockedUntil = Date.now() + gh.opts.lockMs;
  job.renewals.push(Date.now());
  return { lockedUntil: new Date(job.lockedUntil).toISOString() };
}

async function complete(gh: GitHubBooks, req: IncomingMessage, raw: Buffer): Promise<unknown> {
  if (gh.faults.completeErrors > 0) {
    gh.faults.completeErrors -= 1;
    gh.completeRefused += 1;
    throw runError(500, "internal error");
  }
  const job = gh.jobByToken(req);
  const b = gh.json(raw);
  if (job.state !== "acquired") throw runError(404, `job ${job.jobId} not found`);
  const conclusions = ["succeeded", "succeededWithIssues", "failed", "canceled", "skipped", "abandoned"];
  if (!conclusions.includes(String(b["conclusion"])))
    throw runError(400, `conclusion ${String(b["conclusion"])} is not valid`);
  job.conclusion = String(b["conclusion"]);
  job.outputs = (b["outputs"] as FakeJob["outputs"]) ?? {};
  job.stepResults = (b["stepResults"] as Record<string, unknown>[]) ?? [];
  job.annotations = (b["annotations"] as Record<string, unknown>[]) ?? [];
  gh.completed(job);
  if (gh.faults.completeAnswerDelayMs > 0)
    await new Promise((resolve) => setTimeout(resolve, gh.faults.completeAnswerDelayMs));
  return { status: 200, raw: "" };
}
