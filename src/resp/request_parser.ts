/**
 * Streaming parser for client requests: RESP arrays of bulk strings
 * (`*<n>\r\n` then n times `$<len>\r\n<bytes>\r\n`) and Redis inline commands
 * (`SET a "b c"\n`, split like redis-server's sdssplitargs).
 *
 * The parser is a state machine fed one chunk at a time; it never re-scans
 * bytes it has already consumed and never converts the stream to a string.
 * Buffered memory is bounded: a bulk length above `bulk_bytes_max`, or one that
 * would take the request past `buffered_bytes_max`, is rejected from its header
 * before any of its data is kept, and an inline line may not exceed
 * `inline_bytes_max`.
 *
 * Aliasing: an argument of a command returned by `push(chunk)` may be a view
 * into that `chunk` (the common case of small pipelined commands costs no
 * copy). The caller must not modify a chunk after pushing it, and must copy
 * any argument it keeps beyond the reply (a view keeps the whole chunk
 * alive). Arguments that the parser holds across pushes are copied, so the
 * parser itself never retains more than it reports in `buffered_bytes` (plus
 * at most one chunk's worth of a partial bulk).
 */
import { LIMITS } from '../util/limits';
import { RespProtocolError } from '../util/errors';
import { assert } from '../util/assert';

export interface ParsedBatch {
  /** Complete commands in arrival order; each is its argument list (never empty). */
  commands: Buffer[][];
  /** Set when the stream cannot be parsed further; the parser is then dead. */
  error: RespProtocolError | null;
}

export interface RequestParserOptions {
  /** Longest bulk string argument; default LIMITS.resp_bulk_bytes_max. */
  bulk_bytes_max?: number;
  /** Most arguments in one request; default LIMITS.resp_array_elements_max. */
  array_elements_max?: number;
  /**
   * Longest inline command line (without its line ending); default LIMITS.resp_inline_bytes_max.
   */
  inline_bytes_max?: number;
  /**
   * Most bytes held for one request while it is being assembled: the
   * arguments already read plus the next bulk with its CRLF (`buffered_bytes`
   * never exceeds it). Default bulk_bytes_max + inline_bytes_max, which with
   * the default limits is LIMITS.client_read_buffer_bytes_max.
   */
  buffered_bytes_max?: number;
}

const BYTE_LF = 0x0a;
const BYTE_CR = 0x0d;
const BYTE_STAR = 0x2a;
const BYTE_DOLLAR = 0x24;
const BYTE_MINUS = 0x2d;
const BYTE_ZERO = 0x30;
const BYTE_NINE = 0x39;

// Parser states. Numbers, not a const enum, so the emitted switch stays on small integers.
const STATE_COMMAND_START = 0;
const STATE_ARRAY_COUNT = 1;
const STATE_BULK_PREFIX = 2;
const STATE_BULK_LENGTH = 3;
const STATE_BULK_BODY = 4;
const STATE_INLINE = 5;
const STATE_FAILED = 6;

// Progress through a header number such as `-1\r\n` or `123\r\n`.
const NUMBER_DIGITS = 0;
const NUMBER_EXPECT_LF = 1;
const NUMBER_DONE = 2;

export class RequestParser {
  private readonly bulk_bytes_max: number;
  private readonly array_elements_max: number;
  private readonly inline_bytes_max: number;
  private readonly buffered_bytes_max: number;

  private state = STATE_COMMAND_START;
  private failure: RespProtocolError | null = null;

  // The header number being read (array count or bulk length).
  private number_progress = NUMBER_DIGITS;
  private number_value = 0;
  private number_digits = 0;
  private number_negative = false;

  // The request being assembled.
  private args: Buffer[] = [];
  private args_expected = 0;
  private args_bytes = 0;
  /** args[0..args_owned) are known not to alias a pushed chunk. */
  private args_owned = 0;

  // Bulk body (data + CRLF) still to come, and the parts of it already seen.
  private body_remaining = 0;
  // Parts of a bulk body or of an inline line that spans chunks.
  private parts: Buffer[] = [];
  private parts_bytes = 0;

