import type { LogEntry } from './protocol';
import { assert } from '../util/assert';
import { LIMITS } from '../util/limits';

const EMPTY = new Uint8Array(0);

/**
 * The entries of the in-memory Raft log, kept compactly: a term, a length and a place in a shared
 * block per entry (plain arrays of numbers), instead of an object and an ArrayBuffer per entry.
 * Measured with 144-byte entries: ~190 bytes of RSS per entry against 555 (a Buffer slice of
 * Node's pool) or 754 (a Uint8Array of its own, as decoded from the network); the log retains up
 * to two snapshot intervals (200k entries by default).
 *
 * Appending copies the data into the current block after what it already holds; bytes once
 * written are never overwritten (a truncation does not reuse them), so views handed out (to a
 * save in flight, a message, the state machine) stay valid after their entries are dropped. A
 * block is garbage once no retained entry and no view references it.
 * `get` builds a fresh LogEntry whose data is a view into the block.
 */
export class EntryStore {
  private terms: number[] = [];
  private lengths: number[] = [];
  private offsets: number[] = [];
  private blocks: Uint8Array[] = [];
  private block: Uint8Array = EMPTY;
  private block_used = 0;

  get length(): number {
    return this.terms.length;
  }

  push(entry: LogEntry): void {
    const data = entry.data;
    const length = data.length;
    let block: Uint8Array;
    let offset = 0;
    if (length === 0) block = EMPTY;
    else if (length > LIMITS.log_block_entry_bytes_max) block = data.slice();
    else {
      if (this.block_used + length > this.block.length) {
        this.block = new Uint8Array(LIMITS.log_block_bytes);
        this.block_used = 0;
      }
      block = this.block;
      offset = this.block_used;
      block.set(data, offset);
      this.block_used += length;
    }
    this.terms.push(entry.term);
    this.lengths.push(length);
    this.offsets.push(offset);
    this.blocks.push(block);
  }

  /** Term of the entry at `position` (0-based), or -1 beyond the end. */
  term(position: number): number {
    return this.terms[position] ?? -1;
  }

  dataLength(position: number): number {
    const length = this.lengths[position];
    assert(length !== undefined, `entry position ${position} of ${this.length}`);
    return length;
  }

  /** The entry at `position`: a fresh object, its data a view into shared memory (read only). */
  get(position: number): LogEntry | undefined {
    const term = this.terms[position];
    if (term === undefined) return undefined;
    const offset = this.offsets[position] as number;
    const block = this.blocks[position] as Uint8Array;
    return { term, data: block.subarray(offset, offset + (this.lengths[position] as number)) };
  }

  /** Entries [from, to) as fresh objects. */
  range(from: number, to: number): LogEntry[] {
    const out: LogEntry[] = [];
    const end = Math.min(to, this.length);
    for (let position = Math.max(0, from); position < end; position++)
      out.push(this.get(position) as LogEntry);
    return out;
  }

  /** Drops the first `count` entries. */
  dropFront(count: number): void {
    if (count <= 0) return;
    this.terms = this.terms.slice(count);
    this.lengths = this.lengths.slice(count);
    this.offsets = this.offsets.slice(count);
    this.blocks = this.blocks.slice(count);
  }

  /** Keeps the first `length` entries. Their blocks' later bytes are not reused. */
  truncate(length: number): void {
    if (length >= this.length) return;
    this.terms.length = length;
    this.lengths.length = length;
    this.offsets.length = length;
    this.blocks.length = length;
  }
}
