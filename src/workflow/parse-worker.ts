// The entry point of the parser's worker thread (parse-thread.ts starts it; the build bundles it as
// dist/parse-worker.mjs): reads one workflow, action file or Forgejo payload per message with the
// pure parsers and answers with plain data, or with the error's parts so the caller can rebuild it.
import { parentPort } from "node:worker_threads";
import { parseActionFile } from "./action-file.js";
import { WorkflowError, WorkflowLimitError } from "./errors.js";
import type { ParseReply, ParseRequest, SentError } from "./parse-thread.js";
import { parseSingleJobWorkflow } from "./single-job.js";
import { parseWorkflowFile } from "./workflow.js";

const port = parentPort;
if (!port) throw new Error("parse-worker.ts runs only as a worker thread (see parse-thread.ts)");

function sent(err: unknown): SentError {
  if (err instanceof WorkflowLimitError)
    return { kind: "limit", limit: err.limit, max: err.max, problems: [...err.problems] };
  if (err instanceof WorkflowError) return { kind: "workflow", problems: [...err.problems] };
  return { kind: "other", message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
}

async function parse(req: ParseRequest): Promise<unknown> {
  switch (req.kind) {
    case "workflow":
      return await parseWorkflowFile(req.file, req.text);
    case "action":
      return parseActionFile(req.file, req.text);
    case "single-job":
      return await parseSingleJobWorkflow(req.text, req.file);
  }
}

port.on("message", (req: ParseRequest & { readonly id: number }) => {
  parse(req).then(
    (value) => port.postMessage({ id: req.id, ok: true, value } satisfies ParseReply),
    (err: unknown) => port.postMessage({ id: req.id, ok: false, error: sent(err) } satisfies ParseReply),
  );
});
port.postMessage({ ready: true } satisfies ParseReply);
