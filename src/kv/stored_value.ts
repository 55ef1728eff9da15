/**
 * How the state machine keeps one key's value in memory: a single latin1 string (one byte per
 * character, so any bytes round-trip exactly) holding a small header and the words.
 *
 * Why a string: V8 stores a one-byte string as one heap object of 16 bytes plus its characters,
 * so a 100-byte value costs ~120 bytes. A Buffer per value costs a JS object, an ArrayBuffer
 * and a backing store (~300 bytes more per key, measured), and small Buffers are slices of an
 * 8 KiB pool that one live value keeps whole. The header carries the index that last changed
 * the key (WATCH needs it for every key), so the map needs no object per key either.
 *
 * Layout, integers little-endian:
 *   [mod_index u48][0][word]                                 one word (the common case)
 *   [mod_index u48][1][word_count u32][word_len u32 ...][words concatenated]
 * The snapshot format stores these strings as they are, so a restart builds no per-word objects.
 */
import { assert } from '../util/assert';

export const STORED_HEADER_BYTES = 7;
const MOD_INDEX_BYTES = 6;
const TAG_ONE_WORD = 0;
const TAG_WORDS = 1;
const U32_BYTES = 4;
/** Values up to this size are built in one reused buffer; larger ones get their own. */
const SCRATCH_BYTES = 64 * 1024;
const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

/** The stored string for `words` last changed at `mod_index`. */
export function encodeStored(mod_index: number, words: readonly Uint8Array[]): string {
  assert(Number.isSafeInteger(mod_index) && mod_index >= 0 && mod_index < 2 ** 48, 'mod_index');
  assert(words.length >= 1, 'a value has at least one word');
  const one = words.length === 1;
  let total = STORED_HEADER_BYTES + (one ? 0 : U32_BYTES * (1 + words.length));
  for (const word of words) total += word.length;
  const out = total <= SCRATCH_BYTES ? scratch : Buffer.allocUnsafeSlow(total);
  out.writeUIntLE(mod_index, 0, MOD_INDEX_BYTES);
  out[MOD_INDEX_BYTES] = one ? TAG_ONE_WORD : TAG_WORDS;
  let at = STORED_HEADER_BYTES;
  if (!one) {
    out.writeUInt32LE(words.length, at);
    at += U32_BYTES;
    for (const word of words) {
      out.writeUInt32LE(word.length, at);
      at += U32_BYTES;
    }
  }
  for (const word of words) {
    out.set(word, at);
    at += word.length;
  }
  return out.toString('latin1', 0, total);
}

export function storedModIndex(stored: string): number {
  let value = 0;
  for (let i = MOD_INDEX_BYTES - 1; i >= 0; i--) value = value * 256 + stored.charCodeAt(i);
  return value;
}

/** The same value with another mod_index. */
export function withModIndex(stored: string, mod_index: number): string {
  const bytes = Buffer.from(stored, 'latin1');
  assert(Number.isSafeInteger(mod_index) && mod_index >= 0 && mod_index < 2 ** 48, 'mod_index');
  bytes.writeUIntLE(mod_index, 0, MOD_INDEX_BYTES);
  return bytes.toString('latin1');
}

/** The words (fresh buffers the caller may keep). */
export function storedWords(stored: string): Buffer[] {
  const bytes = Buffer.from(stored, 'latin1');
  if (bytes[MOD_INDEX_BYTES] === TAG_ONE_WORD) return [bytes.subarray(STORED_HEADER_BYTES)];
  const count = bytes.readUInt32LE(STORED_HEADER_BYTES);
  const words: Buffer[] = [];
  let length_at = STORED_HEADER_BYTES + U32_BYTES;
  let data_at = length_at + U32_BYTES * count;
  for (let i = 0; i < count; i++) {
    const length = bytes.readUInt32LE(length_at);
    words.push(bytes.subarray(data_at, data_at + length));
    length_at += U32_BYTES;
    data_at += length;
  }
  return words;
}

/** Bytes of the words themselves (what INFO's data_bytes counts). */
export function storedValueBytes(stored: string): number {
  if (stored.charCodeAt(MOD_INDEX_BYTES) === TAG_ONE_WORD)
    return stored.length - STORED_HEADER_BYTES;
  const count = readU32(stored, STORED_HEADER_BYTES);
  return stored.length - STORED_HEADER_BYTES - U32_BYTES * (1 + count);
}

/** How many words the value holds. */
export function storedWordCount(stored: string): number {
  if (stored.charCodeAt(MOD_INDEX_BYTES) === TAG_ONE_WORD) return 1;
  return readU32(stored, STORED_HEADER_BYTES);
}

/**
 * Why `stored` (read from a snapshot) is not a well-formed value no newer than `applied_index`,
 * or null when it is.
 */
export function storedProblem(stored: string, applied_index: number): string | null {
  if (stored.length < STORED_HEADER_BYTES) return 'value shorter than its header';
  if (storedModIndex(stored) > applied_index) return 'value changed after the snapshot index';
  const tag = stored.charCodeAt(MOD_INDEX_BYTES);
  if (tag === TAG_ONE_WORD) return null;
  if (tag !== TAG_WORDS) return `unknown value tag ${tag}`;
  if (stored.length < STORED_HEADER_BYTES + U32_BYTES) return 'truncated word count';
  const count = readU32(stored, STORED_HEADER_BYTES);
  if (count < 2) return `a multi-word value with ${count} words`;
  const data_at = STORED_HEADER_BYTES + U32_BYTES * (1 + count);
  if (data_at > stored.length) return 'word lengths do not fit';
  let total = data_at;
  for (let i = 0; i < count; i++)
    total += readU32(stored, STORED_HEADER_BYTES + U32_BYTES * (1 + i));
  return total === stored.length ? null : 'word lengths disagree with the value size';
}

function readU32(text: string, at: number): number {
  return (
    text.charCodeAt(at) +
    text.charCodeAt(at + 1) * 0x100 +
    text.charCodeAt(at + 2) * 0x10000 +
    text.charCodeAt(at + 3) * 0x1000000
  );
}