  constructor(options: RequestParserOptions = {}) {
    this.bulk_bytes_max = options.bulk_bytes_max ?? LIMITS.resp_bulk_bytes_max;
    this.array_elements_max = options.array_elements_max ?? LIMITS.resp_array_elements_max;
    this.inline_bytes_max = options.inline_bytes_max ?? LIMITS.resp_inline_bytes_max;
    this.buffered_bytes_max =
      options.buffered_bytes_max ?? this.bulk_bytes_max + this.inline_bytes_max;
    for (const [name, value] of [
      ['bulk_bytes_max', this.bulk_bytes_max],
      ['array_elements_max', this.array_elements_max],
      ['inline_bytes_max', this.inline_bytes_max],
      ['buffered_bytes_max', this.buffered_bytes_max],
    ] as const) {
      assert(
        Number.isSafeInteger(value) && value > 0,
        `RequestParser ${name} must be a positive integer, got ${value}`,
      );
    }
    // An inline line without its LF may hold inline_bytes_max + 1 bytes (the CR).
    assert(
      this.buffered_bytes_max > this.inline_bytes_max,
      'RequestParser buffered_bytes_max must exceed inline_bytes_max',
    );
  }

  /**
   * Input bytes held for the request not yet complete: its finished arguments and a partial bulk
   * body or inline line.
   */
  get buffered_bytes(): number {
    return this.args_bytes + this.parts_bytes;
  }

  push(chunk: Buffer): ParsedBatch {
    const commands: Buffer[][] = [];
    if (this.failure !== null) return { commands, error: this.failure };
    const end = chunk.length;
    let pos = 0;
    while (pos < end && this.failure === null) {
      switch (this.state) {
        case STATE_COMMAND_START:
          pos = this.readCommandStart(chunk, pos);
          break;
        case STATE_ARRAY_COUNT:
          pos = this.readArrayCount(chunk, pos);
          break;
        case STATE_BULK_PREFIX:
          pos = this.readBulkPrefix(chunk, pos);
          break;
        case STATE_BULK_LENGTH:
          pos = this.readBulkLength(chunk, pos);
          break;
        case STATE_BULK_BODY:
          pos = this.readBulkBody(chunk, pos, commands);
          break;
        case STATE_INLINE:
          pos = this.readInline(chunk, pos, commands);
          break;
        default:
          assert(false, `RequestParser in unexpected state ${this.state}`);
      }
    }
    this.releaseChunk(chunk);
    assert(
      this.buffered_bytes <= this.buffered_bytes_max,
      'RequestParser buffered beyond its limit',
    );
    return { commands, error: this.failure };
  }

  /** Arguments of an unfinished request must not pin `chunk` until the request completes. */
  private releaseChunk(chunk: Buffer): void {
    for (let index = this.args_owned; index < this.args.length; index++) {
      const arg = this.args[index] as Buffer;
      if (arg.buffer === chunk.buffer) this.args[index] = Buffer.from(arg);
    }
    this.args_owned = this.args.length;
  }

  /** A `*` starts a RESP array; anything else an inline command. */
  private readCommandStart(chunk: Buffer, pos: number): number {
    if (chunk[pos] !== BYTE_STAR) {
      this.state = STATE_INLINE;
      return pos;
    }
    this.startNumber();
    this.state = STATE_ARRAY_COUNT;
    return pos + 1;
  }

  private readArrayCount(chunk: Buffer, pos: number): number {
    const next = this.readNumber(
      chunk,
      pos,
      this.array_elements_max,
      'multibulk length',
      'elements',
    );
    if (this.number_progress !== NUMBER_DONE) return next;
    const count = this.number_negative ? -this.number_value : this.number_value;
    // Redis skips `*0` and `*-1` without replying.
    if (count <= 0) {
      this.state = STATE_COMMAND_START;
    } else {
      this.args_expected = count;
      this.state = STATE_BULK_PREFIX;
    }
    return next;
  }

  private readBulkPrefix(chunk: Buffer, pos: number): number {
    const byte = chunk[pos] as number;
    if (byte !== BYTE_DOLLAR) {
      this.fail('RESP_PROTOCOL', `Protocol error: expected '$', got ${describeByte(byte)}`);
      return pos;
    }
    this.startNumber();
    this.state = STATE_BULK_LENGTH;
    return pos + 1;
  }

