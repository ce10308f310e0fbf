// The Results service (spec 6.4, 6.5): Twirp step updates (ordered by change_order; older ones
// answered ok and dropped), signed blob URLs for step and job logs, the blobs themselves (each
// written once) and their metadata; with the outage faults a test injects.
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { GitHubBooks } from "./books.js";
import { HttpError } from "./http-error.js";

/** One Twirp call of /results/twirp/<method>, after `faults.results` was applied. */
export async function resultsRoute(
  gh: GitHubBooks,
  req: IncomingMessage,
  method: string,
  raw: Buffer,
  closed: AbortSignal,
): Promise<unknown> {
  await resultsFault(gh, closed);
  return results(gh, req, method, raw);
}

function results(gh: GitHubBooks, req: IncomingMessage, method: string, raw: Buffer): unknown {
  const job = gh.jobByToken(req);
  const b = gh.json(raw);
  if (b["workflow_run_backend_id"] !== job.planId || b["workflow_job_run_backend_id"] !== job.jobId)
    throw new HttpError(400, { code: "invalid_argument", msg: "backend ids do not match the token" });
  const signed = (name: string) => {
    const sig = randomBytes(8).toString("hex");
    gh.blobSigs.set(name, sig);
    return `${gh.url}/blob/${name}?sv=2023-11-03&sig=${sig}`;
  };
  switch (method) {
    case "github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate": {
      const order = Number(b["change_order"]);
      if (!Number.isSafeInteger(order) || order < 1)
        throw new HttpError(400, { code: "invalid_argument", msg: "change_order must be a positive integer" });
      const steps = b["steps"] as Record<string, unknown>[];
      for (const s of steps)
        if (![0, 3, 5, 6].includes(Number(s["status"])) || ![0, 2, 3, 4, 7].includes(Number(s["conclusion"])))
          throw new HttpError(400, { code: "invalid_argument", msg: "status or conclusion out of range" });
      // change_order orders a job's updates (the official runner counts from 1 per process, with
      // gaps after failed calls): one not above the last accepted is an old update, dropped.
      const last = job.stepUpdates.at(-1)?.changeOrder ?? 0;
      if (order <= last) {
        job.ignoredStepUpdates.push({ changeOrder: order, steps });
        return { ok: true };
      }
      job.stepUpdates.push({ changeOrder: order, steps });
      for (const s of steps) {
        const id = String(s["external_id"]);
        job.stepView.set(id, { ...job.stepView.get(id), ...s });
      }
      return { ok: true };
    }
    case "results.services.receiver.Receiver/GetStepLogsSignedBlobURL":
      return {
        logs_url: signed(`${job.jobId}/${String(b["step_backend_id"])}.log`),
        blob_storage_type: "BLOB_STORAGE_TYPE_AZURE",
        soft_size_limit: "104857600",
      };
    case "results.services.receiver.Receiver/CreateStepLogsMetadata": {
      const name = `${job.jobId}/${String(b["step_backend_id"])}.log`;
      const content = gh.blobs.get(name);
      if (content === undefined) throw new HttpError(400, { code: "failed_precondition", msg: "no blob uploaded" });
      job.stepLogs.set(String(b["step_backend_id"]), { content, lineCount: Number(b["line_count"]) });
      return { ok: true };
    }
    case "results.services.receiver.Receiver/GetJobLogsSignedBlobURL":
      return { logs_url: signed(`${job.jobId}/job.log`), blob_storage_type: "BLOB_STORAGE_TYPE_AZURE" };
    case "results.services.receiver.Receiver/CreateJobLogsMetadata": {
      const content = gh.blobs.get(`${job.jobId}/job.log`);
      if (content === undefined) throw new HttpError(400, { code: "failed_precondition", msg: "no blob uploaded" });
      job.jobLog = { content, lineCount: Number(b["line_count"]) };
      return { ok: true };
    }
    default:
      throw new HttpError(404, { code: "bad_route", msg: `no method ${method}` });
  }
}

/** Applies `faults.results` to one Twirp call: waits while stalled, then refuses while failing. */
async function resultsFault(gh: GitHubBooks, closed: AbortSignal): Promise<void> {
  while (gh.faults.results === "stalled" && !closed.aborted && !gh.closed)
    await new Promise((resolve) => setTimeout(resolve, 20));
  if (gh.faults.results === "failing") {
    gh.resultsRefused += 1;
    throw new HttpError(500, { code: "internal", msg: "the Results service failed" });
  }
}

export function blob(gh: GitHubBooks, req: IncomingMessage, url: URL, raw: Buffer, name: string): unknown {
  if (url.searchParams.get("sig") !== gh.blobSigs.get(name))
    throw new HttpError(403, { message: "AuthenticationFailed: the signature does not match" });
  if (req.headers["x-ms-blob-type"] !== "BlockBlob")
    throw new HttpError(400, { message: "x-ms-blob-type is required" });
  if (gh.blobs.has(name)) throw new HttpError(409, { message: "BlobAlreadyExists" });
  gh.blobs.set(name, raw.toString("utf8"));
  if (gh.faults.uploadFailuresAfterStore > 0) {
    gh.faults.uploadFailuresAfterStore -= 1;
    throw new HttpError(500, { message: "the connection broke after the blob was stored" });
  }
  return { status: 201, raw: "" };
}
