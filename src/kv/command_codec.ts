/**
 * How a client write is stored in a Raft log entry's `data`.
 *
 * All integers are unsigned 32-bit little-endian (`u32`).
 *
 * - Empty data (0 bytes): the no-op entry a new leader appends to commit
 *   entries of earlier terms. The state machine ignores it.
 * - SET, opcode 1:
 *   `[0x01][key_len u32][key bytes][word_count u32]` then `word_count` times
 *   `[word_len u32][word bytes]`. `word_count >= 1`.
 * - DEL, opcode 2:
 *   `[0x02][key_count u32]` then `key_count` times `[key_len u32][key bytes]`.
 *   `key_count >= 1`. Keys are kept as the client sent them, duplicates too.
 *
 * - REDIS, opcode 3: one write of the Redis view, as its argument vector, stamped with the
 *   leader's clock: `[0x03][stamp_ms u64][arg_count u32]` then `arg_count` times
 *   `[arg_len u32][arg bytes]`. `arg_count >= 1`. The state machine parses the arguments again
 *   when it applies the entry (deterministically), so options and errors need no layout of
 *   their own; a malformed vector applies as an error reply and changes nothing.
 * - TRANSACTION, opcode 4 (MULTI/EXEC): `[0x04][stamp_ms u64][watch_index u64]
 *   [watch_count u32]` then `watch_count` times `[key_len u32][key]`, then
 *   `[command_count u32]` and each command as `[arg_count u32]` and its length-prefixed
 *   arguments. Counts may be 0. Applied as one: if a watched key changed after log index
 *   `watch_index`, nothing runs (EXEC replies null).
 * - EXPIRE, opcode 5 (proposed by the leader): `[0x05][stamp_ms u64][key_count u32]` and the
 *   length-prefixed keys; each key whose deadline is at or before `stamp_ms` is deleted.
 * - u64 fields are little-endian and at most 2^53 - 1.
 * - MEMBERSHIP, opcode 0x80: a cluster configuration, owned by the Raft core (layout in
 *   src/raft/membership.ts). Membership lives in the log entry's data rather than in a kind field
 *   of LogEntry so that the wire format, the WAL and snapshots carry it unchanged. The state
 *   machine skips it as it skips the no-op (decodeCommand validates it and returns null).
 *
 * Keys and words are arbitrary bytes; empty ones are allowed. Decoding is
 * strict: an unknown opcode, a length running past the end, a zero count or
 * trailing bytes is a `CommandMalformedError`.
 *
 * Example: `SET k ab` encodes to
 * `01 01000000 6b 01000000 02000000 61 62`.
 */
import { assert } from '../util/assert';
import { CommandMalformedError } from '../util/errors';
import { decodeMembership, isMembershipEntry } from '../raft/membership';

export type KvCommand =
  | { op: 'set'; key: Buffer; words: Buffer[] }
  | { op: 'del'; keys: Buffer[] }
  | { op: 'redis'; stamp_ms: number; args: Buffer[] }
  | {
      op: 'transaction';
      stamp_ms: number;
      watch_index: number;
      watched: Buffer[];
      commands: Buffer[][];
    }
  | { op: 'expire'; stamp_ms: number; keys: Buffer[] };

export const OPCODE_SET = 1;
export const OPCODE_DEL = 2;
export const OPCODE_REDIS = 3;
export const OPCODE_TRANSACTION = 4;
export const OPCODE_EXPIRE = 5;
const U64_BYTES = 8;

const U32_BYTES = 4;
const U32_MAX = 0xffff_ffff;

export function encodeCommand(command: KvCommand): Buffer {
  if (command.op === 'redis' || command.op === 'transaction' || command.op === 'expire')
    return encodeStamped(command);
  const fields = command.op === 'set' ? command.words : command.keys;
  assert(
    fields.length >= 1,
    `${command.op} command needs at least one ${command.op === 'set' ? 'word' : 'key'}`,
  );
  assert(fields.length <= U32_MAX, 'command field count does not fit in u32');

  let total_bytes = 1 + U32_BYTES;
  if (command.op === 'set') total_bytes += lengthPrefixedBytes(command.key);
  for (const field of fields) total_bytes += lengthPrefixedBytes(field);

  const out = Buffer.allocUnsafe(total_bytes);
  let offset = 0;
  if (command.op === 'set') {
    out[offset++] = OPCODE_SET;
    offset = writeLengthPrefixed(out, offset, command.key);
  } else {
    out[offset++] = OPCODE_DEL;
  }
  offset = out.writeUInt32LE(fields.length, offset);
  for (const field of fields) offset = writeLengthPrefixed(out, offset, field);
  assert(offset === total_bytes, 'command encoding size mismatch');
  return out;
}

/**
 * Returns null for the no-op entry and for a membership entry. The returned buffers are views into
 * `data`: copy them before keeping them beyond the lifetime of `data`.
 */