  private readBulkLength(chunk: Buffer, pos: number): number {
    const next = this.readNumber(chunk, pos, this.bulk_bytes_max, 'bulk length', 'bytes');
    if (this.number_progress !== NUMBER_DONE) return next;
    const length = this.number_value;
    // Counts the CRLF too: a partial body holds it until the body is complete.
    const request_bytes = this.args_bytes + length + 2;
    if (request_bytes > this.buffered_bytes_max) {
      this.fail(
        'RESP_TOO_LARGE',
        `Protocol error: request too large: ${request_bytes} bytes exceed` +
          ` the limit of ${this.buffered_bytes_max}`,
      );
      return next;
    }
    this.body_remaining = length + 2;
    this.state = STATE_BULK_BODY;
    return next;
  }

  /** Reads bulk data and its CRLF, as a view of `chunk` when it is all there, else in parts. */
  private readBulkBody(chunk: Buffer, pos: number, commands: Buffer[][]): number {
    const available = chunk.length - pos;
    if (available < this.body_remaining) {
      this.keepPart(chunk, pos);
      this.body_remaining -= available;
      return chunk.length;
    }
    const next = pos + this.body_remaining;
    let body = chunk;
    let body_start = pos;
    let data_end = next - 2;
    if (this.parts_bytes > 0) {
      this.parts.push(chunk.subarray(pos, next));
      body = Buffer.concat(this.parts, this.parts_bytes + this.body_remaining);
      body_start = 0;
      data_end = body.length - 2;
      this.clearParts();
    }
    if (body[data_end] !== BYTE_CR || body[data_end + 1] !== BYTE_LF) {
      this.fail('RESP_PROTOCOL', 'Protocol error: expected CRLF after bulk data');
      return next;
    }
    if (this.addArg(body.subarray(body_start, data_end))) commands.push(this.takeCommand());
    return next;
  }

  private startNumber(): void {
    this.number_progress = NUMBER_DIGITS;
    this.number_value = 0;
    this.number_digits = 0;
    this.number_negative = false;
  }

  /**
   * Reads a header number and its CRLF from chunk[pos..], resuming where the
   * previous chunk stopped. Only `-1` is accepted as a negative number, and
   * only for array counts. A value above `value_max` fails at the digit that
   * crosses it, so a header can never grow long.
   */
  private readNumber(
    chunk: Buffer,
    pos: number,
    value_max: number,
    what: string,
    unit: string,
  ): number {
    const end = chunk.length;
    let value = this.number_value;
    let digits = this.number_digits;
    while (pos < end) {
      const byte = chunk[pos] as number;
      pos++;
      if (this.number_progress === NUMBER_EXPECT_LF) {
        if (byte !== BYTE_LF) {
          this.fail(
            'RESP_PROTOCOL',
            `Protocol error: invalid ${what}: expected LF after CR, got ${describeByte(byte)}`,
          );
          return pos;
        }
        this.number_progress = NUMBER_DONE;
        break;
      }
      if (byte >= BYTE_ZERO && byte <= BYTE_NINE) {
        if (digits === 1 && value === 0) {
          this.fail('RESP_PROTOCOL', `Protocol error: invalid ${what}: leading zero`);
          return pos;
        }
        value = value * 10 + (byte - BYTE_ZERO);
        digits++;
        if (this.number_negative ? value !== 1 : value > value_max) {
          const detail = this.number_negative
            ? 'negative'
            : `more than the limit of ${value_max} ${unit}`;
          this.fail(
            this.number_negative ? 'RESP_PROTOCOL' : 'RESP_TOO_LARGE',
            `Protocol error: invalid ${what}: ${detail}`,
          );
          return pos;
        }
      } else if (byte === BYTE_CR) {
        if (digits === 0) {
          this.fail('RESP_PROTOCOL', `Protocol error: invalid ${what}: no digits`);
          return pos;
        }
        this.number_progress = NUMBER_EXPECT_LF;
      } else if (
        byte === BYTE_MINUS &&
        digits === 0 &&
        !this.number_negative &&
        what === 'multibulk length'
      ) {
        this.number_negative = true;
      } else {
        this.fail(
          'RESP_PROTOCOL',
          `Protocol error: invalid ${what}: unexpected ${describeByte(byte)}`,
        );
        return pos;
      }
    }
    this.number_value = value;
    this.number_digits = digits;
    return pos;
  }

