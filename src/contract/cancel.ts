// Cancel v1: broadcast to every orchestrator; the one running the job aborts it, the others ignore it.
import { z } from "zod";

export const Cancel = z.object({
  v: z.literal(1),
  jobId: z.string().uuid(),
  /** Shown as the job's last words, e.g. "cancelled on Forgejo". */
  reason: z.string().min(1),
  t: z.number().int().nonnegative(),
});
export type Cancel = z.infer<typeof Cancel>;
