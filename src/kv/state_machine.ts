/**
 * The replicated key-value state: applies committed log entries in index
 * order and answers reads. Deterministic and free of I/O, so every replica
 * that applies the same entries holds the same bytes.
 *
 * A value is the list of words given to SET (`SET k a b` stores `[a, b]`); a
 * value written through the Redis view is one word. Keys and words are
 * arbitrary bytes. Internally the map is keyed by `key.toString('latin1')`:
 * latin1 maps each byte to one UTF-16 code unit, so the conversion is lossless
 * and string order equals byte order.
 *
 * Time: stamped entries (opcodes 3-5) carry the leader's clock; `clock_ms` is
 * the largest stamp applied so far, so it never goes backwards even if a new
 * leader's clock is behind. A key whose deadline is at or before the time a
 * command runs at reads as absent; the leader later deletes it with an EXPIRE
 * entry. For WATCH each key remembers the log index that last changed it, and
 * deleted keys leave a bounded FIFO of tombstones (evicted ones raise
 * `tombstone_floor`, a conservative "changed at or before" bound).
 *
 * Memory: each value is one latin1 string holding the index that last changed the key and the
 * words (stored_value.ts: ~120 bytes for a 100-byte value, no Buffer per key). Snapshots
 * (`beginSnapshot`, kv_snapshot.ts) are taken while entries keep being applied: the first change
 * of a key during a snapshot hands its pre-image to the running cursor.
 */
import { assert } from '../util/assert';
import { CommandMalformedError } from '../util/errors';
import { LIMITS } from '../util/limits';
import type { RedisValue } from '../resp/redis_value';
import { decodeCommand, type KvCommand } from './command_codec';
import { KvSnapshotCursor, KvSnapshotParser, type SnapshotSteps } from './kv_snapshot';
import type { SnapshotStateParser } from '../storage/snapshot_store';
import {
  encodeStored,
  storedModIndex,
  storedValueBytes,
  storedWordCount,
  storedWords,
  withModIndex,
} from './stored_value';
import { applyExpire, applyRedisWrite, applyTransaction } from './redis_commands';

export type ApplyResult =
  | { kind: 'ok' }
  | { kind: 'integer'; value: number }
  | { kind: 'noop' }
  /** A Redis-view command's reply, built at apply time. */
  | { kind: 'value'; value: RedisValue }
  /** The entry's data is not a command: skipped, the same way on every replica. */
  | { kind: 'invalid'; reason: string };

export class KvStateMachine {
  /** Key → stored value (stored_value.ts: the words and the index that last changed them). */
  private values = new Map<string, string>();
  /** Absolute deadlines (ms since the epoch, by the stamping leaders' clocks). */
  private deadlines = new Map<string, number>();
  /** Deletion index per deleted key, oldest first. */
  private tombstones = new Map<string, number>();
  private tombstone_floor = 0;
  private applied_index = 0;
  private clock = 0;
  private stored_bytes = 0;
  /** The snapshot being written, which gets the pre-image of each key changed meanwhile. */
  private snapshot: KvSnapshotCursor | null = null;

  get last_applied(): number {
    return this.applied_index;
  }

  get key_count(): number {
    return this.values.size;
  }

  /** Keys with a deadline (expired ones not yet deleted included). */
  get expiring_key_count(): number {
    return this.deadlines.size;
  }

  /** The largest leader stamp applied: the state machine's notion of now. */
  get clock_ms(): number {
    return this.clock;
  }

  /** Sum of key and value bytes (length prefixes not counted). */
  get data_bytes(): number {
    return this.stored_bytes;
  }

  /**
   * Applies the committed entry at `index`, which must directly follow the
   * last applied one. Entry data that does not decode changes nothing but the
   * applied index: it came over the network (a forged or buggy peer may have
   * got it committed), and every replica skips it alike, so the states stay
   * equal and no replica crashes on it at every restart.
   */
  apply(index: number, data: Uint8Array): ApplyResult {
    assert(
      index === this.applied_index + 1,
      `apply index ${index} does not follow last_applied ${this.applied_index}`,
    );
    let command: KvCommand | null;
    try {
      command = decodeCommand(data);
    } catch (error) {
      if (!(error instanceof CommandMalformedError)) throw error;
      this.applied_index = index;
      return { kind: 'invalid', reason: error.message };
    }
    this.applied_index = index;
    if (command === null) return { kind: 'noop' };
    switch (command.op) {
      case 'set':
        this.put(command.key, command.words, null);
        return { kind: 'ok' };
      case 'del': {
        let removed = 0;
        for (const key of command.keys) if (this.remove(key)) removed++;
        return { kind: 'integer', value: removed };
      }
      case 'redis':
        this.advanceClock(command.stamp_ms);
        return { kind: 'value', value: applyRedisWrite(this, command.args) };
      case 'transaction':
        this.advanceClock(command.stamp_ms);
        return { kind: 'value', value: applyTransaction(this, command) };
      case 'expire':
        this.advanceClock(command.stamp_ms);
        return { kind: 'value', value: applyExpire(this, command.keys, command.stamp_ms) };
    }
  }