  /** Collects an inline line; at its end splits it into a command (empty lines are skipped). */
  private readInline(chunk: Buffer, pos: number, commands: Buffer[][]): number {
    const newline = chunk.indexOf(BYTE_LF, pos);
    if (newline < 0) {
      // One byte of slack for the CR of a CRLF that is split from its LF.
      if (this.parts_bytes + (chunk.length - pos) > this.inline_bytes_max + 1) {
        this.failInlineTooBig();
        return chunk.length;
      }
      this.keepPart(chunk, pos);
      return chunk.length;
    }
    let line: Buffer;
    if (this.parts_bytes === 0) {
      line = chunk.subarray(pos, newline);
    } else {
      this.parts.push(chunk.subarray(pos, newline));
      line = Buffer.concat(this.parts, this.parts_bytes + (newline - pos));
      this.clearParts();
    }
    if (line.length > 0 && line[line.length - 1] === BYTE_CR)
      line = line.subarray(0, line.length - 1);
    if (line.length > this.inline_bytes_max) {
      this.failInlineTooBig();
      return newline + 1;
    }
    const args = splitInlineArgs(line);
    if (args === null) {
      this.fail('RESP_PROTOCOL', 'Protocol error: unbalanced quotes in request');
    } else if (args.length > this.array_elements_max) {
      this.fail(
        'RESP_TOO_LARGE',
        `Protocol error: inline request has more than ${this.array_elements_max} arguments`,
      );
    } else {
      if (args.length > 0) commands.push(args);
      this.state = STATE_COMMAND_START;
    }
    return newline + 1;
  }

  /** Appends a finished argument; true when it completes the request. */
  private addArg(arg: Buffer): boolean {
    this.args.push(arg);
    this.args_bytes += arg.length;
    if (this.args.length === this.args_expected) return true;
    this.state = STATE_BULK_PREFIX;
    return false;
  }

  private takeCommand(): Buffer[] {
    const command = this.args;
    this.args = [];
    this.args_bytes = 0;
    this.args_owned = 0;
    this.args_expected = 0;
    this.state = STATE_COMMAND_START;
    return command;
  }

  /**
   * Keeps chunk[pos..] for later; a tail of a chunk is copied so that it does not pin the whole
   * chunk.
   */
  private keepPart(chunk: Buffer, pos: number): void {
    const part = pos === 0 ? chunk : Buffer.from(chunk.subarray(pos));
    this.parts.push(part);
    this.parts_bytes += part.length;
  }

  private clearParts(): void {
    this.parts = [];
    this.parts_bytes = 0;
  }

  private failInlineTooBig(): void {
    this.fail(
      'RESP_TOO_LARGE',
      `Protocol error: too big inline request (line longer than ${this.inline_bytes_max} bytes)`,
    );
  }

  /** Drops every buffered byte; the parser is dead afterwards (its connection is closing). */
  discard(): void {
    if (this.failure === null) this.fail('RESP_TOO_LARGE', 'Protocol error: input discarded');
  }

  private fail(code: 'RESP_PROTOCOL' | 'RESP_TOO_LARGE', message: string): void {
    this.failure = new RespProtocolError(code, message);
    this.state = STATE_FAILED;
    this.args = [];
    this.args_bytes = 0;
    this.args_owned = 0;
    this.clearParts();
  }
}

const BYTE_SPACE = 0x20;
const BYTE_TAB = 0x09;
const BYTE_VTAB = 0x0b;
const BYTE_FORM_FEED = 0x0c;
const BYTE_DOUBLE_QUOTE = 0x22;
const BYTE_SINGLE_QUOTE = 0x27;
const BYTE_BACKSLASH = 0x5c;
const BYTE_LOWER_X = 0x78;

/** Escapes recognised after a backslash inside double quotes (besides \xHH). */
const DOUBLE_QUOTE_ESCAPES: ReadonlyMap<number, number> = new Map([
  [0x6e, 0x0a], // \n
  [0x72, 0x0d], // \r
  [0x74, 0x09], // \t
  [0x62, 0x08], // \b
  [0x61, 0x07], // \a
]);

