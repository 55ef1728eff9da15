import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeCommand, ReplyParser, type Reply } from '../../src/resp/client_codec';
import { RespProtocolError } from '../../src/util/errors';
import { AssertionFailure } from '../../src/util/assert';

/** Reference serialiser, written independently of the parser under test. */
function serialize(reply: Reply): Buffer {
  switch (reply.type) {
    case 'simple':
      return Buffer.from(`+${reply.value}\r\n`);
    case 'error':
      return Buffer.from(`-${reply.message}\r\n`);
    case 'integer':
      return Buffer.from(`:${reply.value}\r\n`);
    case 'bulk':
      return reply.value === null
        ? Buffer.from('$-1\r\n')
        : Buffer.concat([
            Buffer.from(`$${reply.value.length}\r\n`),
            reply.value,
            Buffer.from('\r\n'),
          ]);
    case 'array':
      return reply.items === null
        ? Buffer.from('*-1\r\n')
        : Buffer.concat([Buffer.from(`*${reply.items.length}\r\n`), ...reply.items.map(serialize)]);
  }
}

function parseChunks(chunks: Buffer[]): Reply[] {
  const parser = new ReplyParser();
  return chunks.flatMap((chunk) => parser.push(chunk));
}

function rawChunks(chunks: Buffer[]): Buffer[] {
  const parser = new ReplyParser();
  return chunks.flatMap((chunk) => parser.pushRaw(chunk));
}

const SAMPLE_REPLIES: Reply[] = [
  { type: 'simple', value: 'OK' },
  { type: 'error', message: 'MOVED 0 127.0.0.1:8002' },
  { type: 'integer', value: 42 },
  { type: 'integer', value: -7 },
  { type: 'integer', value: 0 },
  { type: 'bulk', value: Buffer.from('role:leader\r\nterm:3\r\n') },
  { type: 'bulk', value: Buffer.alloc(0) },
  { type: 'bulk', value: null },
  { type: 'bulk', value: Buffer.from([0, 13, 10, 255, 36, 42]) },
  {
    type: 'array',
    items: [
      { type: 'bulk', value: Buffer.from('Cloud') },
      { type: 'bulk', value: Buffer.from('Computing') },
    ],
  },
  { type: 'array', items: [{ type: 'bulk', value: Buffer.from('nil') }] },
  { type: 'array', items: [] },
  { type: 'array', items: null },
  {
    type: 'array',
    items: [
      {
        type: 'array',
        items: [
          { type: 'integer', value: 1 },
          { type: 'array', items: [] },
        ],
      },
      { type: 'simple', value: 'x' },
      {
        type: 'array',
        items: [{ type: 'array', items: [{ type: 'bulk', value: Buffer.from('deep') }] }],
      },
    ],
  },
];
const SAMPLE_STREAM = Buffer.concat(SAMPLE_REPLIES.map(serialize));

test('encodeCommand writes the seed lab bytes for SET CS06142 Cloud Computing', () => {
  assert.equal(
    encodeCommand(['SET', 'CS06142', 'Cloud', 'Computing']).toString('latin1'),
    '*4\r\n$3\r\nSET\r\n$7\r\nCS06142\r\n$5\r\nCloud\r\n$9\r\nComputing\r\n',
  );
});

test('encodeCommand counts UTF-8 bytes, keeps Buffers verbatim and allows empty strings', () => {
  const encoded = encodeCommand(['SET', 'é', Buffer.from([0, 13, 10]), '']);
  assert.deepEqual(
    encoded,
    Buffer.concat([
      Buffer.from('*4\r\n$3\r\nSET\r\n$2\r\né\r\n$3\r\n'),
      Buffer.from([0, 13, 10]),
      Buffer.from('\r\n$0\r\n\r\n'),
    ]),
  );
});

test('parses every reply type from one chunk', () => {
  assert.deepEqual(parseChunks([SAMPLE_STREAM]), SAMPLE_REPLIES);
});

