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
 * Keys and words are arbitrary bytes; empty ones are allowed. Decoding is
 * strict: an unknown opcode, a length running past the end, a zero count or
 * trailing bytes is a `CommandMalformedError`.
 *
 * Example: `SET k ab` encodes to
 * `01 01000000 6b 01000000 02000000 61 62`.
 */
import { assert } from '../util/assert';
import { CommandMalformedError } from '../util/errors';

export type KvCommand = { op: 'set'; key: Buffer; words: Buffer[] } | { op: 'del'; keys: Buffer[] };

export const OPCODE_SET = 1;
export const OPCODE_DEL = 2;

const U32_BYTES = 4;
const U32_MAX = 0xffff_ffff;

export function encodeCommand(command: KvCommand): Buffer {
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
 * Returns null for the no-op entry. The returned buffers are views into
 * `data`: copy them before keeping them beyond the lifetime of `data`.
 */
export function decodeCommand(data: Uint8Array): KvCommand | null {
  if (data.length === 0) return null;
  const reader = new CommandReader(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const opcode = reader.byte();
  let command: KvCommand;
  if (opcode === OPCODE_SET) {
    const key = reader.lengthPrefixed('key');
    command = { op: 'set', key, words: reader.lengthPrefixedList('word') };
  } else if (opcode === OPCODE_DEL) {
    command = { op: 'del', keys: reader.lengthPrefixedList('key') };
  } else {
    throw new CommandMalformedError(`unknown opcode ${opcode}`);
  }
  reader.expectEnd();
  return command;
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

  u32(what: string): number {
    this.need(U32_BYTES, what);
    const value = this.bytes.readUInt32LE(this.offset);
    this.offset += U32_BYTES;
    return value;
  }

  lengthPrefixed(what: string): Buffer {
    const length = this.u32(`${what} length`);
    this.need(length, what);
    const value = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  lengthPrefixedList(what: string): Buffer[] {
    const count = this.u32(`${what} count`);
    if (count === 0)
      throw new CommandMalformedError(`${what} count is 0 at offset ${this.offset - U32_BYTES}`);
    // Each item needs at least its length prefix; checking this first keeps a
    // forged count from making us allocate a huge array.
    if (count > this.remaining() / U32_BYTES) {
      throw new CommandMalformedError(
        `${what} count ${count} cannot fit in the ${this.remaining()} bytes left`,
      );
    }
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

  private need(length: number, what: string): void {
    if (length > this.remaining()) {
      throw new CommandMalformedError(
        `${what} needs ${length} bytes at offset ${this.offset}, only ${this.remaining()} left`,
      );
    }
  }
}
