// Pure credit planning for a job consumer that spans several labels. RabbitMQ quorum queues have no
// global (per-channel) prefetch, so each label gets its own consumers ("tags"), each with a fixed
// prefetch of its own; this module decides which tags to cancel and which to add so that
//   held outside live tags + Σ credit of live tags ≤ prefetch
// holds at every instant. The broker then enforces the consumer's limit exactly: a delivery can
// never exceed it, so nothing is ever bounced back with nack (which puts a job at the back of a
// quorum queue). It never talks to the broker and never reads a clock.

export interface TagState {
  readonly id: string;
  /** The tag's prefetch: the broker delivers on it until it holds this many unsettled. */
  readonly credit: number;
  /** Deliveries it holds now (handed to the callback, parked, or being dead-lettered). */
  readonly held: number;
}

export interface LabelState {
  readonly label: string;
  /** The label's live tags (consuming, not being cancelled). */
  readonly tags: readonly TagState[];
  /** Ready jobs in the label's queue as last probed (after subtracting deliveries since); undefined: unknown. */
  readonly depth: number | undefined;
  /** When the label last delivered a job, as a counter: smaller means served longer ago; 0 = never. */
  readonly lastServed: number;
}

export interface CreditInput {
  /** The consumer's prefetch. */
  readonly prefetch: number;
  /**
   * What is committed outside live tags: deliveries still held on cancelled tags and on earlier
   * channels, plus the full credit of tags whose cancel is not confirmed yet.
   */
  readonly committedOutside: number;
  readonly labels: readonly LabelState[];
  /** Smallest credit worth a new tag while more budget is still to come back (limits tag churn). */
  readonly growMin: number;
}

export interface CreditChanges {
  /** Tags to cancel now; plan again once the broker confirmed the cancels. */
  readonly cancel: readonly string[];
  /** Tags to add, in this order, each with its prefetch. Empty whenever `cancel` is not. */
  readonly consume: readonly { readonly label: string; readonly credit: number }[];
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const creditOf = (l: LabelState): number => sum(l.tags.map((t) => t.credit));
const heldOf = (l: LabelState): number => sum(l.tags.map((t) => t.held));

/** Least recently served first; the label name breaks ties so plans are deterministic. */
function byService(a: LabelState, b: LabelState): number {
  return a.lastServed - b.lastServed || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0);
}

/**
 * The credit each label should have, summing to at most `budget`. One label takes all of it.
 * Several share it max-min fairly: first the labels with known backlog (up to what they hold plus
 * their backlog), then one credit per label to notice new jobs, then the rest round-robin; ties go
 * to the label served longest ago, so two backlogged labels on one slot take turns.
 */
export function planCredit(budget: number, labels: readonly LabelState[]): ReadonlyMap<string, number> {
  const alloc = new Map(labels.map((l) => [l.label, 0]));
  let remaining = Math.max(0, budget);
  if (labels.length === 1) {
    alloc.set(labels[0]!.label, remaining);
    return alloc;
  }
  const order = [...labels].sort(byService);
  const fill = (cap: (l: LabelState) => number): void => {
    let progressed = true;
    while (remaining > 0 && progressed) {
      progressed = false;
      for (const l of order) {
        const a = alloc.get(l.label)!;
        if (remaining > 0 && a < cap(l)) {
          alloc.set(l.label, a + 1);
          remaining -= 1;
          progressed = true;
        }
      }
    }
  };
  fill((l) => (l.depth !== undefined && l.depth > 0 ? heldOf(l) + l.depth : 0));
  fill((l) => heldOf(l) + 1);
  fill(() => Number.POSITIVE_INFINITY);
  return alloc;
}

/** The next step towards the plan: cancels first (awaited by the caller), then new tags. */
export function planChanges(input: CreditInput): CreditChanges {
  const { prefetch, labels } = input;
  const budget = prefetch - input.committedOutside;
  const target = planCredit(budget, labels);
  const credit = new Map(labels.map((l) => [l.label, creditOf(l)]));
  const totalCredit = sum([...credit.values()]);

  // 1. The invariant: live credit must fit the budget. Cancelling a tag moves what it holds outside,
  //    so it frees (credit − held); a full tag frees nothing now but must still stop replenishing.
  if (totalCredit > budget) {
    const tags = labels
      .flatMap((l) => l.tags.map((t) => ({ t, surplus: credit.get(l.label)! > target.get(l.label)! })))
      .sort((a, b) => Number(b.surplus) - Number(a.surplus) || b.t.credit - b.t.held - (a.t.credit - a.t.held));
    const cancel: string[] = [];
    let over = totalCredit - budget;
    for (const { t } of tags) {
      if (over <= 0) break;
      cancel.push(t.id);
      over -= t.credit - t.held;
    }
    // Freeing nothing more means every remaining tag is full with budget ≤ held: all must go.
    if (over > 0) for (const { t } of tags) if (!cancel.includes(t.id)) cancel.push(t.id);
    return { cancel, consume: [] };
  }

  // 2. Fairness: labels with known backlog below their share take credit from labels above theirs.
  //    A cancelled tag's credit comes back once what it holds is settled, instead of replenishing it.
  //    Only tags nothing can be on its way to are taken: full ones, or idle ones of an empty queue.
  //    (A quorum queue returns a delivery in transit to a cancelled consumer: redelivered, and it
  //    can lose its place to the next job.)
  let free = budget - totalCredit;
  const backlogDeficit = sum(
    labels.map((l) =>
      l.depth !== undefined && l.depth > 0 ? Math.max(0, target.get(l.label)! - credit.get(l.label)!) : 0,
    ),
  );
  if (backlogDeficit > free) {
    let toFree = backlogDeficit - free;
    const cancel: string[] = [];
    const surplus = labels.filter((l) => credit.get(l.label)! > target.get(l.label)!);
    for (const l of surplus) {
      let c = credit.get(l.label)!;
      const quiet = (t: TagState): boolean => t.held >= t.credit || l.depth === 0;
      for (const t of l.tags.filter(quiet).sort((a, b) => a.held - b.held || b.credit - a.credit)) {
        if (toFree <= 0 || c <= target.get(l.label)!) break;
        cancel.push(t.id);
        c -= t.credit;
        toFree -= t.credit;
      }
    }
    if (cancel.length > 0) return { cancel, consume: [] };
  }

  // 3. Growth from free budget, least recently served first. Small top-ups wait while budget is
  //    still coming back from cancelled tags, so a shrink does not leave a trail of one-credit tags.
  const consume: { label: string; credit: number }[] = [];
  for (const l of [...labels].sort(byService)) {
    const want = target.get(l.label)! - credit.get(l.label)!;
    const g = Math.min(want, free);
    if (g <= 0) continue;
    if (g >= input.growMin || credit.get(l.label) === 0 || input.committedOutside === 0) {
      consume.push({ label: l.label, credit: g });
      free -= g;
    }
  }
  return { cancel: [], consume };
}
