/**
 * RequestParser: seed goldens, inline splitting, every error case, and
 * fast-check properties over random commands fed in random chunk splits.
 * A failing property prints its seed and path; replay it with
 * RESP_FC_SEED=<seed> RESP_FC_PATH=<path> node --test <this file>.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  RequestParser,
  splitInlineArgs,
  type ParsedBatch,
  type RequestParserOptions,
} from '../../src/resp/request_parser';
import { RespProtocolError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';
import { fcRuns } from '../support/fast_check';

function encodeRequest(args: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) parts.push(Buffer.from(`$${arg.length}\r\n`), arg, Buffer.from('\r\n'));
  return Buffer.concat(parts);
}

/** Feeds `bytes` cut at `cuts` (sorted offsets), gathering commands until the first error. */
function feed(parser: RequestParser, bytes: Buffer, cuts: readonly number[] = []): ParsedBatch {
  const commands: Buffer[][] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut < start) continue;
    // Copy each chunk, as a socket would hand us fresh memory.
    const batch = parser.push(Buffer.from(bytes.subarray(start, cut)));
    commands.push(...batch.commands);
    if (batch.error !== null) return { commands, error: batch.error };
    start = cut;
  }
  return { commands, error: null };
}

function byteByByteCuts(length: number): number[] {
  return Array.from({ length }, (_, index) => index);
}

function asStrings(commands: readonly Buffer[][]): string[][] {
  return commands.map((command) => command.map((arg) => arg.toString('latin1')));
}

function parseAll(text: string, options?: RequestParserOptions): ParsedBatch {
  return feed(new RequestParser(options), Buffer.from(text, 'latin1'));
}

describe('RequestParser goldens (seed byte strings)', () => {
  const goldens: Array<[string, string[][]]> = [
    [
      '*4\r\n$3\r\nSET\r\n$7\r\nCS06142\r\n$5\r\nCloud\r\n$9\r\nComputing\r\n',
      [['SET', 'CS06142', 'Cloud', 'Computing']],
    ],
    ['*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n', [['foo', 'bar']]],
    ['*3\r\n$3\r\nSET\r\n$5\r\nkey\r\n\r\n$5\r\nvalue\r\n', [['SET', 'key\r\n', 'value']]],
    ['*2\r\n$3\r\nGET\r\n$0\r\n\r\n', [['GET', '']]],
    ['SET a b\r\n', [['SET', 'a', 'b']]],
    ['SET k "Cloud Computing"\r\n', [['SET', 'k', 'Cloud Computing']]],
    ['GET a\n', [['GET', 'a']]],
    ['\r\n\n   \r\nPING\r\n', [['PING']]],
    ['*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n', [['PING']]],
  ];
  for (const [input, expected] of goldens) {
    it(`parses ${JSON.stringify(input)} whole, byte by byte and split at every offset`, () => {
      const bytes = Buffer.from(input, 'latin1');
      const whole = feed(new RequestParser(), bytes);
      assert.equal(whole.error, null);
      assert.deepEqual(asStrings(whole.commands), expected);
      const bytewise = feed(new RequestParser(), bytes, byteByByteCuts(bytes.length));
      assert.equal(bytewise.error, null);
      assert.deepEqual(asStrings(bytewise.commands), expected);
      for (let cut = 0; cut <= bytes.length; cut++) {
        const split = feed(new RequestParser(), bytes, [cut]);
        assert.equal(split.error, null, `cut at ${cut}`);
        assert.deepEqual(asStrings(split.commands), expected, `cut at ${cut}`);
      }
    });
  }

  it('returns pipelined commands from one chunk in order', () => {
    const input = '*1\r\n$4\r\nPING\r\nGET x\r\n*2\r\n$3\r\nDEL\r\n$1\r\nx\r\n';
    assert.deepEqual(asStrings(parseAll(input).commands), [['PING'], ['GET', 'x'], ['DEL', 'x']]);
  });

  it('is binary-safe', () => {
    const value = Buffer.from([0, 255, 13, 10, 42, 36, 13]);
    const result = feed(
      new RequestParser(),
      encodeRequest([Buffer.from('SET'), Buffer.from('k'), value]),
    );
    assert.equal(result.error, null);
    assert.deepEqual(result.commands, [[Buffer.from('SET'), Buffer.from('k'), value]]);
  });
});

