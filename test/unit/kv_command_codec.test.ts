import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeCommand, encodeCommand, type KvCommand } from '../../src/kv/command_codec';
import { AssertionFailure } from '../../src/util/assert';
import { CommandMalformedError } from '../../src/util/errors';
import { fcRuns } from '../support/fast_check';

const FC_PARAMETERS = fcRuns(500);

const bytes = fc.uint8Array({ maxLength: 40 }).map((array) => Buffer.from(array));
const command: fc.Arbitrary<KvCommand> = fc.oneof(
  fc
    .tuple(bytes, fc.array(bytes, { minLength: 1, maxLength: 6 }))
    .map(([key, words]): KvCommand => ({ op: 'set', key, words })),
  fc.array(bytes, { minLength: 1, maxLength: 6 }).map((keys): KvCommand => ({ op: 'del', keys })),
);

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

test('SET golden bytes (seed example: SET CS06142 Cloud Computing)', () => {
  const encoded = encodeCommand({
    op: 'set',
    key: Buffer.from('CS06142'),
    words: [Buffer.from('Cloud'), Buffer.from('Computing')],
  });
  const expected = Buffer.concat([
    hex('01 07000000'),
    Buffer.from('CS06142'),
    hex('02000000 05000000'),
    Buffer.from('Cloud'),
    hex('09000000'),
    Buffer.from('Computing'),
  ]);
  assert.deepEqual(encoded, expected);
  assert.deepEqual(decodeCommand(expected), {
    op: 'set',
    key: Buffer.from('CS06142'),
    words: [Buffer.from('Cloud'), Buffer.from('Computing')],
  });
});

test('DEL golden bytes, including an empty key and a duplicate', () => {
  const encoded = encodeCommand({
    op: 'del',
    keys: [Buffer.from('a'), Buffer.alloc(0), Buffer.from('a')],
  });
  assert.deepEqual(encoded, hex('02 03000000 01000000 61 00000000 01000000 61'));
  assert.deepEqual(decodeCommand(encoded), {
    op: 'del',
    keys: [Buffer.from('a'), Buffer.alloc(0), Buffer.from('a')],
  });
});

test('empty data is the no-op entry', () => {
  assert.equal(decodeCommand(new Uint8Array(0)), null);
});

test('encode then decode round-trips (fast-check)', () => {
  fc.assert(
    fc.property(command, (original) => {
      assert.deepEqual(decodeCommand(encodeCommand(original)), original);
    }),
    FC_PARAMETERS,
  );
});

test('decode reads a Uint8Array view at a non-zero offset', () => {
  const encoded = encodeCommand({ op: 'set', key: Buffer.from('k'), words: [Buffer.from('v')] });
  const backing = new Uint8Array(encoded.length + 7);
  backing.set(encoded, 3);
  const view = new Uint8Array(backing.buffer, 3, encoded.length);
  assert.deepEqual(decodeCommand(view), {
    op: 'set',
    key: Buffer.from('k'),
    words: [Buffer.from('v')],
  });
});

test('every proper prefix of an encoding is malformed (fast-check)', () => {
  fc.assert(
    fc.property(command, (original) => {
      const encoded = encodeCommand(original);
      for (let length = 1; length < encoded.length; length++) {
        assert.throws(() => decodeCommand(encoded.subarray(0, length)), CommandMalformedError);
      }
    }),
    { ...FC_PARAMETERS, numRuns: 100 },
  );
});

test('malformed inputs are typed errors', () => {
  const cases: [string, Buffer][] = [
    ['unknown opcode 0', hex('00')],
    ['unknown opcode 3', hex('03 01000000 01000000 61')],
    ['SET with zero words', hex('01 01000000 6b 00000000')],
    ['DEL with zero keys', hex('02 00000000')],
    ['trailing byte', hex('02 01000000 01000000 61 ff')],
    ['key length past the end', hex('01 ffffffff 6b')],
    ['huge word count', hex('01 01000000 6b ffffffff 00000000')],
    ['huge key count', hex('02 ffffffff')],
  ];
  for (const [name, data] of cases) {
    assert.throws(() => decodeCommand(data), CommandMalformedError, name);
  }
});

test('random bytes decode or fail with CommandMalformedError; decoded re-encodes same', () => {
  const near_valid = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 64 }),
    fc
      .tuple(command, fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([original, position, value]) => {
        const encoded = Uint8Array.from(encodeCommand(original));
        encoded[position % encoded.length] = value;
        return encoded;
      }),
  );
  fc.assert(
    fc.property(near_valid, (data) => {
      let decoded: KvCommand | null;
      try {
        decoded = decodeCommand(data);
      } catch (error) {
        assert.ok(error instanceof CommandMalformedError, `unexpected error ${String(error)}`);
        return;
      }
      assert.ok(decoded !== null);
      assert.deepEqual(encodeCommand(decoded), Buffer.from(data));
    }),
    FC_PARAMETERS,
  );
});

test('encoding a command without words or keys is a programming error', () => {
  assert.throws(
    () => encodeCommand({ op: 'set', key: Buffer.from('k'), words: [] }),
    AssertionFailure,
  );
  assert.throws(() => encodeCommand({ op: 'del', keys: [] }), AssertionFailure);
});