/** C isspace(): skipped between arguments and required after a closing quote. */
function isBlank(byte: number): boolean {
  return (
    byte === BYTE_SPACE ||
    byte === BYTE_TAB ||
    byte === BYTE_LF ||
    byte === BYTE_CR ||
    byte === BYTE_VTAB ||
    byte === BYTE_FORM_FEED
  );
}

/** Ends an unquoted argument; narrower than isBlank, as in sdssplitargs. */
function endsUnquoted(byte: number): boolean {
  return byte === BYTE_SPACE || byte === BYTE_TAB || byte === BYTE_LF || byte === BYTE_CR;
}

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

/**
 * Splits an inline command line into arguments the way redis-server does
 * (sdssplitargs), so that lines typed into nc or redis-cli mean the same
 * here: blanks separate arguments; "double quotes" take the escapes \" \\
 * \n \r \t \b \a \xHH (any other escaped byte stands for itself); 'single
 * quotes' take only \'; a quote may open in the middle of an argument, but a
 * closing quote must be followed by a blank or the line end. Unlike C, a NUL
 * byte is an ordinary byte. Returns null for unbalanced quotes. Unquoted
 * arguments are views of `line`.
 */
export function splitInlineArgs(line: Buffer): Buffer[] | null {
  const args: Buffer[] = [];
  const end = line.length;
  let pos = 0;
  for (;;) {
    while (pos < end && isBlank(line[pos] as number)) pos++;
    if (pos >= end) return args;
    const start = pos;
    let quote = 0;
    while (pos < end) {
      const byte = line[pos] as number;
      if (endsUnquoted(byte)) break;
      if (byte === BYTE_DOUBLE_QUOTE || byte === BYTE_SINGLE_QUOTE) {
        quote = byte;
        break;
      }
      pos++;
    }
    if (quote === 0) {
      args.push(line.subarray(start, pos));
      continue;
    }
    const bytes: number[] = [];
    for (let index = start; index < pos; index++) bytes.push(line[index] as number);
    pos =
      quote === BYTE_DOUBLE_QUOTE
        ? readDoubleQuoted(line, pos + 1, bytes)
        : readSingleQuoted(line, pos + 1, bytes);
    if (pos < 0) return null;
    if (pos < end && !isBlank(line[pos] as number)) return null;
    args.push(Buffer.from(bytes));
  }
}

/**
 * Decodes a double-quoted string starting after its quote; returns the position after the closing
 * quote, or -1.
 */
function readDoubleQuoted(line: Buffer, pos: number, out: number[]): number {
  const end = line.length;
  while (pos < end) {
    const byte = line[pos] as number;
    if (byte === BYTE_DOUBLE_QUOTE) return pos + 1;
    if (byte === BYTE_BACKSLASH && pos + 1 < end) {
      const escaped = line[pos + 1] as number;
      const high = hexValue(line[pos + 2]);
      const low = hexValue(line[pos + 3]);
      if (escaped === BYTE_LOWER_X && high >= 0 && low >= 0) {
        out.push(high * 16 + low);
        pos += 4;
      } else {
        out.push(DOUBLE_QUOTE_ESCAPES.get(escaped) ?? escaped);
        pos += 2;
      }
    } else {
      out.push(byte);
      pos++;
    }
  }
  return -1;
}

/**
 * Decodes a single-quoted string starting after its quote; returns the position after the closing
 * quote, or -1.
 */
function readSingleQuoted(line: Buffer, pos: number, out: number[]): number {
  const end = line.length;
  while (pos < end) {
    const byte = line[pos] as number;
    if (byte === BYTE_SINGLE_QUOTE) return pos + 1;
    if (byte === BYTE_BACKSLASH && line[pos + 1] === BYTE_SINGLE_QUOTE) {
      out.push(BYTE_SINGLE_QUOTE);
      pos += 2;
    } else {
      out.push(byte);
      pos++;
    }
  }
  return -1;
}

function describeByte(byte: number): string {
  if (byte >= 0x21 && byte <= 0x7e) return `'${String.fromCharCode(byte)}'`;
  return `byte 0x${byte.toString(16).padStart(2, '0')}`;
}
