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
 * Snapshot layout (`serialize`), integers little-endian:
 * `"KVSM"` magic, `version u8` (= 2), `last_applied u64`, `clock_ms u64`,
 * `tombstone_floor u64`, `key_count u32`, then for each key in ascending byte
 * order: `[key_len u32][key][mod_index u64][deadline_ms u64, 0 = none]
 * [word_count u32]` and `word_count` times `[word_len u32][word]`; then
 * `tombstone_count u32` and, oldest first, `[key_len u32][key][index u64]`.
 * Equal states give equal bytes. Version 1 (the seed's: no clock, indices,
 * deadlines or tombstones) is still restored.
 */
import { assert } from '../util/assert';
import { CommandMalformedError, StorageCorruptError } from '../util/errors';
import { LIMITS } from '../util/limits';
import type { RedisValue } from '../resp/redis_value';
import { decodeCommand, type KvCommand } from './command_codec';
import { applyExpire, applyRedisWrite, applyTransaction } from './redis_commands';

export type ApplyResult =
  | { kind: 'ok' }
  | { kind: 'integer'; value: number }
  | { kind: 'noop' }
  /** A Redis-view command's reply, built at apply time. */
  | { kind: 'value'; value: RedisValue }
  /** The entry's data is not a command: skipped, the same way on every replica. */
  | { kind: 'invalid'; reason: string };

interface StoredValue {
  words: Buffer[];
  /** Log index of the entry that last wrote the value or its deadline. */
  mod_index: number;
}

const SNAPSHOT_MAGIC = Buffer.from('KVSM', 'latin1');
const SNAPSHOT_VERSION = 2;
const U32_BYTES = 4;
const U64_BYTES = 8;

export class KvStateMachine {
  private readonly values = new Map<string, StoredValue>();
  /** Absolute deadlines (ms since the epoch, by the stamping leaders' clocks). */
  private readonly deadlines = new Map<string, number>();
  /** Deletion index per deleted key, oldest first. */
  private readonly tombstones = new Map<string, number>();
  private tombstone_floor = 0;
  private applied_index = 0;
  private clock = 0;
  private stored_bytes = 0;

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

  /** The stored words, or null if the key is absent. The buffers must not be mutated. */
  get(key: Buffer, now_ms = 0): Buffer[] | null {
    const stored = this.lookup(key, now_ms);
    return stored === null ? null : stored.slice();
  }

  /** The words of a key that has not expired at `now_ms` (at least the clock); no copy. */
  lookup(key: Buffer | string, now_ms: number): Buffer[] | null {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    const stored = this.values.get(key_string);
    if (stored === undefined) return null;
    const deadline = this.deadlines.get(key_string);
    if (deadline !== undefined && deadline <= Math.max(now_ms, this.clock)) return null;
    return stored.words;
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
      return stored.mod_index > index || this.lookup(key_string, now_ms) === null;
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
    // Overwrite rather than delete and re-insert: a Map delete leaves a hole that later rehashes.
    const previous = this.values.get(key_string);
    if (previous !== undefined) this.stored_bytes -= key_string.length + sumLengths(previous.words);
    // One copy for the whole value: the decoded words are views into the entry
    // buffer, which may alias a network chunk or a WAL read.
    const value = Buffer.concat(words);
    const stored = words.length === 1 ? [value] : splitAs(value, words);
    if (previous !== undefined) {
      previous.words = stored;
      previous.mod_index = this.applied_index;
    } else {
      this.values.set(key_string, { words: stored, mod_index: this.applied_index });
    }
    this.stored_bytes += key_string.length + value.length;
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
    stored.mod_index = this.applied_index;
    if (deadline_ms === null) this.deadlines.delete(key_string);
    else this.deadlines.set(key_string, deadline_ms);
  }

  /** Deletes the key (expired or not); true if it was stored. */
  remove(key: Buffer | string): boolean {
    const key_string = typeof key === 'string' ? key : key.toString('latin1');
    const stored = this.values.get(key_string);
    if (stored === undefined) return false;
    this.values.delete(key_string);
    this.deadlines.delete(key_string);
    this.stored_bytes -= key_string.length + sumLengths(stored.words);
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
    this.values.clear();
    this.deadlines.clear();
    this.tombstones.clear();
    this.stored_bytes = 0;
    this.tombstone_floor = this.applied_index;
  }

  private advanceClock(stamp_ms: number): void {
    if (stamp_ms > this.clock) this.clock = stamp_ms;
  }

  // ------------------------------------------------------------------ snapshots

  serialize(): Buffer {
    const keys = [...this.values.keys()].sort();
    const parts: Buffer[] = [SNAPSHOT_MAGIC, Buffer.from([SNAPSHOT_VERSION])];
    parts.push(u64(this.applied_index), u64(this.clock), u64(this.tombstone_floor));
    parts.push(u32(keys.length));
    for (const key of keys) {
      const stored = this.values.get(key);
      assert(stored !== undefined, 'serialize: key vanished');
      parts.push(u32(key.length), Buffer.from(key, 'latin1'), u64(stored.mod_index));
      parts.push(u64(this.deadlines.get(key) ?? 0), u32(stored.words.length));
      for (const word of stored.words) parts.push(u32(word.length), word);
    }
    parts.push(u32(this.tombstones.size));
    for (const [key, index] of this.tombstones) {
      parts.push(u32(key.length), Buffer.from(key, 'latin1'), u64(index));
    }
    return Buffer.concat(parts);
  }