test('parses the same replies when the stream is split at every byte boundary', () => {
  for (let split = 1; split < SAMPLE_STREAM.length; split++) {
    const replies = parseChunks([SAMPLE_STREAM.subarray(0, split), SAMPLE_STREAM.subarray(split)]);
    assert.deepEqual(replies, SAMPLE_REPLIES, `split at ${split}`);
  }
});

test('parses the same replies when fed one byte at a time', () => {
  const bytes = [...SAMPLE_STREAM].map((byte) => Buffer.from([byte]));
  assert.deepEqual(parseChunks(bytes), SAMPLE_REPLIES);
});

test('returns each reply as soon as its last byte arrives, not before', () => {
  const parser = new ReplyParser();
  assert.deepEqual(parser.push(Buffer.from('*2\r\n$5\r\nCloud\r\n$9\r\nComput')), []);
  assert.deepEqual(parser.push(Buffer.from('ing\r')), []);
  assert.deepEqual(parser.push(Buffer.from('\n:1\r\n+O')), [
    {
      type: 'array',
      items: [
        { type: 'bulk', value: Buffer.from('Cloud') },
        { type: 'bulk', value: Buffer.from('Computing') },
      ],
    },
    { type: 'integer', value: 1 },
  ]);
  assert.deepEqual(parser.push(Buffer.from('K\r\n')), [{ type: 'simple', value: 'OK' }]);
});

test('pushRaw returns the exact bytes of each top-level reply at every split', () => {
  const expected = SAMPLE_REPLIES.map(serialize);
  assert.deepEqual(rawChunks([SAMPLE_STREAM]), expected);
  for (let split = 1; split < SAMPLE_STREAM.length; split++) {
    assert.deepEqual(
      rawChunks([SAMPLE_STREAM.subarray(0, split), SAMPLE_STREAM.subarray(split)]),
      expected,
      `split at ${split}`,
    );
  }
  assert.deepEqual(rawChunks([...SAMPLE_STREAM].map((byte) => Buffer.from([byte]))), expected);
});

test('one parser refuses to mix push and pushRaw', () => {
  const parser = new ReplyParser();
  parser.pushRaw(Buffer.from('+OK\r\n'));
  assert.throws(() => parser.push(Buffer.from('+OK\r\n')), AssertionFailure);
  const other = new ReplyParser();
  other.push(Buffer.from(''));
  assert.throws(() => other.pushRaw(Buffer.from('+OK\r\n')), AssertionFailure);
});

const MALFORMED: [string, string][] = [
  ['unknown type byte', '!oops\r\n'],
  ['empty line', '\r\n'],
  ['bare LF ending a line', '+OK\n'],
  ['bare CR inside a line', '+O\rK\r\n'],
  ['non-numeric integer', ':12a\r\n'],
  ['fractional integer', ':1.5\r\n'],
  ['leading plus', ':+1\r\n'],
  ['leading zero length', '$05\r\nhello\r\n'],
  ['negative zero', ':-0\r\n'],
  ['integer beyond 2^53', ':9007199254740993\r\n'],
  ['empty bulk length', '$\r\n'],
  ['bulk length below -1', '$-2\r\n'],
  ['array length below -1', '*-5\r\n'],
  ['bulk body longer than declared', '$3\r\nabcd\r\n'],
  ['bulk body without CRLF', '$3\r\nabcXY'],
];

for (const [name, input] of MALFORMED) {
  test(`rejects malformed input: ${name}`, () => {
    const parser = new ReplyParser();
    assert.throws(() => parser.push(Buffer.from(input)), RespProtocolError);
    // The stream is unusable afterwards.
    assert.throws(() => parser.push(Buffer.from('+OK\r\n')), RespProtocolError);
  });
}

test('rejects malformed input however it is split', () => {
  for (const [name, input] of MALFORMED) {
    const parser = new ReplyParser();
    assert.throws(
      () => {
        for (const byte of Buffer.from(input)) parser.push(Buffer.from([byte]));
      },
      RespProtocolError,
      name,
    );
  }
});

