// Message sessions (spec 5, 6.2): the broker session of github.com (plaintext messages, never
// deleted) and the classic message queue of GHES (AES session key sent RSA-OAEP-encrypted, messages
// deleted after handling, BrokerMigration polled on the broker). One long poll per call; the
// poller decides what to do with what arrives and with each typed error.

import type { KeyObject } from "node:crypto";
import { hostname } from "node:os";
import { type RunnerTokens, sendAuthed } from "./auth.js";
import {
  type ApiErrorDetail,
  describeDetail,
  type GitHubApiError,
  RegistrationLostError,
  RunnerVersionDeprecatedError,
  SessionConflictError,
} from "./errors.js";
import { apiError, type HttpCall, type HttpClient, readMaybeJson } from "./http.js";
import { LOCATION, type Locations } from "./locations.js";
import { decryptMessageBody, decryptSessionKey } from "./message-crypto.js";
import { joinUrl } from "./urls.js";
import { TaskAgentMessage, TaskAgentSessionResponse } from "./wire.js";

export type RunnerStatus = "Online" | "Busy";

export interface ReceivedMessage {
  readonly messageId: number;
  readonly messageType: string;
  /** Decrypted. */
  readonly body: string;
  readonly source: "classic" | "broker";
}

/** The session is gone on the server (expired or invalid): open a new one. */
export class SessionExpiredError extends Error {
  override readonly name = "SessionExpiredError";
  readonly code = "github.session-expired";
}

export interface SessionIdentity {
  readonly agentId: number;
  readonly agentName: string;
  readonly runnerVersion: string;
  readonly osDescription: string;
  readonly disableUpdate: boolean;
  /** `Linux`, `Windows`, `macOS` as the poll query wants them. */
  readonly os: string;
  /** `X64`, `ARM64` … */
  readonly arch: string;
  /** For messages: `name (id 42)`. */
  readonly describe: string;
}

export interface MessageSource {
  readonly kind: "broker" | "classic";
  readonly sessionId: string | undefined;
  open(signal: AbortSignal): Promise<void>;
  /** One long poll: a message, or undefined when the server had none this time. */
  poll(status: RunnerStatus, signal: AbortSignal): Promise<ReceivedMessage | undefined>;
  /** After handling a message: the classic queue deletes it; broker messages are not deleted. */
  done(message: ReceivedMessage, signal: AbortSignal): Promise<void>;
  /** Tells the broker a job reference was received (when the reference asks for it). */
  acknowledge(runnerRequestId: string, status: RunnerStatus, signal: AbortSignal): Promise<void>;
  /** Classic only: the one broker poll a BrokerMigration message asks for. */
  pollBroker?(brokerUrl: string, status: RunnerStatus, signal: AbortSignal): Promise<ReceivedMessage | undefined>;
  close(signal: AbortSignal): Promise<void>;
}

export interface SessionOptions {
  readonly http: HttpClient;
  readonly identity: SessionIdentity;
  /** Longer than the server's ~50 s hold. */
  readonly pollTimeoutMs?: number;
  readonly callTimeoutMs?: number;
}

const ZERO_GUID = "00000000-0000-0000-0000-000000000000";

function sessionBody(id: SessionIdentity): unknown {
  return {
    sessionId: ZERO_GUID,
    ownerName: `${hostname()} (PID: ${process.pid})`,
    agent: { id: id.agentId, name: id.agentName, version: id.runnerVersion, osDescription: id.osDescription },
    useFipsEncryption: false,
  };
}

function pollQuery(id: SessionIdentity, sessionId: string, status: RunnerStatus): Record<string, string> {
  return {
    sessionId,
    status,
    runnerVersion: id.runnerVersion,
    os: id.os,
    architecture: id.arch,
    disableUpdate: String(id.disableUpdate),
  };
}

/** Turns a failed poll or session call into the decision it stands for. */
export function classifyMessageError(err: GitHubApiError, id: SessionIdentity): Error {
  const d: ApiErrorDetail = err.detail;
  const said = describeDetail(d);
  if (/deprecated|too old/i.test(said) || (d.kind === "broker" && d.errorKind === "RunnerVersionTooOld"))
    return new RunnerVersionDeprecatedError(id.runnerVersion, said, { cause: err });
  if (d.kind === "broker") {
    if (d.errorKind === "RunnerNotFound") return new RegistrationLostError(id.describe, said, { cause: err });
    if (d.errorKind === "RunnerSessionInvalid") return new SessionExpiredError(said, { cause: err });
    if (d.errorKind === "HostedRunnerDeprovisioned")
      return new RegistrationLostError(id.describe, said, { cause: err });
  }
  if (d.kind === "vss") {
    if (d.typeKey === "TaskAgentSessionExpiredException") return new SessionExpiredError(said, { cause: err });
    if (d.typeKey === "TaskAgentSessionConflictException") return new SessionConflictError(id.describe, { cause: err });
    if (d.typeKey === "TaskAgentNotFoundException" || d.typeKey === "TaskAgentPoolNotFoundException")
      return new RegistrationLostError(id.describe, said, { cause: err });
  }
  if (err.status === 409) return new SessionConflictError(id.describe, { cause: err });
  // 401 after a fresh token: the service no longer accepts this runner's identity.
  if (err.status === 401) return new RegistrationLostError(id.describe, said || "HTTP 401", { cause: err });
  return err;
}