describe('splitInlineArgs (sdssplitargs rules)', () => {
  const cases: Array<[string, string[] | null]> = [
    ['SET a b', ['SET', 'a', 'b']],
    ['  SET\ta \t b  ', ['SET', 'a', 'b']],
    ['SET k "Cloud Computing"', ['SET', 'k', 'Cloud Computing']],
    ['SET k "a\\"b\\\\c"', ['SET', 'k', 'a"b\\c']],
    ['SET k "\\n\\r\\t\\b\\a"', ['SET', 'k', '\n\r\t\b\x07']],
    ['SET k "\\x41\\x7a\\xff\\x0"', ['SET', 'k', 'Az\xffx0']],
    ['SET k "\\q"', ['SET', 'k', 'q']],
    ["SET k 'it\\'s \"raw\" \\n'", ['SET', 'k', 'it\'s "raw" \\n']],
    ['SET k ""', ['SET', 'k', '']],
    ["SET k ''", ['SET', 'k', '']],
    ['SET k"ey" v', ['SET', 'key', 'v']],
    ['SET "a b"\t"c"', ['SET', 'a b', 'c']],
    ['', []],
    [' \t ', []],
    ['SET "a b', null],
    ["SET 'a b", null],
    ['SET "a"b', null],
    ["SET 'a'b", null],
    ['SET "a\\"', null],
  ];
  for (const [line, expected] of cases) {
    it(`splits ${JSON.stringify(line)}`, () => {
      const args = splitInlineArgs(Buffer.from(line, 'latin1'));
      assert.deepEqual(args === null ? null : args.map((arg) => arg.toString('latin1')), expected);
    });
  }
});

const SMALL_LIMITS: RequestParserOptions = {
  bulk_bytes_max: 1000,
  array_elements_max: 16,
  inline_bytes_max: 100,
};

interface ErrorCase {
  name: string;
  bytes: string;
  message: RegExp;
  code: 'RESP_PROTOCOL' | 'RESP_TOO_LARGE';
}

const ERROR_CASES: ErrorCase[] = [
  {
    name: 'bad bulk prefix',
    bytes: '*2\r\n$3\r\nfoo\r\n:3\r\nbar\r\n',
    message: /expected '\$', got ':'/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'non-numeric count',
    bytes: '*x\r\n',
    message: /invalid multibulk length/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'count with trailing junk',
    bytes: '*2x\r\n',
    message: /invalid multibulk length/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'empty count',
    bytes: '*\r\n',
    message: /invalid multibulk length: no digits/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'negative count other than -1',
    bytes: '*-2\r\n',
    message: /invalid multibulk length: negative/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'count over the limit',
    bytes: '*17\r\n',
    message: /invalid multibulk length: more than the limit of 16/,
    code: 'RESP_TOO_LARGE',
  },
  {
    name: 'CR without LF in a header',
    bytes: '*1\rX',
    message: /invalid multibulk length: expected LF after CR/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'negative bulk length',
    bytes: '*1\r\n$-1\r\n',
    message: /invalid bulk length/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'non-numeric bulk length',
    bytes: '*1\r\n$abc\r\n',
    message: /invalid bulk length/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'leading zero in bulk length',
    bytes: '*1\r\n$03\r\nfoo\r\n',
    message: /invalid bulk length: leading zero/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'bulk length over the limit (header only)',
    bytes: '*1\r\n$1001',
    message: /invalid bulk length: more than the limit of 1000/,
    code: 'RESP_TOO_LARGE',
  },
  {
    name: 'missing CRLF after bulk data',
    bytes: '*1\r\n$3\r\nfooXY',
    message: /expected CRLF after bulk data/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'LF only after bulk data',
    bytes: '*1\r\n$3\r\nfoo\n\n',
    message: /expected CRLF after bulk data/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'request over the buffered limit',
    bytes: `*2\r\n$600\r\n${'v'.repeat(600)}\r\n$600\r\n`,
    message: /request too large/,
    code: 'RESP_TOO_LARGE',
  },
  {
    name: 'unbalanced double quote',
    bytes: 'SET "a b\r\n',
    message: /unbalanced quotes/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'unbalanced single quote',
    bytes: "SET 'a b\n",
    message: /unbalanced quotes/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'text after a closing quote',
    bytes: 'SET "a"b\r\n',
    message: /unbalanced quotes/,
    code: 'RESP_PROTOCOL',
  },
  {
    name: 'inline line over the limit without a line end',
    bytes: 'a'.repeat(102),
    message: /too big inline request/,
    code: 'RESP_TOO_LARGE',
  },
  {
    name: 'inline line over the limit with a line end',
    bytes: `${'a'.repeat(101)}\r\n`,
    message: /too big inline request/,
    code: 'RESP_TOO_LARGE',
  },
];

