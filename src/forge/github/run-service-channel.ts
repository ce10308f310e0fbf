// The v2 job channel (spec 6.4, 6.5): renewjob/completejob on the run service with the job's token,
// step progress and logs through the Results service, live lines over the FeedStream WebSocket.
// Step logs go up once the step has finished (one block, idempotent on retry). Step updates carry a
// change order that also stays above those of a runner process that held the job before.

import { retry } from "../../lifecycle/retry.js";
import { type Logger, rootLogger } from "../../telemetry/log.js";
import { isTransient, JobGoneError } from "./errors.js";
import { apiError, type HttpCall, type HttpClient, readJson } from "./http.js";
import type { ChannelTimings, JobChannel } from "./job-channel.js";
import type { JobReport, ReportIssue, ReportRecord } from "./job-report.js";
import { hasLogHere, toTaskResult } from "./job-report.js";
import { LiveFeed } from "./live-feed.js";
import { ResultsClient, type ResultsStep } from "./results.js";
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
  readonly now?: () => number;
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
  readonly #now: () => number;
  #changeOrder = 0;
  #jobLogUploaded = false;

  constructor(opts: RunServiceChannelOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
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

  /**
   * The change order of the next step update. Results drops an update whose order is not above
   * the last one it accepted for the job, and a process that takes over a job from one that died
   * cannot know that one's count: so the order is the time in ms, or one above the last when that
   * is later. It grows by one or more per update, as the official runner's (which skips the
   * numbers of failed calls), and a successor starts above its predecessor while the clock does
   * not go back.
   */
  #nextChangeOrder(): number {
    this.#changeOrder = Math.max(this.#changeOrder + 1, this.#now());
    return this.#changeOrder;
  }

  async sync(report: JobReport, signal: AbortSignal): Promise<void> {
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
      // Retries repeat the same order: if the first try arrived after all, the repeat is dropped.
      const order = this.#nextChangeOrder();
      await this.#retry(() => results.updateSteps(steps, order, signal), signal);
      for (const [id, v] of versions) this.#sent.set(id, Math.max(this.#sent.get(id) ?? 0, v));
    }
    for (const r of report.records)
      if (r.state === "completed" && !this.#uploaded.has(r.id) && hasLogHere(r)) {
        await this.#retry(() => results.uploadStepLog(r.id, logText(r), r.lines.length, signal), signal);
        this.#uploaded.add(r.id);
      }
  }

  async flush(report: JobReport, signal: AbortSignal): Promise<void> {
    await this.sync(report, signal);
    const results = this.#results;
    if (!results || this.#jobLogUploaded) return;
    const all = report.records.flatMap((r) => r.lines);
    await this.#retry(() => results.uploadJobLog(all.length ? `${all.join("\n")}\n` : "", all.length, signal), signal);
    this.#jobLogUploaded = true;
  }

  async complete(report: JobReport, signal: AbortSignal): Promise<void> {
    const outcome = report.outcome;
    if (!outcome) throw new Error("complete() needs a finished report");
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
    const call = this.#call("complete the job", "completejob", body, signal);
    const res = await this.#o.http.send(call);
    if (res.status === 404)
      throw new JobGoneError(`GitHub no longer knows job ${job.jobId} (completejob answered 404)`);
    if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
  }

  missingLogs(report: JobReport): string[] {
    if (!this.#results) return [];
    const steps = report.records.filter((r) => hasLogHere(r) && !this.#uploaded.has(r.id)).map((r) => r.name);
    return this.#jobLogUploaded ? steps : [...steps, "the job log"];
  }

  dispose(): void {
    this.#feed?.close();
  }

  /** The lines of running steps, to the live console while there is one; dropped otherwise. */
  async live(report: JobReport): Promise<void> {
    for (const r of report.records)
      while (r.live.length > 0) {
        const batch = r.live.splice(0, FEED_BATCH_LINES);
        const startLine = r.liveStart;
        r.liveStart += batch.length;
        if (this.#feed?.live) await this.#feed.send(r.id, startLine, batch).catch(() => {});
      }
  }

  #retry<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    return retry(fn, {
      attempts: this.#o.timings.uploadAttempts,
      backoff: (n) => this.#o.timings.uploadRetryMs * n,
      retryable: isTransient,
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
