/**
 * The client side of the RESP protocol: encode a command as an array of bulk
 * strings, and parse the server's replies incrementally from a byte stream
 * split at arbitrary points.
 *
 * The parser is an explicit state machine over a queue of received chunks, so
 * a large bulk string arriving in many chunks is copied once (when complete),
 * not re-concatenated on every chunk.
 */
import { LimitExceededError, RespProtocolError } from '../util/errors';
import { assert } from '../util/assert';
import { LIMITS } from '../util/limits';

export type Reply =
  | { type: 'simple'; value: string }
  | { type: 'error'; message: string }
  | { type: 'integer'; value: number }
  | { type: 'bulk'; value: Buffer | null }
  | { type: 'array'; items: Reply[] | null };

const CR = 0x0d;
const LF = 0x0a;

/** RESP array of bulk strings: the only request form the server accepts from clients. */
export function encodeCommand(args: readonly (Buffer | string)[]): Buffer {
  if (args.length > LIMITS.resp_array_elements_max) {
    throw new LimitExceededError(
      'resp_array_elements_max',
      `command has ${args.length} arguments, more than ${LIMITS.resp_array_elements_max}`,
    );
  }
  // Size first, then one allocation: requests are small and many, so allocation dominates.
  const lengths = args.map((arg) =>
    typeof arg === 'string' ? Buffer.byteLength(arg, 'utf8') : arg.length,
  );
  let total = 3 + String(args.length).length;
  for (const length of lengths) {
    if (length > LIMITS.resp_bulk_bytes_max) {
      throw new LimitExceededError(
        'resp_bulk_bytes_max',
        `argument of ${length} bytes is larger than ${LIMITS.resp_bulk_bytes_max}`,
      );
    }
    total += 5 + String(length).length + length;
  }
  const out = Buffer.allocUnsafe(total);
  let offset = out.write(`*${args.length}\r\n`, 0, 'latin1');
  args.forEach((arg, index) => {
    const length = lengths[index] as number;
    offset += out.write(`$${length}\r\n`, offset, 'latin1');
    offset += typeof arg === 'string' ? out.write(arg, offset, 'utf8') : arg.copy(out, offset);
    out[offset++] = CR;
    out[offset++] = LF;
  });
  assert(offset === total, 'encodeCommand size mismatch');
  return out;
}

export interface ReplyParserOptions {
  bulk_bytes_max?: number;
  array_elements_max?: number;
  /** Longest header or simple/error/integer line, without its CRLF. */
  line_bytes_max?: number;
  /** Deepest nesting of arrays inside one reply. */
  nesting_depth_max?: number;
}

/** An array whose elements are still arriving. */
interface OpenArray {
  items: Reply[];
  remaining: number;
}

/**
 * Feed it chunks; it returns every reply completed by that chunk.
 *
 * Use one instance in one mode: `push` (parsed replies) or `pushRaw` (the
 * exact bytes of each complete top-level reply, for relaying). After a
 * RespProtocolError the stream is unusable and every later push throws.
 *
 * Parsed bulk values may share memory with the pushed chunks: do not mutate
 * a chunk after pushing it.
 */
export class ReplyParser {
  private readonly bulk_bytes_max: number;
  private readonly array_elements_max: number;
  private readonly line_bytes_max: number;
  private readonly nesting_depth_max: number;

  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head_offset = 0;
  private buffered_bytes = 0;
  /**
   * Progress of the search for the next LF: chunks[0..scan_chunk) hold scanned_bytes unconsumed
   * bytes without one.
   */
  private scan_chunk = 0;
  private scanned_bytes = 0;

  /** Length of the bulk string body expected next, or -1 when a header line is expected. */
  private bulk_length = -1;
  private readonly open_arrays: OpenArray[] = [];

  private mode: 'none' | 'parsed' | 'raw' = 'none';
  private raw_parts: Buffer[] = [];
  private failure: RespProtocolError | null = null;

  constructor(options: ReplyParserOptions = {}) {
    this.bulk_bytes_max = options.bulk_bytes_max ?? LIMITS.resp_bulk_bytes_max;
    this.array_elements_max = options.array_elements_max ?? LIMITS.resp_array_elements_max;
    this.line_bytes_max = options.line_bytes_max ?? LIMITS.resp_inline_bytes_max;
    this.nesting_depth_max = options.nesting_depth_max ?? LIMITS.resp_reply_nesting_depth_max;
  }

  push(chunk: Buffer): Reply[] {
    this.enterMode('parsed');
    const replies: Reply[] = [];
    this.feed(chunk, (reply) => replies.push(reply));
    return replies;
  }

