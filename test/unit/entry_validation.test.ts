import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeCommand, encodeCommand, OPCODE_SET } from '../../src/kv/command_codec';
import { isWellFormedSet } from '../../src/server/entry_validation';

function decodesAsSet(data: Uint8Array): boolean {
  try {
    return decodeCommand(data)?.op === 'set';
  } catch {
    return false;
  }
}

test('isWellFormedSet accepts every encoded SET and nothing else', () => {
  const set = encodeCommand({
    op: 'set',
    key: Buffer.from('k'),
    words: [Buffer.from('v'), Buffer.alloc(0)],
  });
  assert.equal(isWellFormedSet(set), true);
  assert.equal(isWellFormedSet(encodeCommand({ op: 'del', keys: [Buffer.from('k')] })), false);
  assert.equal(isWellFormedSet(set.subarray(0, set.length - 1)), false, 'truncated');
  assert.equal(isWellFormedSet(Buffer.concat([set, Buffer.of(0)])), false, 'trailing byte');
  const no_words = Buffer.from([OPCODE_SET, 1, 0, 0, 0, 0x6b, 0, 0, 0, 0]);
  assert.equal(isWellFormedSet(no_words), false, 'zero words');
  assert.throws(() => decodeCommand(no_words));
  const huge_key = Buffer.from(set);
  huge_key.writeUInt32LE(0xffffffff, 1);
  assert.equal(isWellFormedSet(huge_key), false, 'key length past the end');
});

test('property: isWellFormedSet agrees with decodeCommand (set FC_SEED to replay)', () => {
  const seed = process.env.FC_SEED === undefined ? Date.now() : Number(process.env.FC_SEED);
  const bytes = fc.uint8Array({ maxLength: 6 });
  const set = fc
    .record({ key: bytes, words: fc.array(bytes, { minLength: 1, maxLength: 4 }) })
    .map(({ key, words }) =>
      encodeCommand({ op: 'set', key: Buffer.from(key), words: words.map((w) => Buffer.from(w)) }),
    );
  // Valid SETs with a few bytes changed, cut or appended, and arbitrary bytes after the opcode.
  const mutated = fc
    .tuple(set, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }))
    .map(([data, edits]) => {
      const out = Buffer.from(data);
      for (const [at, value] of edits) out[at % out.length] = value;
      return out;
    });
  const cut = fc.tuple(set, fc.nat()).map(([data, n]) => data.subarray(0, n % (data.length + 1)));
  const raw = fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.concat([Buffer.of(1), b]));
  try {
    fc.assert(
      fc.property(fc.oneof(set, mutated, cut, raw), (data) => {
        assert.equal(isWellFormedSet(data), decodesAsSet(data));
      }),
      { seed, numRuns: 3000 },
    );
  } catch (error) {
    console.error(`failing seed: FC_SEED=${seed}`);
    throw error;
  }
});
