// The question the poller asks before every FetchTask: could a task start now? Today the answer is
// the runner's own capacity (forgejo.capacity slots); the seam lets the orchestrator side answer
// later with the fleet's free VM slots per label, without the poller changing.
import type { Slot, Slots } from "../../lifecycle/slots.js";

export interface TaskCapacity {
  /**
   * Waits until one more task for any of `labels` could start, and holds that room until the slot
   * is released (when the task's final report is done). Rejects with the signal's reason.
   */
  acquire(labels: readonly string[], signal: AbortSignal): Promise<Slot>;
  /** Room for one more task right now, or undefined: how a multi-task fetch sizes its request. */
  tryAcquire(labels: readonly string[]): Slot | undefined;
  /** Tasks that could start right now (for logs and task_capacity). */
  free(labels: readonly string[]): number;
}

/**
 * Capacity from a local slot pool, whatever the label. A fleet-aware gate must keep in mind that
 * FetchTask cannot ask for one label: Forgejo hands out a job for any of the runner's labels, so
 * such a gate should only open when every declared label has room (or the labels are split over
 * several registered runners).
 */
export function localCapacity(slots: Slots): TaskCapacity {
  return {
    acquire: (_labels, signal) => slots.acquire(signal),
    tryAcquire: () => slots.tryAcquire(),
    free: () => slots.free,
  };
}