  /**
   * Rebuilds a state machine from `serialize` output (version 1 or 2); throws
   * StorageCorruptError on malformed input.
   */
  static restore(bytes: Uint8Array): KvStateMachine {
    const reader = new SnapshotReader(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    );
    const magic = reader.bytes(SNAPSHOT_MAGIC.length, 'magic');
    if (!magic.equals(SNAPSHOT_MAGIC)) throw new StorageCorruptError('kv snapshot: bad magic');
    const version = reader.u8('version');
    if (version !== 1 && version !== SNAPSHOT_VERSION)
      throw new StorageCorruptError(`kv snapshot: unsupported version ${version}`);
    const machine = new KvStateMachine();
    machine.applied_index = reader.u64('last_applied');
    if (version === 2) {
      machine.clock = reader.u64('clock');
      machine.tombstone_floor = reader.u64('tombstone floor');
    }
    const key_count = reader.count('key count', U32_BYTES * 2);
    let previous_key: string | null = null;
    for (let i = 0; i < key_count; i++) {
      const key = reader.lengthPrefixed('key').toString('latin1');
      if (previous_key !== null && !(previous_key < key)) {
        throw new StorageCorruptError(`kv snapshot: key #${i} is not in strictly ascending order`);
      }
      previous_key = key;
      const mod_index = version === 2 ? reader.u64('mod index') : 0;
      const deadline = version === 2 ? reader.u64('deadline') : 0;
      const word_count = reader.count('word count', U32_BYTES);
      if (word_count === 0) throw new StorageCorruptError(`kv snapshot: key #${i} has no words`);
      const words: Buffer[] = [];
      for (let w = 0; w < word_count; w++) words.push(Buffer.from(reader.lengthPrefixed('word')));
      machine.values.set(key, { words, mod_index });
      if (deadline !== 0) machine.deadlines.set(key, deadline);
      machine.stored_bytes += key.length + sumLengths(words);
    }
    if (version === 2) {
      const tombstone_count = reader.count('tombstone count', U32_BYTES + U64_BYTES);
      for (let i = 0; i < tombstone_count; i++) {
        const key = reader.lengthPrefixed('tombstone key').toString('latin1');
        if (machine.values.has(key) || machine.tombstones.has(key))
          throw new StorageCorruptError(`kv snapshot: tombstone #${i} duplicates a key`);
        machine.tombstones.set(key, reader.u64('tombstone index'));
      }
    }
    reader.expectEnd();
    return machine;
  }
}

function u32(value: number): Buffer {
  const out = Buffer.allocUnsafe(U32_BYTES);
  out.writeUInt32LE(value, 0);
  return out;
}

function u64(value: number): Buffer {
  const out = Buffer.allocUnsafe(U64_BYTES);
  out.writeBigUInt64LE(BigInt(value), 0);
  return out;
}

/** Views into `value` with the lengths of `words`, which it concatenates. */
function splitAs(value: Buffer, words: readonly Buffer[]): Buffer[] {
  const stored: Buffer[] = [];
  let offset = 0;
  for (const word of words) {
    stored.push(value.subarray(offset, offset + word.length));
    offset += word.length;
  }
  return stored;
}

function sumLengths(buffers: readonly Buffer[]): number {
  let total = 0;
  for (const buffer of buffers) total += buffer.length;
  return total;
}

class SnapshotReader {
  private offset = 0;

  constructor(private readonly input: Buffer) {}

  bytes(length: number, what: string): Buffer {
    this.need(length, what);
    const value = this.input.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  u8(what: string): number {
    this.need(1, what);
    const value = this.input.readUInt8(this.offset);
    this.offset += 1;
    return value;
  }

  u32(what: string): number {
    this.need(U32_BYTES, what);
    const value = this.input.readUInt32LE(this.offset);
    this.offset += U32_BYTES;
    return value;
  }

  u64(what: string): number {
    this.need(8, what);
    const value = this.input.readBigUInt64LE(this.offset);
    this.offset += 8;
    if (value > BigInt(Number.MAX_SAFE_INTEGER))
      throw new StorageCorruptError(`kv snapshot: ${what} ${value} is out of range`);
    return Number(value);
  }

  /**
   * A u32 count whose items need at least `item_bytes_min` each; rejects counts the rest of the
   * input cannot hold.
   */
  count(what: string, item_bytes_min: number): number {
    const value = this.u32(what);
    if (value > (this.input.length - this.offset) / item_bytes_min) {
      throw new StorageCorruptError(
        `kv snapshot: ${what} ${value} at offset ` +
          `${this.offset - U32_BYTES} exceeds the remaining input`,
      );
    }
    return value;
  }

  lengthPrefixed(what: string): Buffer {
    return this.bytes(this.u32(`${what} length`), what);
  }

  expectEnd(): void {
    const left = this.input.length - this.offset;
    if (left !== 0)
      throw new StorageCorruptError(`kv snapshot: ${left} trailing bytes at offset ${this.offset}`);
  }

  private need(length: number, what: string): void {
    if (length > this.input.length - this.offset) {
      throw new StorageCorruptError(`kv snapshot: truncated ${what} at offset ${this.offset}`);
    }
  }
}