describe('RequestParser errors', () => {
  for (const error_case of ERROR_CASES) {
    it(`${error_case.name}: fails whole and byte by byte, then stays dead`, () => {
      const bytes = Buffer.from(error_case.bytes, 'latin1');
      for (const cuts of [[], byteByByteCuts(bytes.length)]) {
        const parser = new RequestParser(SMALL_LIMITS);
        const result = feed(parser, bytes, cuts);
        assert.ok(result.error instanceof RespProtocolError, 'expected an error');
        assert.match(result.error.message, /^Protocol error: /);
        assert.match(result.error.message, error_case.message);
        assert.equal(result.error.code, error_case.code);
        const after = parser.push(Buffer.from('*1\r\n$4\r\nPING\r\n'));
        assert.deepEqual(after.commands, []);
        assert.equal(after.error, result.error);
        assert.equal(parser.buffered_bytes, 0);
      }
    });
  }

  it('property: an error comes after every valid command before it, for any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(commandArbitrary(), { maxLength: 8 }),
        fc.constantFrom(...ERROR_CASES),
        fc.array(fc.nat(), { maxLength: 12 }),
        (commands, error_case, raw_cuts) => {
          const valid = Buffer.concat(commands.map((command) => encodeRequest(command)));
          const bytes = Buffer.concat([valid, Buffer.from(error_case.bytes, 'latin1')]);
          const result = feed(
            new RequestParser(SMALL_LIMITS),
            bytes,
            toCuts(raw_cuts, bytes.length),
          );
          assert.deepEqual(result.commands, commands);
          assert.ok(result.error !== null);
          assert.match(result.error.message, error_case.message);
        },
      ),
      fcRuns(300),
    );
  });

  it('rejects an oversized bulk from its header before any data arrives (default limits)', () => {
    const parser = new RequestParser();
    const result = parser.push(
      Buffer.from(`*2\r\n$3\r\nSET\r\n$${LIMITS.resp_bulk_bytes_max + 1}\r\n`),
    );
    assert.ok(result.error !== null);
    assert.equal(result.error.code, 'RESP_TOO_LARGE');
    assert.equal(parser.buffered_bytes, 0);
  });

  it('accepts an inline line of exactly inline_bytes_max bytes', () => {
    const line = `SET k ${'v'.repeat(94)}`;
    assert.equal(line.length, 100);
    for (const ending of ['\r\n', '\n']) {
      const bytes = Buffer.from(line + ending);
      const result = feed(new RequestParser(SMALL_LIMITS), bytes, byteByByteCuts(bytes.length));
      assert.equal(result.error, null);
      assert.deepEqual(asStrings(result.commands), [['SET', 'k', 'v'.repeat(94)]]);
    }
  });

  it('accepts a bulk of bulk_bytes_max bytes and a request of buffered_bytes_max', () => {
    const options: RequestParserOptions = { ...SMALL_LIMITS, buffered_bytes_max: 3 + 1000 + 2 };
    const command = [Buffer.from('SET'), Buffer.alloc(1000, 0x61)];
    const result = feed(new RequestParser(options), encodeRequest(command), [7]);
    assert.equal(result.error, null);
    assert.deepEqual(result.commands, [command]);
  });
});

