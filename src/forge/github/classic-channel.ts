// The classic job channel (spec 8): lock renewal on the pool's job request with the runner's token,
// timeline records, step logs and the live console on the plan hub with the job's token, and the
// JobCompleted plan event. Logs are appended from the line count GitHub acknowledged, so a retried
// upload resumes instead of repeating lines. Live lines go out on their own, never behind a retry.

import { retry } from "../../lifecycle/retry.js";
import { type RunnerTokens, sendAuthed } from "./auth.js";
import { describeDetail, isTransient, JobGoneError } from "./errors.js";
import { apiError, type HttpCall, type HttpClient, readJson } from "./http.js";
import type { ChannelTimings, JobChannel } from "./job-channel.js";
import { hasLogHere, type JobReport, type ReportRecord, toTaskResult } from "./job-report.js";
import { LOCATION, type Locations } from "./locations.js";
import type { GitHubJob } from "./to-job-request.js";
import { TaskAgentJobRequest, TaskLog, type TimelineIssue, type TimelineRecordBody, vssList } from "./wire.js";

const HUB_API = "5.1-preview.1";
const EVENTS_API = "2.0-preview.1";
const ZERO_GUID = "00000000-0000-0000-0000-000000000000";
/** Lines per append; the official runner pages at 8 MiB, lines are a safer unit for the ack offset. */
const LOG_PAGE_LINES = 5_000;
const FEED_BATCH_LINES = 100;
/** A live batch that takes longer is dropped: the console is best effort and must not fall behind. */
const FEED_TIMEOUT_MS = 10_000;

export interface ClassicChannelOptions {
  readonly job: GitHubJob;
  readonly http: HttpClient;
  /** Runner-token source: renewals go to the pool with the runner's own token (spec 8.1). */
  readonly tokens: RunnerTokens;
  /** The tenant's locations (pool routes); hub routes are resolved against the job's own URL. */
  readonly locations: Locations;
  readonly hubLocations: Locations;
  readonly poolId: number;
  readonly workerName: string;
  readonly timings: ChannelTimings;
}

/** The orchestration id claim of the job token, sent as X-VSS-OrchestrationId (spec 7.1, 8.1). */
export function orchestrationId(jobToken: string): string | undefined {
  const payload = jobToken.split(".")[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
    const v = claims["orch_id"] ?? claims["orchid"];
    return typeof v === "string" && v ? v : undefined;
  } catch {
    return undefined;
  }
}

interface LogState {
  id: number;
  /** Lines GitHub holds. */
  acked: number;
  /** Whether the record has been sent with its `log` link. */
  linked: boolean;
}

export class ClassicChannel implements JobChannel {
  readonly #o: ClassicChannelOptions;
  readonly #sent = new Map<string, number>();
  readonly #logs = new Map<string, LogState>();
  readonly #orchId: string | undefined;
  #begun = false;

  constructor(opts: ClassicChannelOptions) {
    this.#o = opts;
    this.#orchId = orchestrationId(opts.job.accessToken);
  }

