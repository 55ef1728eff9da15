import { assert } from '../util/assert';
import { IntrusiveList, type ListLinks } from '../util/intrusive_list';

/** One request of a connection between dispatch and its final reply (links: connection order). */
export interface LaneEntry extends ListLinks<LaneEntry> {
  /** Where its current attempt went: a leader's client address, or LOCAL_TARGET; null if none. */
  target: string | null;
  /** Set while it waits for its turn. */
  wake: (() => void) | null;
}

/** The target of a request this node executes itself as leader. */
export const LOCAL_TARGET = 'local';

/**
 * Keeps one client connection's requests in their original order across leader changes: a
 * request may be sent (or executed locally) only when every earlier unfinished request of the
 * connection is in flight to the same target, whose FIFO link (or local proposal order) then
 * keeps the order. So a request retried after NOT_LEADER is re-sent before any later request of
 * its connection reaches the new leader.
 *
 * Cost: the common case (the newest request, everything before it on one target) is O(1) from
 * per-target counts; otherwise one scan from the front. Only the earliest waiting request is woken
 * by a change: every later waiting one is behind it (it has no target), so it could not go anyway.
 */
export class ForwardLane {
  /** Unfinished requests in connection order. */
  private readonly entries = new IntrusiveList<LaneEntry>();
  /** Counts per target: the two the common case uses are fields, not Map lookups. */
  private untargeted = 0;
  private local = 0;
  private readonly per_remote_target = new Map<string, number>();
  private newest: LaneEntry | null = null;
  /** Entries waiting in waitTurn: with none (the common case) a change has nobody to wake. */
  private waiting = 0;

  /** Registers a request in connection order; release() it when its reply is final. */
  enter(): LaneEntry {
    const entry: LaneEntry = { target: null, wake: null, prev: null, next: null, in_list: false };
    this.entries.append(entry);
    this.count(null, 1);
    this.newest = entry;
    return entry;
  }

  /** Whether `entry` may go to `target` now. */
  mayGo(entry: LaneEntry, target: string): boolean {
    assert(entry.in_list, 'ForwardLane.mayGo for an entry not in the lane');
    if (entry === this.newest) {
      const others_on_target = this.countOf(target) - (entry.target === target ? 1 : 0);
      return others_on_target === this.entries.size - 1;
    }
    for (let earlier = this.entries.head; earlier !== null; earlier = earlier.next) {
      if (earlier === entry) return true;
      if (earlier.target !== target) return false;
    }
    return true;
  }

  /** Marks `entry` in flight to `target` (after mayGo said yes). */
  sent(entry: LaneEntry, target: string): void {
    this.retarget(entry, target);
  }

  /** The attempt came back refused or unsent: later requests must wait for its retry. */
  retrying(entry: LaneEntry): void {
    this.retarget(entry, null);
  }

  release(entry: LaneEntry): void {
    assert(entry.in_list, 'ForwardLane.release of an unknown entry');
    this.entries.remove(entry);
    this.count(entry.target, -1);
    if (this.newest === entry) this.newest = null;
    this.wakeEarliest();
  }

  /** Waits until a change may let `entry` go, or `timeout_ms` passes. */
  waitTurn(entry: LaneEntry, timeout_ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        entry.wake = null;
        this.waiting--;
        resolve();
      };
      const timer = setTimeout(done, timeout_ms);
      this.waiting++;
      entry.wake = () => {
        clearTimeout(timer);
        done();
      };
    });
  }

  private retarget(entry: LaneEntry, target: string | null): void {
    this.count(entry.target, -1);
    entry.target = target;
    this.count(target, 1);
    if (target !== null) this.wakeEarliest();
  }

  private countOf(target: string | null): number {
    if (target === null) return this.untargeted;
    if (target === LOCAL_TARGET) return this.local;
    return this.per_remote_target.get(target) ?? 0;
  }

  private count(target: string | null, delta: number): void {
    const next = this.countOf(target) + delta;
    assert(next >= 0, 'ForwardLane target count below zero');
    if (target === null) this.untargeted = next;
    else if (target === LOCAL_TARGET) this.local = next;
    // A zero count stays (targets are few: the leaders' addresses): deleting the last key shrank
    // and regrew the map's table on every request.
    else this.per_remote_target.set(target, next);
  }

  private wakeEarliest(): void {
    // Without this check every send and release scanned the whole lane: O(n^2) for a pipeline of
    // n requests in flight (16k of them stalled a leader's event loop for seconds).
    if (this.waiting === 0) return;
    for (let entry = this.entries.head; entry !== null; entry = entry.next) {
      if (entry.wake !== null) {
        entry.wake();
        return;
      }
      // Nothing after a request with no target can go: stop looking.
      if (entry.target === null) return;
    }
  }
}