/** Arguments biased towards the bytes that matter to the framing. */
function argArbitrary(): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 24 }).map((bytes) => Buffer.from(bytes)),
    fc
      .array(fc.constantFrom('\r', '\n', '\r\n', '*', '$', '-1', '0', 'a', ' ', '"', "'", '\\'), {
        maxLength: 8,
      })
      .map((pieces) => Buffer.from(pieces.join(''), 'latin1')),
    fc.constant(Buffer.alloc(0)),
  );
}

function commandArbitrary(): fc.Arbitrary<Buffer[]> {
  return fc.array(argArbitrary(), { minLength: 1, maxLength: 6 });
}

/** Maps arbitrary naturals onto sorted cut offsets within [0, length]. */
function toCuts(raw_cuts: readonly number[], length: number): number[] {
  return raw_cuts.map((cut) => cut % (length + 1)).sort((a, b) => a - b);
}

type Encoding = 'multibulk' | 'inline';

/**
 * Inline form of a command: every argument double-quoted, bytes escaped as sdssplitargs reads them.
 */
function encodeInline(args: readonly Buffer[], separator: string, line_end: string): Buffer {
  const quoted = args.map((arg) => {
    let text = '"';
    for (const byte of arg) {
      if (byte === 0x22) text += '\\"';
      else if (byte === 0x5c) text += '\\\\';
      else if (byte === 0x0a) text += '\\n';
      else if (byte === 0x0d) text += '\\r';
      else if (byte === 0x09) text += '\\t';
      else if (byte >= 0x20 && byte < 0x7f) text += String.fromCharCode(byte);
      else text += `\\x${byte.toString(16).padStart(2, '0')}`;
    }
    return `${text}"`;
  });
  return Buffer.from(quoted.join(separator) + line_end, 'latin1');
}

describe('RequestParser properties', () => {
  it('property: random commands in random chunkings come back unchanged', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            commandArbitrary(),
            fc.constantFrom<Encoding>('multibulk', 'inline'),
            fc.constantFrom(' ', '\t', '  '),
            fc.constantFrom('\r\n', '\n'),
            fc.boolean(),
          ),
          {
            maxLength: 20,
          },
        ),
        fc.oneof(fc.constant('bytewise' as const), fc.array(fc.nat(), { maxLength: 30 })),
        (encoded_commands, chunking) => {
          const parts: Buffer[] = [];
          for (const [command, encoding, separator, line_end, noise] of encoded_commands) {
            // Requests that Redis skips silently may sit between commands.
            if (noise)
              parts.push(Buffer.from(encoding === 'multibulk' ? '*0\r\n*-1\r\n' : `  ${line_end}`));
            parts.push(
              encoding === 'multibulk'
                ? encodeRequest(command)
                : encodeInline(command, separator, line_end),
            );
          }
          const bytes = Buffer.concat(parts);
          const cuts =
            chunking === 'bytewise' ? byteByByteCuts(bytes.length) : toCuts(chunking, bytes.length);
          const parser = new RequestParser();
          const result = feed(parser, bytes, cuts);
          assert.equal(result.error, null);
          assert.deepEqual(
            result.commands,
            encoded_commands.map(([command]) => command),
          );
          assert.equal(parser.buffered_bytes, 0);
        },
      ),
      fcRuns(500),
    );
  });

  it('property: buffered_bytes stays within its max; only requests over it fail', () => {
    const options: RequestParserOptions = {
      bulk_bytes_max: 24,
      inline_bytes_max: 16,
      array_elements_max: 6,
    };
    const buffered_bytes_max = 24 + 16;
    const requestBytes = (command: readonly Buffer[]): number =>
      command.reduce((sum, arg) => sum + arg.length, 0) + 2;
    fc.assert(
      fc.property(
        fc.array(commandArbitrary(), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (commands, raw_cuts) => {
          const bytes = Buffer.concat(commands.map((command) => encodeRequest(command)));
          const parser = new RequestParser(options);
          const parsed: Buffer[][] = [];
          let start = 0;
          for (const cut of [...toCuts(raw_cuts, bytes.length), bytes.length]) {
            const batch = parser.push(Buffer.from(bytes.subarray(start, cut)));
            parsed.push(...batch.commands);
            assert.ok(parser.buffered_bytes <= buffered_bytes_max);
            if (batch.error !== null) {
              assert.match(batch.error.message, /request too large/);
              break;
            }
            start = cut;
          }
          const first_too_large = commands.findIndex(
            (command) => requestBytes(command) > buffered_bytes_max,
          );
          assert.deepEqual(
            parsed,
            first_too_large < 0 ? commands : commands.slice(0, first_too_large),
          );
          assert.equal(parser.buffered_bytes, 0);
        },
      ),
      fcRuns(300),
    );
  });
});