  #hub(id: (typeof LOCATION)[keyof typeof LOCATION], values: Record<string, string | number>) {
    const { job } = this.#o;
    return this.#o.hubLocations.url(id, {
      scopeIdentifier: job.scopeIdentifier,
      hubName: job.planType,
      planId: job.planId,
      timelineId: job.timelineId,
      ...values,
    });
  }

  #jobCall(call: Omit<HttpCall, "timeoutMs" | "headers">, headers: Record<string, string> = {}): HttpCall {
    return {
      ...call,
      headers: { Authorization: `Bearer ${this.#o.job.accessToken}`, ...headers },
      timeoutMs: this.#o.timings.callTimeoutMs,
    };
  }

  async renew(signal: AbortSignal): Promise<Date> {
    const { job } = this.#o;
    const call: HttpCall = {
      what: "renew the job lock",
      method: "PATCH",
      url: this.#o.locations.url(
        LOCATION.jobRequests,
        { poolId: this.#o.poolId, requestId: job.requestId },
        { lockToken: ZERO_GUID },
      ),
      headers: this.#orchId ? { "X-VSS-OrchestrationId": this.#orchId } : {},
      json: { requestId: job.requestId },
      apiVersion: "5.1-preview.1",
      timeoutMs: this.#o.timings.callTimeoutMs,
      signal,
    };
    const res = await sendAuthed(this.#o.http, this.#o.tokens, call);
    if (res.status < 200 || res.status > 299) {
      const err = apiError(call.what, res);
      const d = err.detail;
      if (
        res.status === 404 ||
        (d.kind === "vss" &&
          (d.typeKey === "TaskAgentJobNotFoundException" || d.typeKey === "TaskAgentJobTokenExpiredException"))
      )
        throw new JobGoneError(`GitHub no longer holds job ${job.jobId} for this runner (${describeDetail(d)})`, {
          cause: err,
        });
      throw err;
    }
    const renewed = readJson(call, res, TaskAgentJobRequest);
    return renewed.lockedUntil ? new Date(renewed.lockedUntil) : new Date(Date.now() + 60_000);
  }

  #jobRecord(report: JobReport, state: "inProgress" | "completed"): TimelineRecordBody {
    const { job } = this.#o;
    const outcome = report.outcome;
    return {
      id: job.jobId,
      parentId: null,
      type: "Job",
      name: job.displayName,
      refName: "__default",
      order: 1,
      state,
      result: state === "completed" && outcome ? toTaskResult(outcome.result) : null,
      startTime: new Date(report.startTime ?? Date.now()).toISOString(),
      finishTime: state === "completed" && outcome ? new Date(outcome.at).toISOString() : null,
      workerName: this.#o.workerName,
      log: null,
      errorCount: 0,
      warningCount: 0,
      noticeCount: 0,
      issues: [],
    };
  }

  #taskRecord(r: ReportRecord): TimelineRecordBody {
    const issues: TimelineIssue[] = r.issues.map((i) => ({
      type: i.level,
      category: "General",
      message: i.message,
      isInfrastructureIssue: false,
      data: Object.fromEntries(
        Object.entries({
          title: i.title,
          file: i.file,
          line: i.line,
          endLine: i.endLine,
          col: i.col,
          endColumn: i.endColumn,
          stepNumber: i.stepNumber,
        })
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => [k, String(v)]),
      ),
    }));
    const log = this.#logs.get(r.id);
    return {
      id: r.id,
      parentId: this.#o.job.jobId,
      type: "Task",
      name: r.name,
      refName: r.refName,
      order: r.order,
      state: r.state,
      result: r.result,
      startTime: r.startTime === null ? null : new Date(r.startTime).toISOString(),
      finishTime: r.finishTime === null ? null : new Date(r.finishTime).toISOString(),
      workerName: this.#o.workerName,
      log: log ? { id: log.id } : null,
      errorCount: r.issues.filter((i) => i.level === "error").length,
      warningCount: r.issues.filter((i) => i.level === "warning").length,
      noticeCount: r.issues.filter((i) => i.level === "notice").length,
      issues,
    };
  }

  async #patchRecords(records: readonly TimelineRecordBody[], signal: AbortSignal): Promise<void> {
    if (records.length === 0) return;
    await this.#retry(async () => {
      const call = this.#jobCall({
        what: "update the job's timeline",
        method: "PATCH",
        url: this.#hub(LOCATION.timelineRecords, {}),
        json: { count: records.length, value: records },
        apiVersion: HUB_API,
        signal,
      });
      const res = await this.#o.http.send(call);
      if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
    }, signal);
  }

  async begin(report: JobReport, signal: AbortSignal): Promise<void> {
    if (this.#begun) return;
    await this.#patchRecords([this.#jobRecord(report, "inProgress")], signal);
    this.#begun = true;
  }

  async sync(report: JobReport, signal: AbortSignal): Promise<void> {
    const changed = report.records.filter((r) => (this.#sent.get(r.id) ?? 0) < r.version);
    if (changed.length > 0) {
      const versions = changed.map((r) => [r.id, r.version] as const);
      await this.#patchRecords(
        changed.map((r) => this.#taskRecord(r)),
        signal,
      );
      for (const [id, v] of versions) this.#sent.set(id, Math.max(this.#sent.get(id) ?? 0, v));
    }
    const linked: TimelineRecordBody[] = [];
    for (const r of report.records) {
      if (r.state !== "completed" || !hasLogHere(r)) continue;
      const state = this.#logs.get(r.id);
      if (state && state.acked >= r.lines.length && state.linked) continue;
      await this.#shipLog(r, signal);
      const s = this.#logs.get(r.id)!;
      if (!s.linked) {
        linked.push(this.#taskRecord(r));
        s.linked = true;
      }
    }
    await this.#patchRecords(linked, signal);
  }

  /** Live console lines, best effort: the uploaded log is what stays. */
  async live(report: JobReport): Promise<void> {
    for (const r of report.records) {
      while (r.live.length > 0) {
        const batch = r.live.splice(0, FEED_BATCH_LINES);
        const startLine = r.liveStart;
        r.liveStart += batch.length;
        try {
          const call = this.#jobCall({
            what: "send live console lines",
            method: "POST",
            url: this.#hub(LOCATION.recordFeed, { recordId: this.#o.job.jobId }),
            json: { count: batch.length, value: batch, stepId: r.id, startLine },
            apiVersion: HUB_API,
            signal: AbortSignal.timeout(Math.min(FEED_TIMEOUT_MS, this.#o.timings.callTimeoutMs)),
          });
          await this.#o.http.send(call);
        } catch {
          // dropped: the step's log keeps the lines
        }
      }
    }
  }

  async #shipLog(r: ReportRecord, signal: AbortSignal): Promise<void> {
    let state = this.#logs.get(r.id);
    if (!state) {
      const now = new Date().toISOString();
      const created = await this.#retry(async () => {
        const call = this.#jobCall({
          what: "create a step log",
          method: "POST",
          url: this.#hub(LOCATION.logs, {}),
          json: { path: `logs\\${r.id}`, createdOn: now, lastChangedOn: now },
          apiVersion: HUB_API,
          signal,
        });
        const res = await this.#o.http.send(call);
        if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
        return readJson(call, res, TaskLog);
      }, signal);
      state = { id: created.id, acked: 0, linked: false };
      this.#logs.set(r.id, state);
    }
    const log = state;
    let resume = false;
    while (log.acked < r.lines.length) {
      await this.#retry(async () => {
        if (resume) log.acked = await this.#ackedLines(log, signal);
        resume = true;
        const page = r.lines.slice(log.acked, log.acked + LOG_PAGE_LINES);
        if (page.length === 0) return;
        const call = this.#jobCall({
          what: "upload a step log",
          method: "POST",
          url: this.#hub(LOCATION.logs, { logId: log.id }),
          body: Buffer.from(`${page.join("\n")}\n`, "utf8"),
          contentType: "application/octet-stream",
          apiVersion: HUB_API,
          signal,
        });
        const res = await this.#o.http.send(call);
        if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
        const stored = readJson(call, res, TaskLog);
        // GitHub's line count is the acknowledged offset; a service that does not count (no value, or
        // no progress) has stored the page as sent.
        const counted = stored.lineCount ?? undefined;
        log.acked = Math.min(
          r.lines.length,
          counted !== undefined && counted > log.acked ? counted : log.acked + page.length,
        );
        resume = false;
      }, signal);
    }
  }

  /** How many lines of a log GitHub holds, from the plan's log list (after an upload failed midway). */
  async #ackedLines(log: LogState, signal: AbortSignal): Promise<number> {
    const call = this.#jobCall({
      what: "read the step log's length",
      method: "GET",
      url: this.#hub(LOCATION.logs, {}),
      apiVersion: HUB_API,
      signal,
    });
    const res = await this.#o.http.send(call);
    if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
    const found = readJson(call, res, vssList(TaskLog)).value.find((l) => l.id === log.id);
    return found?.lineCount ?? log.acked;
  }

  async flush(report: JobReport, signal: AbortSignal): Promise<void> {
    await this.sync(report, signal);
    await this.#patchRecords([this.#jobRecord(report, "completed")], signal);
  }

  async complete(report: JobReport, signal: AbortSignal): Promise<void> {
    const outcome = report.outcome;
    if (!outcome) throw new Error("complete() needs a finished report");
    const { job } = this.#o;
    const result = toTaskResult(outcome.result);
    const outputs = Object.fromEntries(
      Object.entries(outcome.outputs).map(([k, v]) => [k, { value: v, isSecret: false }]),
    );
    const call: HttpCall =
      job.planVersion >= 8
        ? this.#jobCall({
            what: "complete the job",
            method: "POST",
            url: this.#hub(LOCATION.planEvents, {}),
            json: { name: "JobCompleted", jobId: job.jobId, requestId: job.requestId, result, outputs },
            apiVersion: EVENTS_API,
            signal,
          })
        : {
            what: "complete the job",
            method: "PATCH",
            url: this.#o.locations.url(
              LOCATION.jobRequests,
              { poolId: this.#o.poolId, requestId: job.requestId },
              { lockToken: ZERO_GUID },
            ),
            json: { requestId: job.requestId, finishTime: new Date(outcome.at).toISOString(), result },
            apiVersion: "5.1-preview.1",
            timeoutMs: this.#o.timings.callTimeoutMs,
            signal,
          };
    const res =
      job.planVersion >= 8 ? await this.#o.http.send(call) : await sendAuthed(this.#o.http, this.#o.tokens, call);
    if (res.status < 200 || res.status > 299) {
      const err = apiError(call.what, res);
      const d = err.detail;
      if (
        res.status === 404 ||
        (d.kind === "vss" && /PlanNotFound|PlanSecurity|PlanTerminated|TaskOrchestrationPlan/i.test(d.typeKey))
      )
        throw new JobGoneError(`GitHub no longer accepts results for job ${job.jobId} (${describeDetail(d)})`, {
          cause: err,
        });
      throw err;
    }
  }

  missingLogs(report: JobReport): string[] {
    return report.records
      .filter((r) => {
        if (!hasLogHere(r)) return false;
        const log = this.#logs.get(r.id);
        return !log || log.acked < r.lines.length || !log.linked;
      })
      .map((r) => r.name);
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