  /** Like push, but returns the exact bytes of each complete top-level reply. */
  pushRaw(chunk: Buffer): Buffer[] {
    this.enterMode('raw');
    const frames: Buffer[] = [];
    this.feed(chunk, () => {
      frames.push(
        this.raw_parts.length === 1 ? (this.raw_parts[0] as Buffer) : Buffer.concat(this.raw_parts),
      );
      this.raw_parts = [];
    });
    return frames;
  }

  private enterMode(mode: 'parsed' | 'raw'): void {
    assert(
      this.mode === 'none' || this.mode === mode,
      `ReplyParser used in both parsed and raw mode`,
    );
    this.mode = mode;
  }

  private feed(chunk: Buffer, onTopLevel: (reply: Reply) => void): void {
    if (this.failure !== null) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered_bytes += chunk.length;
    }
    try {
      for (;;) {
        const reply = this.parseOne();
        if (reply === undefined) return;
        const done = this.attach(reply);
        if (done !== undefined) onTopLevel(done);
      }
    } catch (error) {
      if (error instanceof RespProtocolError) this.failure = error;
      throw error;
    }
  }

  /**
   * Parses one value (an array counts as a value only once all its elements
   * arrived). Returns undefined when more bytes are needed.
   */
  private parseOne(): Reply | undefined {
    if (this.bulk_length >= 0) return this.parseBulkBody();
    const line = this.takeLine();
    if (line === undefined) return undefined;
    if (line.length === 0) throw new RespProtocolError('RESP_PROTOCOL', 'empty reply line');
    const type = line[0];
    switch (type) {
      case 0x2b /* + */:
        return { type: 'simple', value: line.toString('utf8', 1) };
      case 0x2d /* - */:
        return { type: 'error', message: line.toString('utf8', 1) };
      case 0x3a /* : */:
        return { type: 'integer', value: parseInteger(line, 'integer reply') };
      case 0x5f /* _ RESP3 null */:
        return { type: 'bulk', value: null };
      case 0x23 /* # RESP3 boolean */:
        return { type: 'integer', value: line[1] === 0x74 /* t */ ? 1 : 0 };
      case 0x2c /* , RESP3 double */:
      case 0x28 /* ( RESP3 big number */:
        return { type: 'simple', value: line.toString('utf8', 1) };
      case 0x3d /* = RESP3 verbatim string, framed like a bulk string */:
      case 0x21 /* ! RESP3 bulk error */:
      case 0x24 /* $ */:
        {
          const length = parseLength(line, 'bulk length');
          if (length === -1) return { type: 'bulk', value: null };
          if (length > this.bulk_bytes_max) {
            throw new RespProtocolError(
              'RESP_TOO_LARGE',
              `bulk string of ${length} bytes exceeds bulk_bytes_max ${this.bulk_bytes_max}`,
            );
          }
          this.bulk_length = length;
          return this.parseBulkBody();
        }
      case 0x25 /* % RESP3 map: a key and a value per entry */:
      case 0x7e /* ~ RESP3 set */:
      case 0x3e /* > RESP3 push */:
      case 0x2a /* * */:
        {
          const entries = parseLength(line, 'array length');
          const count = type === 0x25 && entries > 0 ? entries * 2 : entries;
          if (count === -1) return { type: 'array', items: null };
          if (count > this.array_elements_max) {
            throw new RespProtocolError(
              'RESP_TOO_LARGE',
              `array of ${count} elements exceeds array_elements_max ${this.array_elements_max}`,
            );
          }
          if (count === 0) return { type: 'array', items: [] };
          if (this.open_arrays.length >= this.nesting_depth_max) {
            throw new RespProtocolError(
              'RESP_TOO_LARGE',
              `arrays nested deeper than nesting_depth_max ${this.nesting_depth_max}`,
            );
          }
          this.open_arrays.push({ items: [], remaining: count });
          return this.parseOne();
        }
      default:
        throw new RespProtocolError(
          'RESP_PROTOCOL',
          `unknown reply type byte 0x${(type ?? 0).toString(16).padStart(2, '0')}`,
        );
    }
  }

  private parseBulkBody(): Reply | undefined {
    const needed = this.bulk_length + 2;
    if (this.buffered_bytes < needed) return undefined;
    const body = this.take(needed);
    if (body[needed - 2] !== CR || body[needed - 1] !== LF) {
      throw new RespProtocolError('RESP_PROTOCOL', 'bulk string not terminated by CRLF');
    }
    this.bulk_length = -1;
    return { type: 'bulk', value: body.subarray(0, needed - 2) };
  }

  /** Adds a value to the innermost open array; returns the top-level reply once one is complete. */
  private attach(value: Reply): Reply | undefined {
    let completed = value;
    for (;;) {
      const parent = this.open_arrays[this.open_arrays.length - 1];
      if (parent === undefined) return completed;
      parent.items.push(completed);
      parent.remaining -= 1;
      if (parent.remaining > 0) return undefined;
      this.open_arrays.pop();
      completed = { type: 'array', items: parent.items };
    }
  }

  /**
   * Consumes one CRLF-terminated line and returns it without the CRLF, or undefined if incomplete.
   */
  private takeLine(): Buffer | undefined {
    // Chunks before scan_chunk were already searched for LF; resume after them.
    while (this.scan_chunk < this.chunks.length) {
      const chunk = this.chunks[this.scan_chunk] as Buffer;
      const from = this.scan_chunk === 0 ? this.head_offset : 0;
      const lf = chunk.indexOf(LF, from);
      if (lf === -1) {
        this.scanned_bytes += chunk.length - from;
        if (this.scanned_bytes > this.line_bytes_max + 1) this.throwLineTooLong();
        this.scan_chunk += 1;
        continue;
      }
      const line_length = this.scanned_bytes + (lf - from) - 1;
      if (line_length > this.line_bytes_max) this.throwLineTooLong();
      const terminated = this.take(line_length + 2);
      if (line_length < 0 || terminated[line_length] !== CR) {
        throw new RespProtocolError('RESP_PROTOCOL', 'reply line ends in a bare LF');
      }
      const line = terminated.subarray(0, line_length);
      if (line.includes(CR))
        throw new RespProtocolError('RESP_PROTOCOL', 'reply line contains a bare CR');
      return line;
    }
    return undefined;
  }

  private throwLineTooLong(): never {
    throw new RespProtocolError(
      'RESP_TOO_LARGE',
      `reply line longer than line_bytes_max ${this.line_bytes_max}`,
    );
  }

  /** Removes exactly `length` buffered bytes from the front; copies only when they span chunks. */
  private take(length: number): Buffer {
    assert(length <= this.buffered_bytes, 'take beyond buffered bytes');
    this.buffered_bytes -= length;
    this.scan_chunk = 0;
    this.scanned_bytes = 0;
    const first = this.chunks[0];
    assert(first !== undefined, 'take from empty chunk queue');
    let taken: Buffer;
    if (first.length - this.head_offset >= length) {
      taken = first.subarray(this.head_offset, this.head_offset + length);
      this.head_offset += length;
      if (this.head_offset === first.length) {
        this.chunks.shift();
        this.head_offset = 0;
      }
    } else {
      taken = Buffer.allocUnsafe(length);
      let copied = 0;
      while (copied < length) {
        const chunk = this.chunks[0];
        assert(chunk !== undefined, 'chunk queue shorter than buffered_bytes');
        const n = Math.min(chunk.length - this.head_offset, length - copied);
        chunk.copy(taken, copied, this.head_offset, this.head_offset + n);
        copied += n;
        this.head_offset += n;
        if (this.head_offset === chunk.length) {
          this.chunks.shift();
          this.head_offset = 0;
        }
      }
    }
    if (this.mode === 'raw') this.raw_parts.push(taken);
    return taken;
  }
}

