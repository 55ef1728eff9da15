/**
 * Deadlines of requests this node executes as leader, checked on the Raft tick instead of one
 * setTimeout per request (a timer per SET or GET was a visible share of the leader's CPU).
 * A deadline fires at most one tick late.
 */
import { IntrusiveList, type ListLinks } from '../util/intrusive_list';

export interface DeadlineEntry extends ListLinks<DeadlineEntry> {
  deadline_ms: number;
  expire(): void;
}

/** Entries sorted by deadline: O(1) removal, insertion O(1) in the usual case. */
export class DeadlineList {
  private readonly list = new IntrusiveList<DeadlineEntry>();

  get size(): number {
    return this.list.size;
  }

  add(entry: DeadlineEntry): void {
    // Deadlines mostly grow with arrival time: walk back from the tail.
    let after = this.list.tail;
    while (after !== null && after.deadline_ms > entry.deadline_ms) after = after.prev;
    this.list.insertAfter(after, entry);
  }

  remove(entry: DeadlineEntry): void {
    this.list.remove(entry);
  }

  /** Removes every entry whose deadline is at or before `now_ms` and calls its expire(). */
  expireUpTo(now_ms: number): void {
    for (let entry = this.list.head; entry !== null; entry = this.list.head) {
      if (entry.deadline_ms > now_ms) return;
      this.list.remove(entry);
      entry.expire();
    }
  }
}

const NOTHING_TO_ANSWER = (): void => undefined;

/** One command this node executes as leader, between its proposal (or read) and its reply. */
export class LocalRequest implements DeadlineEntry {
  prev: DeadlineEntry | null = null;
  next: DeadlineEntry | null = null;
  in_list = false;
  settled = false;
  /** What to answer when the deadline passes. */
  on_expire: () => void = NOTHING_TO_ANSWER; // shared: a closure per request would be garbage
  /** Moved mode, writes: answers at once when this node stops leading. */
  on_step_down: (() => void) | null = null;

  constructor(readonly deadline_ms: number) {}

  expire(): void {
    this.on_expire();
  }
}