export function decodeCommand(data: Uint8Array): KvCommand | null {
  if (data.length === 0) return null;
  if (isMembershipEntry(data)) {
    decodeMembership(data); // throws CommandMalformedError unless well-formed
    return null;
  }
  const reader = new CommandReader(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const opcode = reader.byte();
  let command: KvCommand;
  if (opcode === OPCODE_SET) {
    const key = reader.lengthPrefixed('key');
    command = { op: 'set', key, words: reader.lengthPrefixedList('word') };
  } else if (opcode === OPCODE_DEL) {
    command = { op: 'del', keys: reader.lengthPrefixedList('key') };
  } else if (opcode === OPCODE_REDIS) {
    const stamp_ms = reader.u64('stamp');
    command = { op: 'redis', stamp_ms, args: reader.lengthPrefixedList('argument') };
  } else if (opcode === OPCODE_TRANSACTION) {
    command = decodeTransaction(reader);
  } else if (opcode === OPCODE_EXPIRE) {
    const stamp_ms = reader.u64('stamp');
    command = { op: 'expire', stamp_ms, keys: reader.lengthPrefixedList('key') };
  } else {
    throw new CommandMalformedError(`unknown opcode ${opcode}`);
  }
  reader.expectEnd();
  return command;
}

function decodeTransaction(reader: CommandReader): KvCommand {
  const stamp_ms = reader.u64('stamp');
  const watch_index = reader.u64('watch index');
  const watched = reader.lengthPrefixedList('watched key', true);
  const command_count = reader.count('command count');
  const commands: Buffer[][] = [];
  for (let i = 0; i < command_count; i++) commands.push(reader.lengthPrefixedList('argument'));
  return { op: 'transaction', stamp_ms, watch_index, watched, commands };
}

type StampedCommand = Extract<KvCommand, { op: 'redis' | 'transaction' | 'expire' }>;

/** Opcodes 3 to 5, laid out in the module comment. */
function encodeStamped(command: StampedCommand): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.allocUnsafe(1 + U64_BYTES);
  head[0] =
    command.op === 'redis'
      ? OPCODE_REDIS
      : command.op === 'transaction'
        ? OPCODE_TRANSACTION
        : OPCODE_EXPIRE;
  head.writeBigUInt64LE(BigInt(safeU64(command.stamp_ms)), 1);
  parts.push(head);
  if (command.op === 'redis') {
    assert(command.args.length >= 1, 'a redis command needs at least its name');
    pushList(parts, command.args);
  } else if (command.op === 'expire') {
    assert(command.keys.length >= 1, 'an expire entry needs at least one key');
    pushList(parts, command.keys);
  } else {
    const index = Buffer.allocUnsafe(U64_BYTES);
    index.writeBigUInt64LE(BigInt(safeU64(command.watch_index)), 0);
    parts.push(index);
    pushList(parts, command.watched);
    parts.push(u32Buffer(command.commands.length));
    for (const args of command.commands) {
      assert(args.length >= 1, 'a queued command needs at least its name');
      pushList(parts, args);
    }
  }
  return Buffer.concat(parts);
}

function safeU64(value: number): number {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field ${value} out of range`);
  return value;
}

function u32Buffer(value: number): Buffer {
  assert(value <= U32_MAX, 'count does not fit in u32');
  const out = Buffer.allocUnsafe(U32_BYTES);
  out.writeUInt32LE(value, 0);
  return out;
}

function pushList(parts: Buffer[], items: readonly Buffer[]): void {
  parts.push(u32Buffer(items.length));
  for (const item of items) {
    assert(item.length <= U32_MAX, 'command field longer than u32 allows');
    parts.push(u32Buffer(item.length), item);
  }
}

function lengthPrefixedBytes(bytes: Uint8Array): number {
  assert(bytes.length <= U32_MAX, 'command field longer than u32 allows');
  return U32_BYTES + bytes.length;
}

function writeLengthPrefixed(out: Buffer, offset: number, bytes: Uint8Array): number {
  const after_length = out.writeUInt32LE(bytes.length, offset);
  out.set(bytes, after_length);
  return after_length + bytes.length;
}

class CommandReader {
  private offset = 0;

  constructor(private readonly bytes: Buffer) {}

  byte(): number {
    this.need(1, 'opcode');
    const value = this.bytes[this.offset];
    this.offset += 1;
    assert(value !== undefined, 'byte read past end');
    return value;
  }

  /** `what` + `suffix` name the field in an error; joined only then, not for every field read. */
  u32(what: string, suffix = ''): number {
    this.need(U32_BYTES, what, suffix);
    const value = this.bytes.readUInt32LE(this.offset);
    this.offset += U32_BYTES;
    return value;
  }

  lengthPrefixed(what: string): Buffer {
    const length = this.u32(what, ' length');
    this.need(length, what);
    const value = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  u64(what: string): number {
    this.need(U64_BYTES, what);
    const value = this.bytes.readBigUInt64LE(this.offset);
    this.offset += U64_BYTES;
    if (value > BigInt(Number.MAX_SAFE_INTEGER))
      throw new CommandMalformedError(`${what} ${value} is out of range`);
    return Number(value);
  }

  /** A u32 count of items that need at least a u32 each; a forged count cannot allocate. */
  count(what: string, suffix = ''): number {
    const count = this.u32(what, suffix);
    // Each item needs at least its length prefix; checking this first keeps a
    // forged count from making us allocate a huge array.
    if (count > this.remaining() / U32_BYTES) {
      throw new CommandMalformedError(
        `${what}${suffix} ${count} cannot fit in the ${this.remaining()} bytes left`,
      );
    }
    return count;
  }

  lengthPrefixedList(what: string, empty_allowed = false): Buffer[] {
    const count = this.count(what, ' count');
    if (count === 0 && !empty_allowed)
      throw new CommandMalformedError(`${what} count is 0 at offset ${this.offset - U32_BYTES}`);
    const items: Buffer[] = [];
    for (let i = 0; i < count; i++) items.push(this.lengthPrefixed(what));
    return items;
  }

  expectEnd(): void {
    if (this.remaining() !== 0) {
      throw new CommandMalformedError(
        `${this.remaining()} trailing bytes after the command at offset ${this.offset}`,
      );
    }
  }

  private remaining(): number {
    return this.bytes.length - this.offset;
  }

  private need(length: number, what: string, suffix = ''): void {
    if (length > this.remaining()) {
      throw new CommandMalformedError(
        `${what}${suffix} needs ${length} bytes at offset ${this.offset},` +
          ` only ${this.remaining()} left`,
      );
    }
  }
}
