// A forge runner and its orchestrators may run on different hosts: a label that no orchestrator
// serves queues its jobs for ever. The runner says so to the operator when it starts, and in the
// job's own log when it queues a job nobody is there to take, instead of leaving both to guess.
import type { JobBus } from "../queue/bus.js";
import type { Logger } from "../telemetry/log.js";

/** Warns once per queue (runs-on label) that no orchestrator consumes right now. */
export async function warnUnservedLabels(bus: JobBus, queues: readonly string[], log: Logger): Promise<void> {
  for (const label of queues) {
    const n = await bus.jobConsumers(label).catch(() => undefined);
    if (n === 0)
      log.warn(
        { label },
        `no orchestrator serves runs-on "${label}" right now: its jobs wait in the queue until one does (start a gnomon orchestrator whose image catalog has "${label}", or register this runner with labels the fleet serves)`,
      );
  }
}

/** A line for the job's log when no orchestrator serves its label right now; undefined otherwise. */
export async function unservedNotice(bus: JobBus, runsOn: string): Promise<string | undefined> {
  const n = await bus.jobConsumers(runsOn).catch(() => undefined);
  if (n !== 0) return undefined;
  return `No gnomon orchestrator serves runs-on "${runsOn}" at the moment; the job waits in the queue until one that has an image for "${runsOn}" connects.`;
}
