import { LOG_ENTRY_HEADER_BYTES, type LogEntry } from './protocol';
import type { CommittedEntry } from './types';
import { assert } from '../util/assert';
import { EntryStore } from './entry_store';

/**
 * The in-memory Raft log plus the bookkeeping that ties it to the disk:
 * which suffix has not yet been handed out for persistence, and which prefix
 * is known durable.
 *
 * Entries up to `snapshot_index` are covered by a snapshot and not kept (etcd's
 * log.go offset): entries[0] is index snapshot_index + 1, term(snapshot_index) is
 * snapshot_term, and the term of a compacted index is unknown (-1). Without a
 * snapshot, snapshot_index is 0 with term 0 (the empty prefix).
 *
 * Invariant, asserted after every mutation: applied <= committed <= last_index
 * (etcd's log.go keeps the same order): nothing is applied before it commits,
 * nothing commits that is not in the log.
 */
export class RaftLog {
  private readonly entries = new EntryStore();
  /** Last index covered by the snapshot (0: none); entries[0] is index snapshot_index + 1. */
  private snapshot_index_: number;
  private snapshot_term_: number;
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
   * Highest index handed out to be applied. The state machine restarts from the snapshot (or
   * empty), and committed entries after it are replayed, so it starts at the snapshot index.
   */
  private applied_index: number;

  /**
   * `restored_entries[0]` is index snapshot.index + 1; the state machine already holds what is
   * applied up to `applied` (a snapshot's index, at or after the log's start).
   */
  constructor(
    restored_entries: LogEntry[],
    committed: number,
    snapshot: { index: number; term: number } = { index: 0, term: 0 },
    applied: number = snapshot.index,
  ) {
    for (const entry of restored_entries) this.entries.push(entry);
    this.snapshot_index_ = snapshot.index;
    this.snapshot_term_ = snapshot.term;
    const last = this.last_index;
    assert(
      applied >= snapshot.index && applied <= last,
      `restart applied ${applied} within the log [${snapshot.index}, ${last}]`,
    );
    this.applied_index = applied;
    this.stable_index = last;
    this.unstable_from = last + 1;
    // A torn write may keep a hard state whose commit outruns the entries on disk; what was
    // applied (snapshots hold only committed state) is committed.
    this.committed_index = Math.max(applied, Math.min(committed, last));
    for (let index = this.committed_index + 1; index <= last; index++)
      this.uncommitted_bytes_total += this.dataLength(index);
    this.checkInvariant();
  }

  /** Last index covered by the snapshot; the first retained entry is snapshot_index + 1. */
  get snapshot_index(): number {
    return this.snapshot_index_;
  }

  get snapshot_term(): number {
    return this.snapshot_term_;
  }

  get first_index(): number {
    return this.snapshot_index_ + 1;
  }

  /** Entries kept in memory (after the snapshot). */
  get retained_entries(): number {
    return this.entries.length;
  }

  /**
   * Drops the entries up to `index` (covered by a snapshot the caller has made durable). Only
   * applied entries may go: what is not applied yet is still needed.
   */
  compact(index: number): void {
    assert(index <= this.applied_index, `compact ${index} beyond applied ${this.applied_index}`);
    assert(index <= this.stable_index, `compact ${index} beyond stable ${this.stable_index}`);
    if (index <= this.snapshot_index_) return;
    const term = this.term(index);
    this.entries.dropFront(index - this.snapshot_index_);
    this.snapshot_index_ = index;
    this.snapshot_term_ = term;
    this.checkInvariant();
  }

  /**
   * A snapshot received from the leader replaces what the log covers up to `point` (Figure 13
   * rules 6 and 7): if we hold the entry at point.index with point.term, the entries after it are
   * kept; otherwise the whole log is discarded. The state machine restarts at the snapshot, so
   * applied (and commit, if behind) move to point.index.
   */
  restoreSnapshot(point: { index: number; term: number }): void {
    const keep_suffix = point.index <= this.last_index && this.term(point.index) === point.term;
    if (keep_suffix && point.index >= this.snapshot_index_) {
      this.entries.dropFront(point.index - this.snapshot_index_);
    } else {
      this.entries.truncate(0);
      this.truncation_pending = false;
      this.truncated_since_ready = Infinity;
    }
    this.snapshot_index_ = point.index;
    this.snapshot_term_ = point.term;
    this.applied_index = point.index;
    // Only a test fault installs below the commit index; last_index bounds commit then.
    this.committed_index = Math.min(Math.max(this.committed_index, point.index), this.last_index);
    if (this.stable_index < point.index || !keep_suffix) this.stable_index = point.index;
    if (this.unstable_from <= point.index || !keep_suffix) this.unstable_from = point.index + 1;
    this.uncommitted_bytes_total = 0;
    for (let index = this.committed_index + 1; index <= this.last_index; index++)
      this.uncommitted_bytes_total += this.dataLength(index);
    this.checkInvariant();
  }

  get committed(): number {
    return this.committed_index;
  }

  get applied(): number {
    return this.applied_index;
  }

  get last_index(): number {
    return this.snapshot_index_ + this.entries.length;
  }

  get last_term(): number {
    return this.term(this.last_index);
  }

