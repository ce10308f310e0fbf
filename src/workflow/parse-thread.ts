// Reads workflow and action files from jobs and forges on a worker thread, within a time budget
// (DOCUMENT_LIMITS.maxParseMs), so that no document blocks the process's event loop: leases,
// heartbeats, /healthz and the other jobs' logs go on while one is read. The size limits already
// refuse bombs before they expand (bounded-yaml.ts); this bounds what is left, the schema's checks
// that grow with the square of some shapes. One worker, started on first use and reused; replaced
// when a read runs out of time or the worker dies; it keeps the process alive only while it has
// work. Requests are read one at a time, in order; the budget counts from when the worker starts
// reading one. What comes back is plain data, made by the pure parsers.
import { Worker } from "node:worker_threads";
import type { ActionDefinition } from "./action-file.js";
import { DOCUMENT_LIMITS, type DocumentLimits } from "./document-limits.js";
import { type Problem, WorkflowError, WorkflowLimitError } from "./errors.js";
import type { SingleJob } from "./single-job.js";
import type { Workflow } from "./workflow.js";

export interface ParseRequest {
  readonly kind: "workflow" | "action" | "single-job";
  readonly file: string;
  readonly text: string;
}

/** An error as it crosses the thread boundary (class instances do not). */
export type SentError =
  | { readonly kind: "limit"; readonly limit: keyof DocumentLimits; readonly max: number; readonly problems: Problem[] }
  | { readonly kind: "workflow"; readonly problems: Problem[] }
  | { readonly kind: "other"; readonly message: string };

/** What the worker posts: `ready` once it has loaded the parsers, then one answer per request. */
export type ParseReply =
  | { readonly ready: true }
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SentError };

interface Pending {
  readonly id: number;
  readonly req: ParseRequest;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

export interface ParseThreadOptions {
  /** How long one read may take (default DOCUMENT_LIMITS.maxParseMs). */
  readonly budgetMs?: number;
}

/**
 * The worker: bundled (dist/gnomon.mjs) it is dist/parse-worker.mjs beside the bundle; from the
 * sources (tests, tsx) it is parse-worker.ts, which a worker can load only once it has registered
 * tsx's loader itself (Node 20 does not carry `--import` hooks into workers).
 */
function spawnWorker(): Worker {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return new Worker(new URL("./parse-worker.mjs", here));
  const entry = new URL("./parse-worker.ts", here).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  return new Worker(
    `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); })`,
    { eval: true },
  );
}

function rebuild(e: SentError): Error {
  switch (e.kind) {
    case "limit":
      return new WorkflowLimitError(e.limit, e.max, e.problems[0] ?? { file: "", message: "over a limit" });
    case "workflow":
      return new WorkflowError(e.problems);
    case "other":
      return new Error(e.message);
  }
}

export class ParseThread {
  readonly #budgetMs: number;
  readonly #queue: Pending[] = [];
  #worker: Worker | undefined;
  /** The worker has loaded the parsers: the budget counts reading only, not a cold start. */
  #ready = false;
  #current: { readonly pending: Pending; readonly timer: NodeJS.Timeout } | undefined;
  #nextId = 1;

  constructor(opts: ParseThreadOptions = {}) {
    this.#budgetMs = opts.budgetMs ?? DOCUMENT_LIMITS.maxParseMs;
  }

  /** Resolves with the parser's result; rejects with its WorkflowError, or WorkflowLimitError for time. */
  parse(req: ParseRequest): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, req, resolve, reject });
      this.#pump();
    });
  }

  /** Stops the worker; reads not answered yet are rejected. */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    const stopped = new Error("the parser thread was closed");
    this.#settle()?.reject(stopped);
    for (const p of this.#queue.splice(0)) p.reject(stopped);
    await w?.terminate();
  }

  #pump(): void {
    this.#holdProcess();
    if (this.#current || this.#queue.length === 0) return;
    this.#worker ??= this.#start();
    this.#holdProcess();
    if (!this.#ready) return; // pumped again when the worker says it is ready
    const next = this.#queue.shift();
    if (!next) return;
    this.#current = { pending: next, timer: setTimeout(() => this.#timedOut(), this.#budgetMs) };
    this.#worker.postMessage({ id: next.id, ...next.req });
  }

  /** The worker keeps the process alive while it has work, and never when idle. */
  #holdProcess(): void {
    if (this.#current || this.#queue.length > 0) this.#worker?.ref();
    else this.#worker?.unref();
  }

  #start(): Worker {
    this.#ready = false;
    const w = spawnWorker();
    w.on("message", (reply: ParseReply) => {
      if (this.#worker === w) this.#reply(reply); // not one replaced after a timeout
    });
    w.on("error", (err) => this.#died(w, err));
    w.on("exit", (code) => this.#died(w, new Error(`it exited with code ${code}`)));
    return w;
  }

  #settle(): Pending | undefined {
    const c = this.#current;
    if (!c) return undefined;
    clearTimeout(c.timer);
    this.#current = undefined;
    return c.pending;
  }

  #reply(reply: ParseReply): void {
    if ("ready" in reply) {
      this.#ready = true;
      this.#pump();
      return;
    }
    if (this.#current?.pending.id !== reply.id) return;
    const p = this.#settle();
    if (reply.ok) p?.resolve(reply.value);
    else p?.reject(rebuild(reply.error));
    this.#pump();
  }

  #timedOut(): void {
    const p = this.#settle();
    if (!p) return;
    const w = this.#worker;
    this.#worker = undefined;
    void w?.terminate();
    const s = this.#budgetMs / 1000;
    p.reject(
      new WorkflowLimitError("maxParseMs", this.#budgetMs, {
        file: p.req.file,
        message:
          `reading the file took longer than ${s} s, gnomon's limit for a workflow or action file (maxParseMs), ` +
          "so it was stopped; make it simpler: fewer jobs in one workflow, or long scripts with many " +
          "expressions moved into files of the repository",
      }),
    );
    this.#pump();
  }

  #died(w: Worker, err: Error): void {
    if (this.#worker !== w) return; // one this thread replaced or closed
    this.#worker = undefined;
    // The read under way, or (a worker that never got ready) the next one, fails; the rest go on.
    const p = this.#settle() ?? this.#queue.shift();
    p?.reject(new Error(`gnomon's parser thread stopped while reading ${p.req.file}: ${err.message}`, { cause: err }));
    this.#pump();
  }
}

let shared: ParseThread | undefined;
const thread = (): ParseThread => (shared ??= new ParseThread());

// The worker ran the pure parsers below on the text; their results are plain data, cloned across.

/** parseWorkflowFile() on the parser thread. */
export async function readWorkflowFile(file: string, text: string): Promise<Workflow> {
  return (await thread().parse({ kind: "workflow", file, text })) as Workflow;
}

/** parseActionFile() on the parser thread. */
export async function readActionFile(file: string, text: string): Promise<ActionDefinition> {
  return (await thread().parse({ kind: "action", file, text })) as ActionDefinition;
}

/** parseSingleJobWorkflow() on the parser thread. */
export async function readSingleJobWorkflow(text: string, file: string): Promise<SingleJob> {
  return (await thread().parse({ kind: "single-job", file, text })) as SingleJob;
}
