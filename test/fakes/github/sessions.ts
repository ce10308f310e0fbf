// Message sessions and their queues (spec 5), shared by the broker (github.com) and the classic
// tenant (GHES): opening a session (with its RSA-OAEP-encrypted AES key on the classic side), the
// assignment of queued jobs to Online runners, and the long poll (AES-CBC bodies on the classic side).
import { constants, createCipheriv, publicEncrypt, randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { GitHubBooks } from "./books.js";
import { brokerError, HttpError, vssError } from "./http-error.js";
import { deliveredMessage } from "./job-message.js";
import type { FakeJob, FakeRunner, QueuedMessage, Session } from "./shapes.js";

export function createSession(gh: GitHubBooks, req: IncomingMessage, raw: Buffer, kind: "broker" | "classic"): unknown {
  const runner = gh.runnerOf(req);
  const body = gh.json(raw);
  const agent = (body["agent"] ?? body["Agent"]) as Record<string, unknown> | undefined;
  if (!agent || Number(agent["id"] ?? agent["ID"]) !== runner.id)
    throw kind === "classic"
      ? vssError(400, "ArgumentException", "agent.id does not match the token")
      : new HttpError(400, {});
  gh.checkVersion(String(agent["version"] ?? ""), kind);
  if ([...gh.sessions.values()].some((s) => s.runnerId === runner.id && s.kind === kind))
    throw kind === "classic"
      ? vssError(409, "TaskAgentSessionConflictException", `A session for agent ${runner.name} already exists.`)
      : new HttpError(409, { message: "conflict" });
  const id = randomUUID();
  let aesKey: Buffer | undefined;
  const out: Record<string, unknown> = { sessionId: id, ownerName: body["ownerName"], agent };
  if (kind === "classic") {
    aesKey = randomBytes(32);
    out["encryptionKey"] = {
      encrypted: true,
      value: publicEncrypt(
        {
          key: runner.publicKey,
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: gh.opts.useFipsEncryption ? "sha256" : "sha1",
        },
        aesKey,
      ).toString("base64"),
    };
    out["useFipsEncryption"] = gh.opts.useFipsEncryption;
  }
  gh.sessions.set(id, { id, runnerId: runner.id, kind, aesKey, messages: [] });
  return out;
}

/**
 * Finds work for an Online runner: the oldest queued job whose labels it carries. An ephemeral
 * runner gets one assignment in its life: GitHub consumes the registration with it, so a runner
 * that lost that job to another (acquirejob 404/409) is never given another (actions/runner#4617).
 */
export function assign(gh: GitHubBooks, session: Session, runner: FakeRunner): void {
  if (runner.ephemeral && runner.assignments > 0) return;
  if ([...gh.jobs.values()].some((j) => j.runnerId === runner.id && (j.state === "assigned" || j.state === "acquired")))
    return;
  const have = new Set(runner.labels.map((l) => l.toLowerCase()));
  const job = [...gh.jobs.values()].find(
    (j) => j.state === "queued" && j.labels.every((l) => have.has(l.toLowerCase())),
  );
  if (!job) return;
  job.state = "assigned";
  job.runnerId = runner.id;
  runner.assignments += 1;
  if (session.kind === "broker" || gh.migrateToBroker) {
    job.flow = session.kind === "broker" ? "v2" : "migrated";
    if (session.kind === "classic")
      gh.enqueue(session, "BrokerMigration", JSON.stringify({ brokerBaseUrl: `${gh.url}/broker/` }), job.jobId);
    else gh.enqueue(session, "RunnerJobRequest", jobRef(gh, job), job.jobId);
  } else {
    job.flow = "classic";
    job.state = "acquired"; // a classic job is the runner's once delivered; its lock runs from now
    job.lockedUntil = Date.now() + gh.opts.lockMs;
    gh.enqueue(session, "PipelineAgentJobRequest", JSON.stringify(deliveredMessage(gh, job, "classic")), job.jobId);
  }
}

export function jobRef(gh: GitHubBooks, job: FakeJob): string {
  return JSON.stringify({
    id: randomUUID(),
    runner_request_id: job.runnerRequestId,
    should_acknowledge: true,
    run_service_url: `${gh.url}/run/`,
    billing_owner_id: "U_kgDOAH-IyQ",
  });
}

export async function poll(
  gh: GitHubBooks,
  req: IncomingMessage,
  url: URL,
  via: "broker" | "classic",
  closed: AbortSignal,
): Promise<unknown> {
  const runner = gh.runnerOf(req);
  const sessionId = url.searchParams.get("sessionId") ?? "";
  const session = gh.sessions.get(sessionId);
  gh.checkVersion(url.searchParams.get("runnerVersion"), via);
  if (!session || session.runnerId !== runner.id)
    throw via === "broker"
      ? brokerError(400, "RunnerSessionInvalid", "the session is not valid")
      : vssError(404, "TaskAgentSessionExpiredException", "the session has expired");
  if (gh.faults.pollErrors > 0) {
    gh.faults.pollErrors -= 1;
    throw new HttpError(503, { message: "service unavailable" });
  }
  const status = url.searchParams.get("status");
  const lastId = Number(url.searchParams.get("lastMessageId") ?? "0");
  const migrated = via === "broker" && session.kind === "classic";
  const next = (): QueuedMessage | undefined => {
    if (status === "Online" && !migrated) assign(gh, session, runner);
    if (migrated) {
      // The broker poll of a migrated classic runner delivers the job reference of its assignment.
      const job = [...gh.jobs.values()].find(
        (j) => j.runnerId === runner.id && j.state === "assigned" && j.flow === "migrated",
      );
      if (job && !session.messages.some((m) => m.jobId === job.jobId && m.messageType === "RunnerJobRequest")) {
        const m = gh.enqueue(session, "RunnerJobRequest", jobRef(gh, job), job.jobId);
        m.delivered = false;
      }
      return session.messages.find((m) => m.messageType === "RunnerJobRequest" && !m.delivered);
    }
    if (via === "broker") return session.messages.find((m) => !m.delivered);
    return session.messages.find((m) => !m.deleted && m.messageType !== "RunnerJobRequest" && m.messageId > lastId);
  };
  let msg = next();
  if (!msg) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        gh.changes.off("change", onChange);
        gh.changes.off("close", done);
        closed.removeEventListener("abort", done);
        resolve();
      };
      const onChange = () => {
        if (runner.deleted || next()) done();
      };
      const timer = setTimeout(done, gh.opts.pollHoldMs);
      gh.changes.on("change", onChange);
      gh.changes.once("close", done);
      closed.addEventListener("abort", done, { once: true });
    });
    gh.runnerOf(req); // the registration may have gone while the poll was held
    msg = next();
  }
  if (!msg || closed.aborted) return via === "broker" ? { status: 200, raw: "" } : undefined;
  msg.delivered = true;
  if (via === "broker" || msg.messageType === "RunnerJobRequest")
    return { messageId: msg.messageId, messageType: msg.messageType, body: msg.body };
  const iv = randomBytes(16);
  const cipher = createCipheriv("aes-256-cbc", session.aesKey!, iv);
  // The classic service's CryptoStream writes a UTF-8 byte-order mark first (spec 5.2).
  const ct = Buffer.concat([cipher.update(Buffer.from(`\uFEFF${msg.body}`, "utf8")), cipher.final()]);
  return {
    messageId: msg.messageId,
    messageType: msg.messageType,
    iv: iv.toString("base64"),
    body: ct.toString("base64"),
  };
}