export class BrokerSession implements MessageSource {
  readonly kind = "broker" as const;
  readonly #opts: SessionOptions;
  readonly #tokens: RunnerTokens;
  readonly #brokerUrl: string;
  #sessionId: string | undefined;

  constructor(opts: SessionOptions & { readonly tokens: RunnerTokens; readonly brokerUrl: string }) {
    this.#opts = opts;
    this.#tokens = opts.tokens;
    this.#brokerUrl = opts.brokerUrl;
  }

  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  async open(signal: AbortSignal): Promise<void> {
    const call: HttpCall = {
      what: "open the broker session",
      method: "POST",
      url: joinUrl(this.#brokerUrl, "session"),
      json: sessionBody(this.#opts.identity),
      timeoutMs: this.#opts.callTimeoutMs ?? 30_000,
      signal,
    };
    const res = await sendAuthed(this.#opts.http, this.#tokens, call);
    if (res.status < 200 || res.status > 299) throw classifyMessageError(apiError(call.what, res), this.#opts.identity);
    const session = readMaybeJson(call, res, TaskAgentSessionResponse);
    if (!session) throw classifyMessageError(apiError(call.what, { ...res, status: 502 }), this.#opts.identity);
    this.#sessionId = session.sessionId;
  }

  poll(status: RunnerStatus, signal: AbortSignal): Promise<ReceivedMessage | undefined> {
    if (!this.#sessionId) throw new SessionExpiredError("the broker session is not open");
    return brokerPoll(this.#opts, this.#tokens, this.#brokerUrl, this.#sessionId, status, signal);
  }

  async done(): Promise<void> {
    // Broker messages are not deleted (spec 6.2).
  }

  acknowledge(runnerRequestId: string, status: RunnerStatus, signal: AbortSignal): Promise<void> {
    if (!this.#sessionId) throw new SessionExpiredError("the broker session is not open");
    return brokerAcknowledge(
      this.#opts,
      this.#tokens,
      this.#brokerUrl,
      this.#sessionId,
      runnerRequestId,
      status,
      signal,
    );
  }

  async close(signal: AbortSignal): Promise<void> {
    if (!this.#sessionId) return;
    this.#sessionId = undefined;
    const call: HttpCall = {
      what: "close the broker session",
      method: "DELETE",
      url: joinUrl(this.#brokerUrl, "session"),
      timeoutMs: 30_000,
      signal,
    };
    const res = await sendAuthed(this.#opts.http, this.#tokens, call);
    if ((res.status < 200 || res.status > 299) && res.status !== 404) throw apiError(call.what, res);
  }
}

async function brokerPoll(
  opts: SessionOptions,
  tokens: RunnerTokens,
  brokerUrl: string,
  sessionId: string,
  status: RunnerStatus,
  signal: AbortSignal,
): Promise<ReceivedMessage | undefined> {
  const url = joinUrl(brokerUrl, "message");
  for (const [k, v] of Object.entries(pollQuery(opts.identity, sessionId, status))) url.searchParams.set(k, v);
  const call: HttpCall = {
    what: "poll the broker for messages",
    method: "GET",
    url,
    timeoutMs: opts.pollTimeoutMs ?? 75_000,
    signal,
  };
  const res = await sendAuthed(opts.http, tokens, call);
  if (res.status < 200 || res.status > 299) throw classifyMessageError(apiError(call.what, res), opts.identity);
  const msg = readMaybeJson(call, res, TaskAgentMessage);
  if (!msg) return undefined;
  return { messageId: msg.messageId, messageType: msg.messageType, body: msg.body, source: "broker" };
}

async function brokerAcknowledge(
  opts: SessionOptions,
  tokens: RunnerTokens,
  brokerUrl: string,
  sessionId: string,
  runnerRequestId: string,
  status: RunnerStatus,
  signal: AbortSignal,
): Promise<void> {
  const url = joinUrl(brokerUrl, "acknowledge");
  const q = pollQuery(opts.identity, sessionId, status);
  for (const k of ["sessionId", "status", "runnerVersion", "os", "architecture"] as const)
    url.searchParams.set(k, q[k]!);
  const call: HttpCall = {
    what: "acknowledge the job request",
    method: "POST",
    url,
    json: { runnerRequestId },
    // Best effort, as in the official runner: a slow acknowledge must not hold up the job.
    timeoutMs: 5_000,
    signal,
  };
  const res = await sendAuthed(opts.http, tokens, call);
  if (res.status < 200 || res.status > 299) throw apiError(call.what, res);
}

export class ClassicSession implements MessageSource {
  readonly kind = "classic" as const;
  readonly #opts: SessionOptions;
  readonly #tokens: RunnerTokens;
  /** Token source for the broker poll of a BrokerMigration (V2 credentials). */
  readonly #brokerTokens: RunnerTokens;
  readonly #locations: Locations;
  readonly #poolId: number;
  readonly #key: KeyObject;
  #session: { id: string; aesKey: Buffer | undefined } | undefined;
  #lastMessageId: number | undefined;
  #migratedBroker: string | undefined;

  constructor(
    opts: SessionOptions & {
      readonly tokens: RunnerTokens;
      readonly brokerTokens: RunnerTokens;
      readonly locations: Locations;
      readonly poolId: number;
      readonly key: KeyObject;
    },
  ) {
    this.#opts = opts;
    this.#tokens = opts.tokens;
    this.#brokerTokens = opts.brokerTokens;
    this.#locations = opts.locations;
    this.#poolId = opts.poolId;
    this.#key = opts.key;
  }

  get sessionId(): string | undefined {
    return this.#session?.id;
  }

  async open(signal: AbortSignal): Promise<void> {
    const call: HttpCall = {
      what: "open the message session",
      method: "POST",
      url: this.#locations.url(LOCATION.sessions, { poolId: this.#poolId }),
      json: sessionBody(this.#opts.identity),
      apiVersion: "5.1-preview.1",
      timeoutMs: this.#opts.callTimeoutMs ?? 30_000,
      signal,
    };
    const res = await sendAuthed(this.#opts.http, this.#tokens, call);
    if (res.status < 200 || res.status > 299) throw classifyMessageError(apiError(call.what, res), this.#opts.identity);
    const session = readMaybeJson(call, res, TaskAgentSessionResponse);
    if (!session) throw classifyMessageError(apiError(call.what, { ...res, status: 502 }), this.#opts.identity);
    const aesKey = session.encryptionKey
      ? decryptSessionKey(this.#key, session.encryptionKey, session.useFipsEncryption === true)
      : undefined;
    this.#session = { id: session.sessionId, aesKey };
  }

  async poll(status: RunnerStatus, signal: AbortSignal): Promise<ReceivedMessage | undefined> {
    const session = this.#session;
    if (!session) throw new SessionExpiredError("the message session is not open");
    const query = pollQuery(this.#opts.identity, session.id, status);
    if (this.#lastMessageId !== undefined) query["lastMessageId"] = String(this.#lastMessageId);
    const call: HttpCall = {
      what: "poll for messages",
      method: "GET",
      url: this.#locations.url(LOCATION.messages, { poolId: this.#poolId }, query),
      apiVersion: "6.0-preview.1",
      timeoutMs: this.#opts.pollTimeoutMs ?? 75_000,
      signal,
    };
    const res = await sendAuthed(this.#opts.http, this.#tokens, call);
    if (res.status < 200 || res.status > 299) throw classifyMessageError(apiError(call.what, res), this.#opts.identity);
    const msg = readMaybeJson(call, res, TaskAgentMessage);
    if (!msg) return undefined;
    this.#lastMessageId = msg.messageId;
    return {
      messageId: msg.messageId,
      messageType: msg.messageType,
      body: decryptMessageBody(session.aesKey, msg.iv, msg.body),
      source: "classic",
    };
  }

  async done(message: ReceivedMessage, signal: AbortSignal): Promise<void> {
    const session = this.#session;
    if (!session || message.source !== "classic") return;
    const call: HttpCall = {
      what: "delete the handled message",
      method: "DELETE",
      url: this.#locations.url(
        LOCATION.messages,
        { poolId: this.#poolId, messageId: message.messageId },
        { sessionId: session.id },
      ),
      apiVersion: "5.1-preview.1",
      timeoutMs: 30_000,
      signal,
    };
    const res = await sendAuthed(this.#opts.http, this.#tokens, call);
    if ((res.status < 200 || res.status > 299) && res.status !== 404) throw apiError(call.what, res);
  }

  acknowledge(runnerRequestId: string, status: RunnerStatus, signal: AbortSignal): Promise<void> {
    // Job references reach a classic runner only through the broker after a BrokerMigration.
    const broker = this.#migratedBroker;
    if (!broker || !this.#session) return Promise.resolve();
    return brokerAcknowledge(this.#opts, this.#brokerTokens, broker, this.#session.id, runnerRequestId, status, signal);
  }

  /** The official listener polls the broker once with the classic session id (spec 1, 5.6). */
  pollBroker(brokerUrl: string, status: RunnerStatus, signal: AbortSignal): Promise<ReceivedMessage | undefined> {
    const session = this.#session;
    if (!session) throw new SessionExpiredError("the message session is not open");
    this.#migratedBroker = brokerUrl;
    return brokerPoll(this.#opts, this.#brokerTokens, brokerUrl, session.id, status, signal);
  }

  async close(signal: AbortSignal): Promise<void> {
    const session = this.#session;
    if (!session) return;
    this.#session = undefined;
    const call: HttpCall = {
      what: "close the message session",
      method: "DELETE",
      url: this.#locations.url(LOCATION.sessions, { poolId: this.#poolId, sessionId: session.id }),
      apiVersion: "5.1-preview.1",
      timeoutMs: 30_000,
      signal,
    };
    const res = await sendAuthed(this.#opts.http, this.#tokens, call);
    if ((res.status < 200 || res.status > 299) && res.status !== 404) throw apiError(call.what, res);
  }
}
