// The live console (spec 6.6): the WebSocket a runner streams a running step's lines into.
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { WebSocketServer } from "ws";
import type { GitHubBooks } from "./books.js";
import { parseObject } from "./http-error.js";

/**
 * The live console (spec 6.6): a WebSocket at /_ws/ingest.sock for a job's own token, taking
 * {count, value, stepId, startLine} text messages; each lands in the job's `feed`. The upgrade
 * request is recorded like any other request, and every message as received in `liveMessages`,
 * before it is looked at: a malformed one is kept too. A message arrives in 1 KiB frames (spec
 * 6.6); it is kept whole, so a secret split across two frames is still found in it.
 */
export function acceptLiveFeed(
  gh: GitHubBooks,
  sockets: WebSocketServer,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): void {
  const recorded = gh.record(req, Buffer.alloc(0));
  const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
  const job = [...gh.jobs.values()].find((j) => token !== undefined && j.accessToken === token);
  const refusal =
    (req.url ?? "").split("?")[0] !== "/_ws/ingest.sock"
      ? "404 Not Found"
      : gh.faults.feedDown
        ? "503 Service Unavailable"
        : job?.state !== "acquired"
          ? "401 Unauthorized"
          : undefined;
  if (refusal !== undefined || !job) {
    recorded.status = Number(refusal?.split(" ")[0] ?? 401);
    socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    gh.changed();
    return;
  }
  recorded.status = 101;
  sockets.handleUpgrade(req, socket, head, (ws) => {
    ws.on("message", (data, isBinary) => {
      const text = Buffer.isBuffer(data)
        ? data.toString("utf8")
        : Array.isArray(data)
          ? Buffer.concat(data).toString("utf8")
          : Buffer.from(data).toString("utf8");
      gh.liveMessages.push({ jobId: job.jobId, binary: isBinary, data: text, at: Date.now() });
      const b = isBinary ? undefined : parseObject(text);
      const value = b?.["value"];
      if (!b || !Array.isArray(value) || b["count"] !== value.length || !(Number(b["startLine"]) >= 1)) {
        ws.close(1003, "bad feed message");
        return;
      }
      job.feed.push({ stepId: String(b["stepId"]), startLine: Number(b["startLine"]), lines: value as string[] });
      gh.changes.emit("change");
    });
  });
}
