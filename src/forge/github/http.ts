// The one HTTP client of the GitHub adapter: a User-Agent on every call, a deadline under the
// caller's signal, error bodies classified by the service that wrote them, answers parsed by zod.
// It never retries (callers decide) and never logs bodies (they carry tokens).
import type { z } from "zod";
import { issuesText } from "../../contract/codec.js";
import { redactUrl } from "../../telemetry/redact.js";
import { type ApiErrorDetail, GitHubApiError, GitHubProtocolError, GitHubUnreachableError } from "./errors.js";
import { BrokerErrorBody, OAuthErrorBody, RunServiceErrorBody, VssErrorBody } from "./wire.js";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface HttpCall {
  /** What the call does, for error messages: "renew the job lock". */
  readonly what: string;
  readonly method: HttpMethod;
  readonly url: string | URL;
  readonly headers?: Readonly<Record<string, string>>;
  /** A JSON body (sets Content-Type). */
  readonly json?: unknown;
  /** A raw body with its content type. */
  readonly body?: string | Uint8Array;
  readonly contentType?: string;
  /** Classic (VSS) resources: adds `api-version` to Accept, Content-Type and the query. */
  readonly apiVersion?: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly url: string;
}

export interface HttpClientOptions {
  /** `GitHubActionsRunner-linux-x64/2.330.0 gnomon/0.1.0`: GitHub's answers depend on it. */
  readonly userAgent: string;
  readonly fetch?: typeof fetch;
}

export class HttpClient {
  readonly userAgent: string;
  readonly #fetch: typeof fetch;

  constructor(opts: HttpClientOptions) {
    this.userAgent = opts.userAgent;
    this.#fetch = opts.fetch ?? fetch;
  }

  /** Sends the call; any HTTP status is an answer. Rejects with the caller's abort reason or GitHubUnreachableError. */
  async send(call: HttpCall): Promise<HttpAnswer> {
    const url = new URL(call.url);
    const headers: Record<string, string> = { "User-Agent": this.userAgent, Accept: "application/json" };
    let body: string | Uint8Array | undefined;
    let contentType: string | undefined;
    if (call.json !== undefined) {
      body = JSON.stringify(call.json);
      contentType = "application/json; charset=utf-8";
    } else if (call.body !== undefined) {
      body = call.body;
      contentType = call.contentType ?? "application/octet-stream";
    }
    if (call.apiVersion) {
      url.searchParams.set("api-version", call.apiVersion);
      headers["Accept"] = `application/json; api-version=${call.apiVersion}`;
      if (contentType?.startsWith("application/json"))
        contentType = `application/json; charset=utf-8; api-version=${call.apiVersion}`;
    }
    if (contentType) headers["Content-Type"] = contentType;
    Object.assign(headers, call.headers);

    call.signal?.throwIfAborted();
    const deadline = AbortSignal.timeout(call.timeoutMs);
    const signal = call.signal ? AbortSignal.any([call.signal, deadline]) : deadline;
    try {
      const res = await this.#fetch(url, { method: call.method, headers, body, signal, redirect: "follow" });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, url: url.toString() };
    } catch (err) {
      call.signal?.throwIfAborted();
      throw new GitHubUnreachableError(call.what, redactUrl(url), {
        cause: deadline.aborted ? new Error(`no answer within ${Math.round(call.timeoutMs / 1000)} s`) : err,
      });
    }
  }

  /** Sends the call; a status outside 2xx becomes a GitHubApiError. */
  async ok(call: HttpCall): Promise<HttpAnswer> {
    return ensureOk(call, await this.send(call));
  }

  /** A 2xx JSON answer parsed by `schema`. */
  async json<S extends z.ZodType>(call: HttpCall, schema: S): Promise<z.output<S>> {
    return readJson(call, await this.ok(call), schema);
  }
}

/** The answer if it is a 2xx, else a GitHubApiError. */
export function ensureOk(call: HttpCall, res: HttpAnswer): HttpAnswer {
  if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
  return res;
}

/** A JSON body parsed by `schema`; an empty body is a protocol error. */
export function readJson<S extends z.ZodType>(call: HttpCall, res: HttpAnswer, schema: S): z.output<S> {
  const parsed = readMaybeJson(call, res, schema);
  if (parsed === undefined) throw new GitHubProtocolError(call.what, redactUrl(res.url), "the body is empty");
  return parsed;
}

/** A JSON body parsed by `schema`, or undefined when there is none (long-poll "nothing yet"). */
export function readMaybeJson<S extends z.ZodType>(
  call: HttpCall,
  res: HttpAnswer,
  schema: S,
): z.output<S> | undefined {
  return parseBody(call.what, res, schema);
}

function parseBody<S extends z.ZodType>(what: string, res: HttpAnswer, schema: S): z.output<S> | undefined {
  const text = res.text.replace(/^\uFEFF/, "").trim();
  if (text === "" || text === "null") return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new GitHubProtocolError(what, redactUrl(res.url), "the body is not JSON", { cause: err });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new GitHubProtocolError(what, redactUrl(res.url), issuesText(parsed.error));
  }
  return parsed.data;
}

export function apiError(what: string, res: HttpAnswer): GitHubApiError {
  return new GitHubApiError(what, res.status, redactUrl(res.url), errorDetail(res.text));
}

/** Reads an error body as whichever service wrote it (spec 2.4). */
export function errorDetail(text: string): ApiErrorDetail {
  let raw: unknown;
  try {
    raw = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch {
    return { kind: "text", text: text.trim().slice(0, 500) };
  }
  const broker = BrokerErrorBody.safeParse(raw);
  if (broker.success) return { kind: "broker", errorKind: broker.data.errorKind, message: broker.data.errorMessage };
  const run = RunServiceErrorBody.safeParse(raw);
  if (run.success) return { kind: "run-service", message: run.data.errorMessage };
  const oauth = OAuthErrorBody.safeParse(raw);
  if (oauth.success) return { kind: "oauth", error: oauth.data.error, description: oauth.data.error_description };
  const vss = VssErrorBody.safeParse(raw);
  if (vss.success && (vss.data.typeKey || vss.data.message))
    return { kind: "vss", typeKey: vss.data.typeKey, message: vss.data.message };
  return { kind: "text", text: text.trim().slice(0, 500) };
}
