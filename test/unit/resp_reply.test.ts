/**
 * Reply encoders: seed goldens, edge cases, and properties checked against a
 * plain string-built reference and against RequestParser (the request format
 * is the same array of bulk strings). Replay a failing property with
 * RESP_FC_SEED=<seed> RESP_FC_PATH=<path> node --test <this file>.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  REPLY_NIL,
  REPLY_OK,
  REPLY_PONG,
  encodeBulkArray,
  encodeBulkString,
  encodeError,
  encodeInteger,
  encodeSimpleString,
} from '../../src/resp/reply';
import { RequestParser } from '../../src/resp/request_parser';
import { AssertionFailure } from '../../src/util/assert';
import { fcRuns } from '../support/fast_check';

function latin1(buffer: Buffer): string {
  return buffer.toString('latin1');
}

describe('reply goldens (seed byte strings)', () => {
  it('constants', () => {
    assert.equal(latin1(REPLY_OK), '+OK\r\n');
    assert.equal(latin1(REPLY_PONG), '+PONG\r\n');
    assert.equal(latin1(REPLY_NIL), '*1\r\n$3\r\nnil\r\n');
  });

  it('simple string, error, integer, arrays', () => {
    assert.equal(latin1(encodeSimpleString('OK')), '+OK\r\n');
    assert.equal(latin1(encodeError('ERROR')), '-ERROR\r\n');
    assert.equal(
      latin1(encodeError("ERR unknown command 'FOO'")),
      "-ERR unknown command 'FOO'\r\n",
    );
    assert.equal(latin1(encodeInteger(1)), ':1\r\n');
    assert.equal(latin1(encodeInteger(0)), ':0\r\n');
    assert.equal(latin1(encodeInteger(-42)), ':-42\r\n');
    assert.equal(
      latin1(encodeBulkArray([Buffer.from('Cloud'), Buffer.from('Computing')])),
      '*2\r\n$5\r\nCloud\r\n$9\r\nComputing\r\n',
    );
    assert.equal(latin1(encodeBulkArray([Buffer.from('nil')])), latin1(REPLY_NIL));
    assert.equal(latin1(encodeBulkArray([])), '*0\r\n');
    assert.equal(latin1(encodeBulkString('Cloud')), '$5\r\nCloud\r\n');
    assert.equal(latin1(encodeBulkString('')), '$0\r\n\r\n');
  });
});

describe('reply edge cases', () => {
  it('error messages cannot break the framing', () => {
    assert.equal(
      latin1(encodeError("ERR unknown command 'A\r\nB'")),
      "-ERR unknown command 'A  B'\r\n",
    );
    assert.equal(latin1(encodeError('x\ny')), '-x y\r\n');
  });

  it('a simple string with CR or LF is a caller bug', () => {
    assert.throws(() => encodeSimpleString('a\r\nb'), AssertionFailure);
    assert.throws(() => encodeSimpleString('a\nb'), AssertionFailure);
  });

  it('integers must be safe integers', () => {
    assert.throws(() => encodeInteger(1.5), AssertionFailure);
    assert.throws(() => encodeInteger(Number.NaN), AssertionFailure);
    assert.equal(latin1(encodeInteger(Number.MAX_SAFE_INTEGER)), `:${Number.MAX_SAFE_INTEGER}\r\n`);
  });

  it('bulk strings count UTF-8 bytes and keep binary data', () => {
    assert.deepEqual(encodeBulkString('é'), Buffer.from('$2\r\né\r\n', 'utf8'));
    const binary = Buffer.from([0, 13, 10, 255]);
    assert.deepEqual(
      encodeBulkString(binary),
      Buffer.concat([Buffer.from('$4\r\n'), binary, Buffer.from('\r\n')]),
    );
  });

  it('large items and lengths crossing digit boundaries', () => {
    for (const length of [9, 10, 99, 100, 1000, 70_000]) {
      const item = Buffer.alloc(length, 0x61);
      assert.deepEqual(
        encodeBulkArray([item]),
        Buffer.concat([Buffer.from(`*1\r\n$${length}\r\n`), item, Buffer.from('\r\n')]),
      );
    }
  });
});

function referenceBulkArray(items: readonly Buffer[]): Buffer {
  return Buffer.concat([
    Buffer.from(`*${items.length}\r\n`),
    ...items.flatMap((item) => [Buffer.from(`$${item.length}\r\n`), item, Buffer.from('\r\n')]),
  ]);
}

describe('reply properties', () => {
  const items_arbitrary = fc.array(
    fc.uint8Array({ maxLength: 80 }).map((bytes) => Buffer.from(bytes)),
    { maxLength: 15 },
  );

  it('property: encodeBulkArray matches the reference encoding', () => {
    fc.assert(
      fc.property(items_arbitrary, (items) => {
        assert.deepEqual(encodeBulkArray(items), referenceBulkArray(items));
      }),
      fcRuns(500),
    );
  });

  it('property: encodeBulkArray output parses back to the same items', () => {
    fc.assert(
      fc.property(fc.array(items_arbitrary, { maxLength: 10 }), (replies) => {
        const parser = new RequestParser();
        const { commands, error } = parser.push(
          Buffer.concat(replies.map((items) => encodeBulkArray(items))),
        );
        assert.equal(error, null);
        assert.deepEqual(
          commands,
          replies.filter((items) => items.length > 0),
        );
      }),
      fcRuns(300),
    );
  });

  it('property: encodeBulkString and encodeInteger match the reference encoding', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.maxSafeInteger(),
        (text, value) => {
          const bytes = Buffer.from(text, 'utf8');
          assert.deepEqual(
            encodeBulkString(text),
            Buffer.concat([Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n')]),
          );
          assert.equal(latin1(encodeInteger(value)), `:${value}\r\n`);
        },
      ),
      fcRuns(300),
    );
  });
});
