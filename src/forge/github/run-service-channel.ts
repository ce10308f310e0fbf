// The v2 job channel (spec 6.4, 6.5): renewjob/completejob on the run service with the job's token,
// step progress and logs through the Results service. Step logs go up once the step has finished
// (one block, idempotent on retry); the live console needs the FeedStream WebSocket (not sent yet).
import { type Logger, rootLogger } from "../../telemetry/log.js";
import { GitHubApiError, JobGoneError } from "./errors.js";
import { apiError, type HttpCall, type HttpClient, readJson } from "./http.js";
import type { ChannelTimings, JobChannel } from "./job-channel.js";
import type { JobReport, ReportIssue, ReportRecord } from "./job-report.js";
import { toTaskResult } from "./job-report.js";
import { LiveFeed } from "./live-feed.js";
import { ResultsClient, type ResultsStep } from "./results.js";
import { withRetries } from "./retry.js";
import type { GitHubJob } from "./to-job-request.js";
import { joinUrl } from "./urls.js";
import {
  RenewJobResponse,
  ResultsConclusion,
  ResultsStatus,
  type RunServiceAnnotation,
  type TaskResult,
} from "./wire.js";

export interface RunServiceChannelOptions {
  readonly job: GitHubJob;
  readonly http: HttpClient;
  readonly timings: ChannelTimings;
  /** For the live console socket's failures (debug level). */
  readonly log?: Logger;
}

/** Lines per live console message, as the official runner sends them. */
const FEED_BATCH_LINES = 100;

const iso = (ms: number | null): string | undefined => (ms === null ? undefined : new Date(ms).toISOString());

function conclusionOf(r: TaskResult | null): number {
  switch (r) {
    case "succeeded":
    case "succeededWithIssues":
      return ResultsConclusion.success;
    case "failed":
    case "abandoned":
      return ResultsConclusion.failure;
    case "canceled":
      return ResultsConclusion.cancelled;
    case "skipped":
      return ResultsConclusion.skipped;
    default:
      return ResultsConclusion.unknown;
  }
}

export function annotationOf(i: ReportIssue): RunServiceAnnotation {
  return {
    level: i.level === "error" ? "FAILURE" : i.level === "warning" ? "WARNING" : "NOTICE",
    message: i.message,
    ...(i.title !== undefined ? { title: i.title } : {}),
    ...(i.file !== undefined ? { path: i.file } : {}),
    isInfrastructureIssue: false,
    ...(i.line !== undefined ? { startLine: i.line, endLine: i.endLine ?? i.line } : {}),
    ...(i.col !== undefined ? { startColumn: i.col, endColumn: i.endColumn ?? i.col } : {}),
    stepNumber: i.stepNumber,
  };
}

export class RunServiceChannel implements JobChannel {
  readonly #o: RunServiceChannelOptions;
  readonly #results: ResultsClient | undefined;
  readonly #sent = new Map<string, number>();
  readonly #uploaded = new Set<string>();
  readonly #feed: LiveFeed | undefined;
  #changeOrder = 1;

  constructor(opts: RunServiceChannelOptions) {
    this.#o = opts;
    const { job } = opts;
    this.#results = job.resultsUrl
      ? new ResultsClient({
          http: opts.http,
          baseUrl: job.resultsUrl,
          token: job.accessToken,
          planId: job.planId,
          jobId: job.jobId,
          timeoutMs: opts.timings.callTimeoutMs,
        })
      : undefined;
    this.#feed = job.feedStreamUrl
      ? new LiveFeed({
          url: job.feedStreamUrl,
          token: job.accessToken,
          userAgent: opts.http.userAgent,
          log: opts.log ?? rootLogger(),
        })
      : undefined;
  }

  #call(what: string, path: string, json: unknown, signal: AbortSignal): HttpCall {
    return {
      what,
      method: "POST",
      url: joinUrl(this.#o.job.serviceUrl, path),
      headers: { Authorization: `Bearer ${this.#o.job.accessToken}` },
      json,
      timeoutMs: this.#o.timings.callTimeoutMs,
      signal,
    };
  }

  async renew(signal: AbortSignal): Promise<Date> {
    const { job } = this.#o;
    const call = this.#call("renew the job lock", "renewjob", { planId: job.planId, jobId: job.jobId }, signal);
    const res = await this.#o.http.send(call);
    if (res.status === 404) throw new JobGoneError(`GitHub no longer knows job ${job.jobId} (renewjob answered 404)`);
    if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
    return new Date(readJson(call, res, RenewJobResponse).lockedUntil);
  }

