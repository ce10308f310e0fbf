// Turns the engine's event bodies into contract JobEvents for one job: version, job id, a
// monotonic per-job seq and a timestamp. The orchestrator wraps its publisher with this.
import type { JobEvent } from "../contract/job-event.js";
import type { Emit } from "./job-log.js";

export function stampEvents(
  jobId: string,
  publish: (event: JobEvent) => void,
  now: () => number = Date.now,
  firstSeq = 0,
): Emit {
  let seq = firstSeq;
  return (body) => publish({ ...body, v: 1, jobId, seq: seq++, t: now() } as JobEvent);
}
