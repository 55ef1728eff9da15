import { LOG_ENTRY_HEADER_BYTES, type LogEntry } from './protocol';
import type { CommittedEntry } from './types';
import { assert } from '../util/assert';

/**
 * The in-memory Raft log (index 1 is the first entry; index 0 is the empty
 * prefix with term 0) plus the bookkeeping that ties it to the disk:
 * which suffix has not yet been handed out for persistence, and which prefix
 * is known durable.
 *
 * Invariant, asserted after every mutation: applied <= committed <= last_index
 * (etcd's log.go keeps the same order): nothing is applied before it commits,
 * nothing commits that is not in the log.
 */
export class RaftLog {
  private readonly entries: LogEntry[];
  /** Highest index known to be durable on this node's disk. */
  private stable_index: number;
  /** First index that the next Ready must persist (last_index + 1 when nothing is pending). */
  private unstable_from: number;
  /** Lowest index truncated since the outstanding Ready was taken (Infinity if none). */
  private truncated_since_ready = Infinity;
  /** A truncation not yet handed out: the disk still holds the dropped suffix. */
  private truncation_pending = false;
  /** Data bytes of entries above `committed`; bounds the uncommitted tail whatever the term. */
  private uncommitted_bytes_total = 0;
  private committed_index: number;
  /**
   * Highest index handed out to be applied. Committed entries are replayed into a fresh state
   * machine on every start (no snapshots yet), so it starts at 0.
   */
  private applied_index = 0;

  constructor(restored_entries: LogEntry[], committed: number) {
    this.entries = restored_entries.slice();
    this.stable_index = this.entries.length;
    this.unstable_from = this.entries.length + 1;
    // A torn write may keep a hard state whose commit outruns the entries on disk.
    this.committed_index = Math.min(committed, this.entries.length);
    for (let i = this.committed_index; i < this.entries.length; i++)
      this.uncommitted_bytes_total += this.entries[i]!.data.length;
    this.checkInvariant();
  }

  get committed(): number {
    return this.committed_index;
  }

  get applied(): number {
    return this.applied_index;
  }

  get last_index(): number {
    return this.entries.length;
  }

  get last_term(): number {
    return this.term(this.entries.length);
  }

  get stable(): number {
    return this.stable_index;
  }

  get uncommitted_bytes(): number {
    return this.uncommitted_bytes_total;
  }

  /** Term of the entry at `index`; 0 for index 0; -1 if beyond the log. */
  term(index: number): number {
    if (index === 0) return 0;
    const entry = this.entries[index - 1];
    return entry === undefined ? -1 : entry.term;
  }

  entry(index: number): LogEntry {
    const entry = this.entries[index - 1];
    assert(entry !== undefined, `log entry ${index} exists (last ${this.entries.length})`);
    return entry;
  }

  /** Entries [from, to] inclusive. */
  slice(from: number, to: number): LogEntry[] {
    return this.entries.slice(from - 1, to);
  }

  /** Entries from `from` limited by count and bytes; always at least one entry if any exists. */
  sliceLimited(from: number, count_max: number, bytes_max: number): LogEntry[] {
    const out: LogEntry[] = [];
    let bytes = 0;
    for (let index = from; index <= this.entries.length && out.length < count_max; index++) {
      const entry = this.entries[index - 1]!;
      const size = LOG_ENTRY_HEADER_BYTES + entry.data.length;
      if (out.length > 0 && bytes + size > bytes_max) break;
      out.push(entry);
      bytes += size;
    }
    return out;
  }

  append(entry: LogEntry): number {
    this.entries.push(entry);
    this.uncommitted_bytes_total += entry.data.length;
    this.checkInvariant();
    return this.entries.length;
  }

  /** Drop entries at index >= from. Never touches committed entries. */
  truncateFrom(from: number): void {
    assert(
      from > this.committed_index,
      `truncation at ${from} would remove committed entries (commit ${this.committed_index})`,
    );
    if (from > this.entries.length) return;
    for (let i = from - 1; i < this.entries.length; i++)
      this.uncommitted_bytes_total -= this.entries[i]!.data.length;
    this.entries.length = from - 1;
    if (this.stable_index >= from) this.stable_index = from - 1;
    if (this.unstable_from > from) this.unstable_from = from;
    if (from < this.truncated_since_ready) this.truncated_since_ready = from;
    this.truncation_pending = true;
    this.checkInvariant();
  }

  commitTo(index: number): void {
    assert(
      index <= this.entries.length,
      `commit ${index} beyond last index ${this.entries.length}`,
    );
    if (index <= this.committed_index) return;
    for (let i = this.committed_index; i < index; i++)
      this.uncommitted_bytes_total -= this.entries[i]!.data.length;
    this.committed_index = index;
    this.checkInvariant();
  }

  /** Hands out up to `count_max` committed entries after `applied`, in order, to be applied. */
  takeCommitted(count_max: number): CommittedEntry[] {
    const apply_to = Math.min(this.committed_index, this.applied_index + count_max);
    const committed: CommittedEntry[] = [];
    for (let index = this.applied_index + 1; index <= apply_to; index++)
      committed.push({ index, entry: this.entry(index) });
    this.applied_index = apply_to;
    this.checkInvariant();
    return committed;
  }

  /** True if a log ending at (last_index, last_term) is at least as up to date as ours (§5.4.1). */
  isUpToDate(last_index: number, last_term: number): boolean {
    return (
      last_term > this.last_term || (last_term === this.last_term && last_index >= this.last_index)
    );
  }

  /** Last index handed out for persistence (durable once the outstanding Ready is advanced). */
  get handed_out(): number {
    return this.unstable_from - 1;
  }

  hasUnstable(): boolean {
    return this.unstable_from <= this.entries.length || this.truncation_pending;
  }

  /**
   * Hands out the next part of the unstable suffix for persistence, at most `count_max` entries
   * and `bytes_max` data bytes (at least one entry); call markStable with its end once durable.
   */
  takeUnstable(
    count_max: number,
    bytes_max: number,
  ): { first_index: number; entries: LogEntry[] } | null {
    this.truncated_since_ready = Infinity;
    const truncation_pending = this.truncation_pending;
    this.truncation_pending = false;
    if (this.unstable_from > this.entries.length && !truncation_pending) return null;
    const first_index = this.unstable_from;
    const entries: LogEntry[] = [];
    let bytes = 0;
    for (
      let index = first_index;
      index <= this.entries.length && entries.length < count_max;
      index++
    ) {
      const entry = this.entries[index - 1]!;
      if (entries.length > 0 && bytes + entry.data.length > bytes_max) break;
      entries.push(entry);
      bytes += entry.data.length;
    }
    this.unstable_from = first_index + entries.length;
    return { first_index, entries };
  }

  /**
   * The batch ending at `last_persisted` is durable; a truncation since then limits what that
   * proves.
   */
  markStable(last_persisted: number): void {
    const proven = Math.min(last_persisted, this.truncated_since_ready - 1, this.entries.length);
    if (proven > this.stable_index) this.stable_index = proven;
  }

  private checkInvariant(): void {
    const last = this.entries.length;
    assert(
      this.applied_index <= this.committed_index && this.committed_index <= last,
      `log applied ${this.applied_index} <= committed ${this.committed_index} <= last ${last}`,
    );
  }
}