describe('RequestParser on arbitrary input', () => {
  const token_arbitrary = fc.oneof(
    fc.constantFrom(
      '*',
      '$',
      '\r',
      '\n',
      '\r\n',
      '-1',
      '0',
      '1',
      '2',
      '3',
      '12',
      '"',
      "'",
      '\\',
      ' ',
      'SET',
      'x',
    ),
    fc.uint8Array({ maxLength: 6 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  );

  it('property: never throws; any chunking gives the commands and error of one chunk', () => {
    fc.assert(
      fc.property(
        fc.array(token_arbitrary, { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (tokens, raw_cuts) => {
          const bytes = Buffer.from(tokens.join(''), 'latin1');
          const whole = feed(new RequestParser(SMALL_LIMITS), bytes);
          const chunked = feed(
            new RequestParser(SMALL_LIMITS),
            bytes,
            toCuts(raw_cuts, bytes.length),
          );
          assert.deepEqual(chunked.commands, whole.commands);
          assert.equal(chunked.error?.message, whole.error?.message);
        },
      ),
      fcRuns(1000),
    );
  });
});

describe('RequestParser buffering and aliasing', () => {
  it('reports buffered bytes of an incomplete request and releases them on completion', () => {
    const parser = new RequestParser();
    assert.deepEqual(
      parser.push(Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva')).commands,
      [],
    );
    assert.equal(parser.buffered_bytes, 3 + 1 + 2);
    const batch = parser.push(Buffer.from('lue\r\n'));
    assert.deepEqual(asStrings(batch.commands), [['SET', 'k', 'value']]);
    assert.equal(parser.buffered_bytes, 0);
  });

  it('copies arguments it holds across pushes, so a pushed chunk is not pinned', () => {
    const parser = new RequestParser();
    // Buffer.alloc, unlike Buffer.from, never shares the small-buffer pool with the parser's
    // copies.
    const text = '*2\r\n$3\r\nfoo\r\n$3\r\nb';
    const first = Buffer.alloc(text.length);
    first.write(text);
    assert.deepEqual(parser.push(first).commands, []);
    first.fill(0x58); // a caller reusing its buffer must not change what was parsed
    const second = Buffer.from('ar\r\n');
    const [command] = parser.push(second).commands;
    assert.ok(command !== undefined);
    assert.deepEqual(asStrings([command]), [['foo', 'bar']]);
    assert.notEqual(command[0]?.buffer, first.buffer);
  });

  it('returns arguments of a command complete within one chunk as views of that chunk', () => {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    chunk.write('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n');
    const parser = new RequestParser();
    const { commands } = parser.push(chunk.subarray(0, 22));
    assert.equal(commands[0]?.[1]?.buffer, chunk.buffer);
  });

  it('assembles a large bulk from many small chunks in linear time', () => {
    const value = Buffer.alloc(16 * 1024 * 1024);
    for (let index = 0; index < value.length; index += 4096) value[index] = index & 0xff;
    const bytes = encodeRequest([Buffer.from('SET'), Buffer.from('big'), value]);
    const parser = new RequestParser();
    const chunk_bytes = 256;
    const commands: Buffer[][] = [];
    const started_ms = Date.now();
    for (let start = 0; start < bytes.length; start += chunk_bytes) {
      const batch = parser.push(bytes.subarray(start, start + chunk_bytes));
      assert.equal(batch.error, null);
      commands.push(...batch.commands);
      assert.ok(parser.buffered_bytes <= 3 + 3 + value.length);
    }
    // 65536 pushes; a quadratic parser would copy terabytes and never finish.
    assert.ok(Date.now() - started_ms < 20_000, 'large bulk took too long');
    assert.equal(commands.length, 1);
    assert.ok(commands[0]?.[2]?.equals(value));
  });
});
