// The Results service client (spec 6.5): Twirp JSON calls for step updates and log metadata, and
// uploads to the signed blob URLs it hands out. All with the job's access token, none retried here.

import { z } from "zod";
import { redactUrl } from "../../telemetry/redact.js";
import { GitHubApiError } from "./errors.js";
import { apiError, type HttpCall, type HttpClient, readJson } from "./http.js";
import { joinUrl } from "./urls.js";
import { SignedLogUrl } from "./wire.js";

const RECEIVER = "twirp/results.services.receiver.Receiver/";
const STEPS = "twirp/github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate";

export interface ResultsStep {
  readonly external_id: string;
  readonly number: number;
  readonly name: string;
  readonly status: number;
  readonly started_at?: string;
  readonly completed_at?: string;
  readonly conclusion: number;
}

export interface ResultsClientOptions {
  readonly http: HttpClient;
  readonly baseUrl: string;
  readonly token: string;
  readonly planId: string;
  readonly jobId: string;
  readonly timeoutMs: number;
}

const Ok = z.object({ ok: z.boolean().optional() }).passthrough();

export class ResultsClient {
  readonly #o: ResultsClientOptions;

  constructor(opts: ResultsClientOptions) {
    this.#o = opts;
  }

  async #twirp<S extends z.ZodType>(what: string, path: string, body: unknown, schema: S, signal: AbortSignal) {
    const call: HttpCall = {
      what,
      method: "POST",
      url: joinUrl(this.#o.baseUrl, path),
      headers: { Authorization: `Bearer ${this.#o.token}` },
      json: body,
      timeoutMs: this.#o.timeoutMs,
      signal,
    };
    const res = await this.#o.http.send(call);
    if (res.status < 200 || res.status > 299) throw apiError(what, res);
    return readJson(call, res, schema);
  }

  async updateSteps(steps: readonly ResultsStep[], changeOrder: number, signal: AbortSignal): Promise<void> {
    await this.#twirp(
      "update the job's steps",
      STEPS,
      {
        steps,
        change_order: changeOrder,
        workflow_job_run_backend_id: this.#o.jobId,
        workflow_run_backend_id: this.#o.planId,
      },
      Ok,
      signal,
    );
  }

  /** Uploads a step's whole log and records its line count. */
  async uploadStepLog(stepId: string, content: string, lineCount: number, signal: AbortSignal): Promise<void> {
    const ids = {
      workflow_job_run_backend_id: this.#o.jobId,
      workflow_run_backend_id: this.#o.planId,
      step_backend_id: stepId,
    };
    const signed = await this.#twirp(
      "get the step log upload URL",
      `${RECEIVER}GetStepLogsSignedBlobURL`,
      ids,
      SignedLogUrl,
      signal,
    );
    await this.#putBlob(signed.logs_url, signed.blob_storage_type, content, signal);
    await this.#twirp(
      "record the step log",
      `${RECEIVER}CreateStepLogsMetadata`,
      { ...ids, uploaded_at: new Date().toISOString(), line_count: lineCount },
      Ok,
      signal,
    );
  }

  /** Uploads the job's whole log (what "View raw logs" shows) and records its line count. */
  async uploadJobLog(content: string, lineCount: number, signal: AbortSignal): Promise<void> {
    const ids = { workflow_job_run_backend_id: this.#o.jobId, workflow_run_backend_id: this.#o.planId };
    const signed = await this.#twirp(
      "get the job log upload URL",
      `${RECEIVER}GetJobLogsSignedBlobURL`,
      ids,
      SignedLogUrl,
      signal,
    );
    await this.#putBlob(signed.logs_url, signed.blob_storage_type, content, signal);
    await this.#twirp(
      "record the job log",
      `${RECEIVER}CreateJobLogsMetadata`,
      { ...ids, uploaded_at: new Date().toISOString(), line_count: lineCount },
      Ok,
      signal,
    );
  }

  /** One block upload: the SAS URL carries its own authorization, so no bearer token is sent. */
  async #putBlob(url: string, storageType: string, content: string, signal: AbortSignal): Promise<void> {
    const call: HttpCall = {
      what: "upload a log",
      method: "PUT",
      url,
      headers: storageType === "BLOB_STORAGE_TYPE_AZURE" ? { "x-ms-blob-type": "BlockBlob" } : {},
      body: Buffer.from(content, "utf8"),
      contentType: "text/plain; charset=utf-8",
      timeoutMs: this.#o.timeoutMs,
      signal,
    };
    const res = await this.#o.http.send(call);
    // A retried upload of a blob that arrived the first time: the content is already there.
    if (res.status === 409 || res.status === 412) return;
    if (res.status < 200 || res.status > 299)
      throw new GitHubApiError(call.what, res.status, redactUrl(url), { kind: "text", text: res.text.slice(0, 300) });
  }
}
