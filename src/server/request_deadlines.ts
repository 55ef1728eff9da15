/**
 * Deadlines of requests this node executes as leader, checked on the Raft tick instead of one
 * setTimeout per request (a timer per SET or GET was a visible share of the leader's CPU).
 * A deadline fires at most one tick late.
 */
export interface DeadlineEntry {
  deadline_ms: number;
  /** Links of the list, kept in deadline order; null when not in a list. */
  prev: DeadlineEntry | null;
  next: DeadlineEntry | null;
  in_list: boolean;
  expire(): void;
}

/** An intrusive list sorted by deadline: O(1) removal, insertion O(1) in the usual case. */
export class DeadlineList {
  private head: DeadlineEntry | null = null;
  private tail: DeadlineEntry | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(entry: DeadlineEntry): void {
    // Deadlines mostly grow with arrival time: walk back from the tail.
    let after = this.tail;
    while (after !== null && after.deadline_ms > entry.deadline_ms) after = after.prev;
    entry.prev = after;
    entry.next = after === null ? this.head : after.next;
    if (entry.next === null) this.tail = entry;
    else entry.next.prev = entry;
    if (after === null) this.head = entry;
    else after.next = entry;
    entry.in_list = true;
    this.count++;
  }

  remove(entry: DeadlineEntry): void {
    if (!entry.in_list) return;
    if (entry.prev === null) this.head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === null) this.tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = null;
    entry.next = null;
    entry.in_list = false;
    this.count--;
  }

  /** Removes every entry whose deadline is at or before `now_ms` and calls its expire(). */
  expireUpTo(now_ms: number): void {
    for (let entry = this.head; entry !== null && entry.deadline_ms <= now_ms; entry = this.head) {
      this.remove(entry);
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