/**
 * The decimal after the type byte of `line`: optional '-', then digits with
 * no leading zero, within the safe integer range. Parsed from the bytes
 * because header lines are the parser's hot path.
 */
function parseInteger(line: Buffer, what: string): number {
  const negative = line[1] === 0x2d;
  const first = negative ? 2 : 1;
  const digits = line.length - first;
  const malformed = (): RespProtocolError =>
    new RespProtocolError(
      'RESP_PROTOCOL',
      `malformed ${what} ${JSON.stringify(line.toString('latin1', 1))}`,
    );
  if (digits <= 0 || (line[first] === 0x30 && (digits > 1 || negative))) throw malformed();
  let value = 0;
  for (let i = first; i < line.length; i++) {
    const digit = (line[i] as number) - 0x30;
    if (digit < 0 || digit > 9) throw malformed();
    value = value * 10 + digit;
  }
  if (!Number.isSafeInteger(value)) {
    throw new RespProtocolError(
      'RESP_PROTOCOL',
      `${what} ${line.toString('latin1', 1)} is outside the safe integer range`,
    );
  }
  return negative ? -value : value;
}

/** A length field: a non-negative count, or -1 for null. */
function parseLength(line: Buffer, what: string): number {
  const value = parseInteger(line, what);
  if (value < -1) throw new RespProtocolError('RESP_PROTOCOL', `negative ${what} ${value}`);
  return value;
}