  /** The stored words (fresh buffers), or null if the key is absent. */
  get(key: Buffer, now_ms = 0): Buffer[] | null {
    return this.lookup(key, now_ms);
  }

  /** The words (fresh buffers) of a key that has not expired at `now_ms` (at least the clock). */
  lookup(key: Buffer | string, now_ms: number): Buffer[] | null {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    const stored = this.values.get(key_string);
    if (stored === undefined) return null;
    const deadline = this.deadlines.size === 0 ? undefined : this.deadlines.get(key_string);
    if (deadline !== undefined && deadline <= Math.max(now_ms, this.clock)) return null;
    return storedWords(stored);
  }

  /**
   * What `lookup(key, now_ms)` would return, measured without building it: the words' total bytes
   * plus `per_word_bytes` for each word, or null if the key is absent or expired. A reply's size
   * is estimated for every GET before it runs; decoding the value for that doubled the GET's cost.
   */
  lookupBytes(key: Buffer, now_ms: number, per_word_bytes: number): number | null {
    const key_string = key.toString('latin1');
    const stored = this.values.get(key_string);
    if (stored === undefined) return null;
    const deadline = this.deadlines.size === 0 ? undefined : this.deadlines.get(key_string);
    if (deadline !== undefined && deadline <= Math.max(now_ms, this.clock)) return null;
    return storedValueBytes(stored) + per_word_bytes * storedWordCount(stored);
  }

  /** The deadline of a live key, or null when it has none. */
  deadlineOf(key: Buffer | string): number | null {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    return this.deadlines.get(key_string) ?? null;
  }

  /** Whether `key` was written or deleted after log index `index` (conservatively). */
  changedAfter(key: Buffer, index: number, now_ms: number): boolean {
    const key_string = key.toString('latin1');
    const stored = this.values.get(key_string);
    if (stored !== undefined) {
      // An expired key counts as changed, as in Redis 7.
      return storedModIndex(stored) > index || this.lookup(key_string, now_ms) === null;
    }
    return (this.tombstones.get(key_string) ?? this.tombstone_floor) > index;
  }

  /** Every key (expired ones too), in map order; callers bound their own work. */
  keys(): IterableIterator<string> {
    return this.values.keys();
  }

  /** Keys that have a deadline, in map order. */
  expiringKeys(): IterableIterator<[string, number]> {
    return this.deadlines.entries();
  }

  // ------------------------------------------ mutations: only while applying an entry

  /** Stores `words` (copied) under `key`; `deadline_ms` null clears any deadline. */
  put(key: Buffer | string, words: readonly Buffer[], deadline_ms: number | null): void {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    const previous = this.values.get(key_string);
    if (this.snapshot !== null) this.preserve(key_string, previous);
    if (previous !== undefined) this.stored_bytes -= key_string.length + storedValueBytes(previous);
    // One copy into a flat string: the decoded words are views into the entry buffer, which may
    // alias a network chunk or a WAL read. Overwriting keeps the key's place in the map.
    const stored = encodeStored(this.applied_index, words);
    this.values.set(key_string, stored);
    this.stored_bytes += key_string.length + storedValueBytes(stored);
    // Size checks first: the seed's SET-only workload then pays no extra hash lookups.
    if (deadline_ms !== null) this.deadlines.set(key_string, deadline_ms);
    else if (this.deadlines.size > 0) this.deadlines.delete(key_string);
    if (this.tombstones.size > 0) this.tombstones.delete(key_string);
  }

  /** Sets or clears the deadline of an existing key. */
  setDeadline(key: Buffer | string, deadline_ms: number | null): void {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    const stored = this.values.get(key_string);
    assert(stored !== undefined, 'setDeadline of an absent key');
    if (this.snapshot !== null) this.preserve(key_string, stored);
    this.values.set(key_string, withModIndex(stored, this.applied_index));
    if (deadline_ms === null) this.deadlines.delete(key_string);
    else this.deadlines.set(key_string, deadline_ms);
  }

