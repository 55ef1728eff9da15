/**
 * The replicated key-value state: applies committed log entries in index
 * order and answers reads. Deterministic and free of I/O, so every replica
 * that applies the same entries holds the same bytes.
 *
 * A value is the list of words given to SET (`SET k a b` stores `[a, b]`).
 * Keys and words are arbitrary bytes. Internally the map is keyed by
 * `key.toString('latin1')`: latin1 maps each byte to one UTF-16 code unit,
 * so the conversion is lossless and string order equals byte order.
 *
 * Snapshot layout (`serialize`), integers little-endian:
 * `"KVSM"` magic, `version u8` (= 1), `last_applied u64`, `key_count u32`,
 * then for each key in ascending byte order:
 * `[key_len u32][key][word_count u32]` and `word_count` times `[word_len u32][word]`.
 * Equal states give equal bytes.
 */
import { assert } from '../util/assert';
import { CommandMalformedError, StorageCorruptError } from '../util/errors';
import { decodeCommand, type KvCommand } from './command_codec';

export type ApplyResult =
  | { kind: 'ok' }
  | { kind: 'integer'; value: number }
  | { kind: 'noop' }
  /** The entry's data is not a command: skipped, the same way on every replica. */
  | { kind: 'invalid'; reason: string };

const SNAPSHOT_MAGIC = Buffer.from('KVSM', 'latin1');
const SNAPSHOT_VERSION = 1;
const SNAPSHOT_HEADER_BYTES = SNAPSHOT_MAGIC.length + 1 + 8 + 4;
const U32_BYTES = 4;

export class KvStateMachine {
  private readonly values = new Map<string, Buffer[]>();
  private applied_index = 0;
  private stored_bytes = 0;

  get last_applied(): number {
    return this.applied_index;
  }

  get key_count(): number {
    return this.values.size;
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
    if (command.op === 'set') {
      this.set(command.key, command.words);
      return { kind: 'ok' };
    }
    let removed = 0;
    for (const key of command.keys) {
      if (this.remove(key.toString('latin1'))) removed++;
    }
    return { kind: 'integer', value: removed };
  }

  /** The stored words, or null if the key is absent. The buffers must not be mutated. */
  get(key: Buffer): Buffer[] | null {
    const words = this.values.get(key.toString('latin1'));
    return words === undefined ? null : words.slice();
  }

  serialize(): Buffer {
    const keys = [...this.values.keys()].sort();
    let total_bytes = SNAPSHOT_HEADER_BYTES;
    for (const key of keys) {
      total_bytes += U32_BYTES + key.length + U32_BYTES;
      for (const word of this.wordsOf(key)) total_bytes += U32_BYTES + word.length;
    }

    const out = Buffer.allocUnsafe(total_bytes);
    let offset = SNAPSHOT_MAGIC.copy(out, 0);
    offset = out.writeUInt8(SNAPSHOT_VERSION, offset);
    offset = out.writeBigUInt64LE(BigInt(this.applied_index), offset);
    offset = out.writeUInt32LE(keys.length, offset);
    for (const key of keys) {
      offset = out.writeUInt32LE(key.length, offset);
      offset += out.write(key, offset, 'latin1');
      const words = this.wordsOf(key);
      offset = out.writeUInt32LE(words.length, offset);
      for (const word of words) {
        offset = out.writeUInt32LE(word.length, offset);
        offset += word.copy(out, offset);
      }
    }
    assert(
      offset === total_bytes,
      `snapshot size mismatch: wrote ${offset} of ${total_bytes} bytes`,
    );
    return out;
  }

  /**
   * Rebuilds a state machine from `serialize` output; throws StorageCorruptError on malformed
   * input.
   */
  static restore(bytes: Uint8Array): KvStateMachine {
    const reader = new SnapshotReader(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    );
    const magic = reader.bytes(SNAPSHOT_MAGIC.length, 'magic');
    if (!magic.equals(SNAPSHOT_MAGIC)) throw new StorageCorruptError('kv snapshot: bad magic');
    const version = reader.u8('version');
    if (version !== SNAPSHOT_VERSION)
      throw new StorageCorruptError(`kv snapshot: unsupported version ${version}`);
    const last_applied = reader.u64('last_applied');

    const machine = new KvStateMachine();
    machine.applied_index = last_applied;
    const key_count = reader.count('key count', U32_BYTES * 2);
    let previous_key: string | null = null;
    for (let i = 0; i < key_count; i++) {
      const key = reader.lengthPrefixed('key').toString('latin1');
      if (previous_key !== null && !(previous_key < key)) {
        throw new StorageCorruptError(`kv snapshot: key #${i} is not in strictly ascending order`);
      }
      previous_key = key;
      const word_count = reader.count('word count', U32_BYTES);
      if (word_count === 0) throw new StorageCorruptError(`kv snapshot: key #${i} has no words`);
      const words: Buffer[] = [];
      for (let w = 0; w < word_count; w++) words.push(Buffer.from(reader.lengthPrefixed('word')));
      machine.values.set(key, words);
      machine.stored_bytes += key.length + sumLengths(words);
    }
    reader.expectEnd();
    return machine;
  }

  private set(key: Buffer, words: Buffer[]): void {
    const key_string = key.toString('latin1');
    // Overwrite rather than delete and re-insert: a Map delete leaves a hole that later rehashes.
    const previous = this.values.get(key_string);
    if (previous !== undefined) this.stored_bytes -= key_string.length + sumLengths(previous);
    // One copy for the whole value: the decoded words are views into the entry
    // buffer, which may alias a network chunk or a WAL read.
    const value = Buffer.concat(words);
    const stored = words.length === 1 ? [value] : splitAs(value, words);
    this.values.set(key_string, stored);
    this.stored_bytes += key_string.length + value.length;
  }

  private remove(key_string: string): boolean {
    const words = this.values.get(key_string);
    if (words === undefined) return false;
    this.values.delete(key_string);
    this.stored_bytes -= key_string.length + sumLengths(words);
    return true;
  }

  private wordsOf(key_string: string): Buffer[] {
    const words = this.values.get(key_string);
    assert(words !== undefined, 'serialize: key vanished');
    return words;
  }
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

function sumLengths(buffers: Buffer[]): number {
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
