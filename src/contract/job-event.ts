// JobEvent v1: what an orchestrator reports about a job, in order (per-job `seq`). Delivered at
// least once; consumers dedupe by (jobId, seq). Log text is already masked when it gets here.
import { z } from "zod";

const head = {
  v: z.literal(1),
  jobId: z.string().uuid(),
  seq: z.number().int().nonnegative(),
  /** When the event was emitted, ms since the epoch. */
  t: z.number().int().nonnegative(),
};

/** Index into JobSpec.steps; `null` for job-level lines (set-up, VM boot, tear-down). */
const stepIndex = z.number().int().nonnegative().nullable();
export const StepStage = z.enum(["pre", "main", "post"]);
export type StepStage = z.infer<typeof StepStage>;

export const StepResult = z.enum(["success", "failure", "cancelled", "skipped"]);
export type StepResult = z.infer<typeof StepResult>;
export const JobResult = z.enum(["success", "failure", "cancelled"]);
export type JobResult = z.infer<typeof JobResult>;

export const ProvisioningPhase = z.enum([
  "waiting-for-capacity",
  "creating-disk",
  "booting",
  "kernel",
  "network",
  "ssh",
  "ready",
]);
export type ProvisioningPhase = z.infer<typeof ProvisioningPhase>;

export const LogLine = z.object({ t: z.number().int().nonnegative(), text: z.string() });
export type LogLine = z.infer<typeof LogLine>;

export const MAX_LINES_PER_EVENT = 1_000;

export const JobEvent = z.discriminatedUnion("kind", [
  z.object({
    ...head,
    kind: z.literal("accepted"),
    orchestrator: z.string(),
    /**
     * The orchestrator sends a heartbeat at least this often until the job ends (ms). Absent from
     * orchestrators that send none (older ones): a reader may call a job silent only when it is set.
     */
    heartbeatMs: z.number().int().positive().optional(),
  }),
  z.object({
    ...head,
    kind: z.literal("provisioning"),
    phase: ProvisioningPhase,
    label: z.string(),
    message: z.string().optional(),
  }),
  z.object({
    ...head,
    kind: z.literal("step-started"),
    step: z.number().int().nonnegative(),
    stage: StepStage,
    name: z.string(),
  }),
  z.object({
    ...head,
    kind: z.literal("log"),
    step: stepIndex,
    stage: StepStage,
    lines: z.array(LogLine).min(1).max(MAX_LINES_PER_EVENT),
  }),
  z.object({
    ...head,
    kind: z.literal("annotation"),
    step: stepIndex,
    level: z.enum(["error", "warning", "notice"]),
    message: z.string(),
    title: z.string().optional(),
    file: z.string().optional(),
    line: z.number().int().optional(),
    endLine: z.number().int().optional(),
    col: z.number().int().optional(),
    endColumn: z.number().int().optional(),
  }),
  z.object({
    ...head,
    kind: z.literal("step-finished"),
    step: z.number().int().nonnegative(),
    stage: StepStage,
    /** The result before continue-on-error is applied … */
    outcome: StepResult,
    /** … and after. */
    conclusion: StepResult,
    outputs: z.record(z.string(), z.string()).default({}),
  }),
  z.object({
    ...head,
    kind: z.literal("job-finished"),
    result: JobResult,
    outputs: z.record(z.string(), z.string()).default({}),
    /** Why the job failed or was cancelled, as a sentence for the user. */
    reason: z.string().optional(),
  }),
  /** "Still here": sent by the job's orchestrator every heartbeatMs while it holds the job. */
  z.object({ ...head, kind: z.literal("heartbeat") }),
]);
export type JobEvent = z.infer<typeof JobEvent>;
export type JobEventKind = JobEvent["kind"];
/** An event before the emitter stamped it with v, jobId, seq and t. */
export type JobEventBody = JobEvent extends infer E
  ? E extends JobEvent
    ? Omit<E, "v" | "jobId" | "seq" | "t">
    : never
  : never;