  async begin(): Promise<void> {
    // The run service learns that the job started from its first step update.
  }

  async sync(report: JobReport, signal: AbortSignal): Promise<void> {
    await this.#sendLive(report);
    const results = this.#results;
    if (!results) return;
    const changed = report.records.filter((r) => (this.#sent.get(r.id) ?? 0) < r.version);
    if (changed.length > 0) {
      const versions = changed.map((r) => [r.id, r.version] as const);
      const steps: ResultsStep[] = changed.map((r) => ({
        external_id: r.id,
        number: r.order,
        name: r.name,
        status:
          r.state === "completed"
            ? ResultsStatus.completed
            : r.state === "inProgress"
              ? ResultsStatus.inProgress
              : ResultsStatus.pending,
        ...(iso(r.startTime) ? { started_at: iso(r.startTime) } : {}),
        ...(iso(r.finishTime) ? { completed_at: iso(r.finishTime) } : {}),
        conclusion: conclusionOf(r.result),
      }));
      await this.#retry(() => results.updateSteps(steps, this.#changeOrder, signal), signal);
      this.#changeOrder += 1;
      for (const [id, v] of versions) this.#sent.set(id, Math.max(this.#sent.get(id) ?? 0, v));
    }
    for (const r of report.records)
      if (r.state === "completed" && !this.#uploaded.has(r.id)) {
        await this.#retry(() => results.uploadStepLog(r.id, logText(r), r.lines.length, signal), signal);
        this.#uploaded.add(r.id);
      }
  }

  async complete(report: JobReport, signal: AbortSignal): Promise<void> {
    const outcome = report.outcome;
    if (!outcome) throw new Error("complete() needs a finished report");
    await this.sync(report, signal);
    this.#feed?.close();
    const results = this.#results;
    if (results) {
      const all = report.records.flatMap((r) => r.lines);
      await this.#retry(
        () => results.uploadJobLog(all.length ? `${all.join("\n")}\n` : "", all.length, signal),
        signal,
      );
    }
    const { job } = this.#o;
    const body = {
      planId: job.planId,
      jobId: job.jobId,
      conclusion: toTaskResult(outcome.result),
      outputs: Object.fromEntries(Object.entries(outcome.outputs).map(([k, v]) => [k, { value: v, isSecret: false }])),
      stepResults: report.records.map((r) => stepResult(r)),
      annotations: report.issues().map(annotationOf),
      ...(job.billingOwnerId ? { billingOwnerId: job.billingOwnerId } : {}),
    };
    await withRetries(
      async () => {
        const call = this.#call("complete the job", "completejob", body, signal);
        const res = await this.#o.http.send(call);
        if (res.status === 404)
          throw new JobGoneError(`GitHub no longer knows job ${job.jobId} (completejob answered 404)`);
        if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
      },
      {
        attempts: this.#o.timings.completeAttempts,
        delayMs: () => this.#o.timings.completeRetryMs,
        // Official: stop on 401 and 404; anything else is worth the five tries.
        retryable: (err) => !(err instanceof JobGoneError) && !(err instanceof GitHubApiError && err.status === 401),
        signal,
      },
    );
  }

  dispose(): void {
    this.#feed?.close();
  }

  /** The lines of running steps, to the live console while there is one; dropped otherwise. */
  async #sendLive(report: JobReport): Promise<void> {
    for (const r of report.records)
      while (r.live.length > 0) {
        const batch = r.live.splice(0, FEED_BATCH_LINES);
        const startLine = r.liveStart;
        r.liveStart += batch.length;
        if (this.#feed?.live) await this.#feed.send(r.id, startLine, batch);
      }
  }

  #retry<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    return withRetries(fn, {
      attempts: this.#o.timings.uploadAttempts,
      delayMs: (n) => this.#o.timings.uploadRetryMs * n,
      signal,
    });
  }
}

function logText(r: ReportRecord): string {
  return r.lines.length ? `${r.lines.join("\n")}\n` : "";
}

function stepResult(r: ReportRecord): Record<string, unknown> {
  return {
    external_id: r.id,
    number: r.order,
    name: r.name,
    ...(r.actionName ? { action_name: r.actionName } : {}),
    ...(r.ref ? { ref: r.ref } : {}),
    status: r.state,
    conclusion: r.result ?? "skipped",
    ...(iso(r.startTime) ? { started_at: iso(r.startTime) } : {}),
    ...(iso(r.finishTime) ? { completed_at: iso(r.finishTime) } : {}),
    completed_log_lines: r.lines.length,
    ...(r.issues.length ? { annotations: r.issues.map(annotationOf) } : {}),
  };
}