test('enforces bulk, array, line and nesting limits with RESP_TOO_LARGE', () => {
  const tooLarge = (options: ConstructorParameters<typeof ReplyParser>[0], input: string): void => {
    assert.throws(
      () => new ReplyParser(options).push(Buffer.from(input)),
      (error: unknown) => error instanceof RespProtocolError && error.code === 'RESP_TOO_LARGE',
    );
  };
  tooLarge({ bulk_bytes_max: 4 }, '$5\r\nhello\r\n');
  tooLarge({ array_elements_max: 2 }, '*3\r\n');
  tooLarge({ line_bytes_max: 8 }, '+123456789\r\n');
  // A line with no CRLF yet is refused once it cannot fit, without waiting for the end.
  tooLarge({ line_bytes_max: 8 }, '+1234567890');
  tooLarge({ nesting_depth_max: 3 }, '*1\r\n*1\r\n*1\r\n*1\r\n');
  assert.deepEqual(
    new ReplyParser({ bulk_bytes_max: 5, line_bytes_max: 4 }).push(
      Buffer.from('$5\r\nhello\r\n+abc\r\n'),
    ),
    [
      { type: 'bulk', value: Buffer.from('hello') },
      { type: 'simple', value: 'abc' },
    ],
  );
});

test('a bulk string arriving in many chunks is parsed once complete', () => {
  const body = Buffer.alloc(1024 * 1024, 0x61);
  const stream = Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')]);
  const parser = new ReplyParser();
  const replies: Reply[] = [];
  for (let offset = 0; offset < stream.length; offset += 1000)
    replies.push(...parser.push(stream.subarray(offset, offset + 1000)));
  assert.equal(replies.length, 1);
  const reply = replies[0];
  assert.ok(reply?.type === 'bulk' && reply.value !== null && reply.value.equals(body));
});

// Property: any reply tree, serialised and cut at arbitrary points, parses back to itself, and raw
// mode returns its bytes.
const replyArbitrary: fc.Arbitrary<Reply> = fc.letrec<{ reply: Reply }>((tie) => ({
  reply: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.stringMatching(/^[^\r\n]*$/).map((value): Reply => ({ type: 'simple', value })),
    fc.stringMatching(/^[^\r\n]*$/).map((message): Reply => ({ type: 'error', message })),
    fc
      .maxSafeInteger()
      .map((value): Reply => ({ type: 'integer', value: Object.is(value, -0) ? 0 : value })),
    fc
      .option(fc.uint8Array({ maxLength: 40 }), { nil: null })
      .map((bytes): Reply => ({ type: 'bulk', value: bytes === null ? null : Buffer.from(bytes) })),
    fc
      .option(fc.array(tie('reply'), { maxLength: 5 }), { nil: null })
      .map((items): Reply => ({ type: 'array', items })),
  ),
})).reply;

test('property: serialise, split anywhere, parse back (set FC_SEED to replay)', () => {
  const seed = process.env.FC_SEED === undefined ? Date.now() : Number(process.env.FC_SEED);
  try {
    fc.assert(
      fc.property(
        fc.array(replyArbitrary, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (replies, cuts) => {
          const stream = Buffer.concat(replies.map(serialize));
          const points = [...new Set(cuts.map((cut) => cut % (stream.length + 1)))].sort(
            (a, b) => a - b,
          );
          const chunks: Buffer[] = [];
          let previous = 0;
          for (const point of [...points, stream.length]) {
            chunks.push(stream.subarray(previous, point));
            previous = point;
          }
          assert.deepEqual(parseChunks(chunks), replies);
          assert.deepEqual(rawChunks(chunks), replies.map(serialize));
        },
      ),
      { seed, numRuns: 300 },
    );
  } catch (error) {
    console.error(`client_codec property failed; replay with FC_SEED=${seed}`);
    throw error;
  }
});