  get stable(): number {
    return this.stable_index;
  }

  get uncommitted_bytes(): number {
    return this.uncommitted_bytes_total;
  }

  /** Term of the entry at `index`; the snapshot's term at its index; -1 if compacted or beyond. */
  term(index: number): number {
    if (index === this.snapshot_index_) return this.snapshot_term_;
    if (index < this.snapshot_index_) return -1;
    return this.entries.term(index - this.snapshot_index_ - 1);
  }

  /** The entry at `index`: a fresh object whose data is a view the caller must not change. */
  entry(index: number): LogEntry {
    const entry = this.entries.get(index - this.snapshot_index_ - 1);
    assert(
      entry !== undefined,
      `log entry ${index} exists (first ${this.first_index}, last ${this.last_index})`,
    );
    return entry;
  }

  /** Retained entries [from, to] inclusive (from >= first_index). */
  slice(from: number, to: number): LogEntry[] {
    assert(from >= this.first_index, `slice from ${from} below first index ${this.first_index}`);
    return this.entries.range(from - this.first_index, to - this.snapshot_index_);
  }

  /** Entries from `from` limited by count and bytes; always at least one entry if any exists. */
  sliceLimited(from: number, count_max: number, bytes_max: number): LogEntry[] {
    let count = 0;
    let bytes = 0;
    assert(from >= this.first_index, `entries from ${from} are compacted`);
    for (let index = from; index <= this.last_index && count < count_max; index++) {
      const size = LOG_ENTRY_HEADER_BYTES + this.dataLength(index);
      if (count > 0 && bytes + size > bytes_max) break;
      count++;
      bytes += size;
    }
    return this.entriesFrom(from, count);
  }

  /**
   * `count` entries from `index`, in an array allocated at its size: one grown by push starts
   * at 17 slots, which for the usual message or batch of a few entries was most of its garbage.
   */
  private entriesFrom(index: number, count: number): LogEntry[] {
    const out = new Array<LogEntry>(count);
    for (let i = 0; i < count; i++) out[i] = this.entry(index + i);
    return out;
  }

  append(entry: LogEntry): number {
    this.entries.push(entry);
    this.uncommitted_bytes_total += entry.data.length;
    this.checkInvariant();
    return this.last_index;
  }

  /** Drop entries at index >= from. Never touches committed entries. */
  truncateFrom(from: number): void {
    assert(
      from > this.committed_index,
      `truncation at ${from} would remove committed entries (commit ${this.committed_index})`,
    );
    if (from > this.last_index) return;
    for (let index = from; index <= this.last_index; index++)
      this.uncommitted_bytes_total -= this.dataLength(index);
    this.entries.truncate(from - this.first_index);
    if (this.stable_index >= from) this.stable_index = from - 1;
    if (this.unstable_from > from) this.unstable_from = from;
    if (from < this.truncated_since_ready) this.truncated_since_ready = from;
    this.truncation_pending = true;
    this.checkInvariant();
  }

  commitTo(index: number): void {
    assert(index <= this.last_index, `commit ${index} beyond last index ${this.last_index}`);
    if (index <= this.committed_index) return;
    for (let i = this.committed_index + 1; i <= index; i++)
      this.uncommitted_bytes_total -= this.dataLength(i);
    this.committed_index = index;
    this.checkInvariant();
  }

  /** Hands out up to `count_max` committed entries after `applied`, in order, to be applied. */
  takeCommitted(count_max: number): CommittedEntry[] {
    const apply_to = Math.min(this.committed_index, this.applied_index + count_max);
    const first = this.applied_index + 1;
    // Allocated at its size (see entriesFrom).
    const committed = new Array<CommittedEntry>(Math.max(0, apply_to - this.applied_index));
    for (let index = first; index <= apply_to; index++)
      committed[index - first] = { index, entry: this.entry(index) };
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
    return this.unstable_from <= this.last_index || this.truncation_pending;
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
    if (this.unstable_from > this.last_index && !truncation_pending) return null;
    const first_index = this.unstable_from;
    let count = 0;
    let bytes = 0;
    for (let index = first_index; index <= this.last_index && count < count_max; index++) {
      const length = this.dataLength(index);
      if (count > 0 && bytes + length > bytes_max) break;
      count++;
      bytes += length;
    }
    const entries = this.entriesFrom(first_index, count);
    this.unstable_from = first_index + count;
    return { first_index, entries };
  }

  /**
   * The batch ending at `last_persisted` is durable; a truncation since then limits what that
   * proves.
   */
  markStable(last_persisted: number): void {
    const proven = Math.min(last_persisted, this.truncated_since_ready - 1, this.last_index);
    if (proven > this.stable_index) this.stable_index = proven;
  }

  private dataLength(index: number): number {
    return this.entries.dataLength(index - this.snapshot_index_ - 1);
  }

  private checkInvariant(): void {
    const last = this.last_index;
    assert(
      this.applied_index <= this.committed_index && this.committed_index <= last,
      `log applied ${this.applied_index} <= committed ${this.committed_index} <= last ${last}`,
    );
    assert(
      this.snapshot_index_ <= this.applied_index,
      `snapshot ${this.snapshot_index_} <= applied ${this.applied_index}`,
    );
  }
}
