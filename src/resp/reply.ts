/**
 * Encoders for the replies the server sends (the seed's simplified RESP):
 * `+OK`, `-ERR …`, `:n`, bulk strings and arrays of bulk strings. Each call
 * returns one freshly sized Buffer, written in place rather than built from
 * concatenated strings, because GET replies are on the hot path.
 *
 * The exported constants are shared: never write into them.
 */
import { assert } from '../util/assert';

export const REPLY_OK: Buffer = Buffer.from('+OK\r\n', 'latin1');
export const REPLY_PONG: Buffer = Buffer.from('+PONG\r\n', 'latin1');
/** The seed's reply for a missing key: an array holding the bulk string "nil". */
export const REPLY_NIL: Buffer = Buffer.from('*1\r\n$3\r\nnil\r\n', 'latin1');

const BYTE_CR = 0x0d;
const BYTE_LF = 0x0a;
const BYTE_STAR = 0x2a;
const BYTE_DOLLAR = 0x24;
const BYTE_ZERO = 0x30;

/** `+text\r\n`. A simple string cannot carry CR or LF; passing one is a caller bug. */
export function encodeSimpleString(text: string): Buffer {
  assert(!/[\r\n]/.test(text), 'a RESP simple string cannot contain CR or LF');
  return Buffer.from(`+${text}\r\n`, 'utf8');
}

/**
 * `-message\r\n`, e.g. encodeError("ERR unknown command 'FOO'"). CR and LF
 * become spaces: messages may quote client input, and one stray line end
 * would desynchronise every later reply on the connection.
 */
export function encodeError(message: string): Buffer {
  return Buffer.from(`-${message.replace(/[\r\n]/g, ' ')}\r\n`, 'utf8');
}

/** `:value\r\n` for a safe integer. */
export function encodeInteger(value: number): Buffer {
  assert(Number.isSafeInteger(value), `a RESP integer must be a safe integer, got ${value}`);
  return Buffer.from(`:${value}\r\n`, 'latin1');
}

/** `$<byte length>\r\n<bytes>\r\n`; a string is encoded as UTF-8. */
export function encodeBulkString(value: Buffer | string): Buffer {
  const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const out = Buffer.allocUnsafe(bulkStringBytes(data.length));
  const written = writeBulkString(out, 0, data);
  assert(written === out.length, 'encodeBulkString size mismatch');
  return out;
}

/** `*<n>\r\n` followed by n bulk strings. */
export function encodeBulkArray(items: readonly Buffer[]): Buffer {
  let total = 3 + decimalDigits(items.length);
  for (const item of items) total += bulkStringBytes(item.length);
  const out = Buffer.allocUnsafe(total);
  out[0] = BYTE_STAR;
  let pos = writeDecimal(out, 1, items.length);
  out[pos++] = BYTE_CR;
  out[pos++] = BYTE_LF;
  for (const item of items) pos = writeBulkString(out, pos, item);
  assert(pos === total, 'encodeBulkArray size mismatch');
  return out;
}

function bulkStringBytes(length: number): number {
  return 1 + decimalDigits(length) + 2 + length + 2;
}

function writeBulkString(out: Buffer, pos: number, data: Buffer): number {
  out[pos++] = BYTE_DOLLAR;
  pos = writeDecimal(out, pos, data.length);
  out[pos++] = BYTE_CR;
  out[pos++] = BYTE_LF;
  // Small items are copied byte by byte: cheaper than a native copy call.
  const length = data.length;
  if (length <= 32) {
    for (let index = 0; index < length; index++) out[pos + index] = data[index] as number;
  } else {
    data.copy(out, pos);
  }
  pos += length;
  out[pos++] = BYTE_CR;
  out[pos++] = BYTE_LF;
  return pos;
}

/** Digits of a non-negative integer. */
function decimalDigits(value: number): number {
  let digits = 1;
  while (value >= 10) {
    value = Math.floor(value / 10);
    digits++;
  }
  return digits;
}

/** Writes a non-negative integer in decimal at pos; returns the position after it. */
function writeDecimal(out: Buffer, pos: number, value: number): number {
  const digits = decimalDigits(value);
  let index = pos + digits - 1;
  do {
    out[index--] = BYTE_ZERO + (value % 10);
    value = Math.floor(value / 10);
  } while (value > 0);
  return pos + digits;
}