  /** Deletes the key (expired or not); true if it was stored. */
  remove(key: Buffer | string): boolean {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    const stored = this.values.get(key_string);
    if (stored === undefined) return false;
    if (this.snapshot !== null) this.preserve(key_string, stored);
    this.values.delete(key_string);
    this.deadlines.delete(key_string);
    this.stored_bytes -= key_string.length + storedValueBytes(stored);
    this.tombstones.delete(key_string);
    this.tombstones.set(key_string, this.applied_index);
    if (this.tombstones.size > LIMITS.watch_tombstones_max) {
      const [oldest, oldest_index] = this.tombstones.entries().next().value as [string, number];
      this.tombstones.delete(oldest);
      this.tombstone_floor = Math.max(this.tombstone_floor, oldest_index);
    }
    return true;
  }

  /** Deletes every key; a WATCH from before this aborts. */
  clear(): void {
    // A running snapshot keeps the old maps (nothing changes them any more); new ones start.
    if (this.snapshot !== null) {
      this.snapshot.detach({ values: this.values, deadlines: this.deadlines });
      this.snapshot = null;
      this.values = new Map();
      this.deadlines = new Map();
    } else {
      this.values.clear();
      this.deadlines.clear();
    }
    this.tombstones.clear();
    this.stored_bytes = 0;
    this.tombstone_floor = this.applied_index;
  }

  private preserve(key: string, stored: string | undefined): void {
    this.snapshot?.preserve(key, stored, this.deadlines.get(key));
  }

  private advanceClock(stamp_ms: number): void {
    if (stamp_ms > this.clock) this.clock = stamp_ms;
  }

  // ------------------------------------------------------------------ snapshots

  /**
   * Starts a snapshot of the state as applied now; the caller drives it (`prepare`, then `next`
   * until null) while entries keep being applied. One at a time; `finish` abandons it.
   */
  beginSnapshot(steps?: SnapshotSteps): KvSnapshotCursor {
    assert(this.snapshot === null, 'one snapshot at a time');
    const cursor = this.cursor((finished) => {
      if (this.snapshot === finished) this.snapshot = null;
    }, steps);
    this.snapshot = cursor;
    return cursor;
  }

  /** The whole snapshot at once (tests, and INFO's state digest): the same bytes, canonical. */
  serialize(): Buffer {
    // Nothing is applied while it runs, so it needs no pre-images (and may overlap a snapshot).
    const cursor = this.cursor(() => undefined);
    while (!cursor.prepare());
    const chunks: Buffer[] = [];
    for (let chunk = cursor.next(); chunk !== null; chunk = cursor.next())
      chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  }

  private cursor(
    onFinish: (cursor: KvSnapshotCursor) => void,
    steps?: SnapshotSteps,
  ): KvSnapshotCursor {
    return new KvSnapshotCursor(
      { values: this.values, deadlines: this.deadlines },
      {
        applied_index: this.applied_index,
        clock_ms: this.clock,
        tombstone_floor: this.tombstone_floor,
        tombstones: this.tombstones,
      },
      onFinish,
      steps,
    );
  }

  /** Rebuilds a state machine from snapshot bytes; StorageCorruptError on malformed input. */
  static restore(bytes: Uint8Array): KvStateMachine {
    const parser = KvStateMachine.snapshotParser(bytes.length);
    parser.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return parser.finish();
  }

  /**
   * Rebuilds a state machine from the `total_bytes` of a snapshot pushed in order, chunk by chunk
   * (a restart reads the file in chunks: it never holds the whole file and the state at once).
   */
  static snapshotParser(total_bytes: number): SnapshotStateParser<KvStateMachine> {
    const parser = new KvSnapshotParser(total_bytes);
    return {
      push: (chunk) => parser.push(chunk),
      finish: () => {
        const parts = parser.finish();
        const machine = new KvStateMachine();
        machine.values = parts.values;
        machine.deadlines = parts.deadlines;
        machine.tombstones = parts.tombstones;
        machine.tombstone_floor = parts.tombstone_floor;
        machine.applied_index = parts.applied_index;
        machine.clock = parts.clock_ms;
        machine.stored_bytes = parts.stored_bytes;
        return machine;
      },
    };
  }
}
