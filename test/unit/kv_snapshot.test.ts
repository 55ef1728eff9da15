/**
 * The snapshot cursor (src/kv/kv_snapshot.ts): a snapshot taken while entries keep being applied
 * has exactly the bytes of the state at the index where it began, whatever the interleaving of
 * its steps with writes, deletes, deadlines and FLUSHALL; and the live state is not disturbed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeCommand } from '../../src/kv/command_codec';
import { MergeSorter } from '../../src/kv/kv_snapshot';
import { KvStateMachine } from '../../src/kv/state_machine';
import { StorageCorruptError } from '../../src/util/errors';
import { fcRuns } from '../support/fast_check';

const FC_PARAMETERS = fcRuns(300);
const b = (text: string): Buffer => Buffer.from(text, 'latin1');
const STAMP_MS = 1_000_000;

// Few keys, so that writes hit keys the cursor has and has not passed yet.
const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', '', '\u00ff', 'a\u0000').map(b);
const word = fc.uint8Array({ maxLength: 6 }).map((array) => Buffer.from(array));

const entry: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(key, fc.array(word, { minLength: 1, maxLength: 3 })),
  }.arbitrary.map(([k, words]) => encodeCommand({ op: 'set', key: k, words })),
  fc.array(key, { minLength: 1, maxLength: 2 }).map((keys) => encodeCommand({ op: 'del', keys })),
  fc
    .tuple(key, fc.constantFrom('SET', 'PEXPIRE', 'PERSIST', 'FLUSHALL', 'DEL'))
    .map(([k, name]) => {
      const args =
        name === 'SET'
          ? [b('SET'), k, b('v'), b('PX'), b('100000')]
          : name === 'PEXPIRE'
            ? [b('PEXPIRE'), k, b('5000')]
            : name === 'FLUSHALL'
              ? [b('FLUSHALL')]
              : [b(name), k];
      return encodeCommand({ op: 'redis', stamp_ms: STAMP_MS, args });
    }),
  fc.constant(Buffer.alloc(0)),
);

/** What happens after the snapshot begins: an entry is applied, or the cursor takes a step. */
const action = fc.oneof(
  { weight: 3, arbitrary: entry.map((data) => ({ kind: 'apply' as const, data })) },
  { weight: 2, arbitrary: fc.constant({ kind: 'step' as const }) },
);

function applyAll(machine: KvStateMachine, entries: Buffer[]): void {
  for (const data of entries) machine.apply(machine.last_applied + 1, data);
}

test('a snapshot taken while writes continue equals the state at its index (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.array(entry, { maxLength: 30 }),
      fc.array(action, { maxLength: 60 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 80 }),
      (before, actions, keys_per_step, chunk_bytes) => {
        const machine = new KvStateMachine();
        applyAll(machine, before);
        const expected = machine.serialize();
        const cursor = machine.beginSnapshot({ keys_per_step, chunk_bytes });
        const chunks: Buffer[] = [];
        let finished = false;
        const step = (): void => {
          if (!cursor.prepared) cursor.prepare();
          else {
            const chunk = cursor.next();
            if (chunk === null) finished = true;
            else chunks.push(Buffer.from(chunk));
          }
        };
        const applied: Buffer[] = [];
        for (const next of actions) {
          if (next.kind === 'apply') {
            machine.apply(machine.last_applied + 1, next.data);
            applied.push(next.data);
          } else if (!finished) step();
        }
        while (!finished) step();
        assert.deepEqual(Buffer.concat(chunks), expected);
        // The live state is the one a machine that never snapshotted reaches.
        const plain = new KvStateMachine();
        applyAll(plain, [...before, ...applied]);
        assert.deepEqual(machine.serialize(), plain.serialize());
        // And the next snapshot can begin (the cursor let go of the state machine).
        machine.beginSnapshot().finish();
      },
    ),
    FC_PARAMETERS,
  );
});

test('the snapshot restores to the state at its index', () => {
  const machine = new KvStateMachine();
  applyAll(machine, [
    encodeCommand({ op: 'set', key: b('k1'), words: [b('one')] }),
    encodeCommand({ op: 'set', key: b('k2'), words: [b('two'), b('words')] }),
  ]);
  const cursor = machine.beginSnapshot({ keys_per_step: 1, chunk_bytes: 1 });
  applyAll(machine, [encodeCommand({ op: 'del', keys: [b('k1')] })]);
  while (!cursor.prepare());
  applyAll(machine, [encodeCommand({ op: 'set', key: b('k2'), words: [b('changed')] })]);
  const chunks: Buffer[] = [];
  for (let chunk = cursor.next(); chunk !== null; chunk = cursor.next())
    chunks.push(Buffer.from(chunk));
  const restored = KvStateMachine.restore(Buffer.concat(chunks));
  assert.equal(restored.last_applied, 2);
  assert.deepEqual(restored.get(b('k1')), [b('one')]);
  assert.deepEqual(restored.get(b('k2')), [b('two'), b('words')]);
  assert.deepEqual(machine.get(b('k1')), null);
  assert.deepEqual(machine.get(b('k2')), [b('changed')]);
});

test('values round-trip byte for byte, every byte value and empty words', () => {
  const machine = new KvStateMachine();
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const words = [all, Buffer.alloc(0), Buffer.from([0xff, 0])];
  applyAll(machine, [
    encodeCommand({ op: 'set', key: all, words }),
    encodeCommand({ op: 'set', key: b('one'), words: [all] }),
  ]);
  assert.deepEqual(machine.get(all), words);
  assert.deepEqual(machine.get(b('one')), [all]);
  const restored = KvStateMachine.restore(machine.serialize());
  assert.deepEqual(restored.get(all), words);
  assert.equal(restored.data_bytes, machine.data_bytes);
});

test('MergeSorter sorts like Array.prototype.sort in any step size (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ maxLength: 4 }), { maxLength: 3000 }),
      fc.integer({ min: 1, max: 5000 }),
      (items, budget) => {
        const sorter = new MergeSorter(items.slice());
        while (!sorter.step(budget));
        assert.deepEqual(sorter.result(), items.slice().sort());
      },
    ),
    fcRuns(100),
  );
});

test('a snapshot pushed in chunks of any sizes restores as the whole (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.array(entry, { maxLength: 30 }),
      fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 20 }),
      fc.integer({ min: 0, max: 10 }),
      (entries, sizes, cut) => {
        const machine = new KvStateMachine();
        applyAll(machine, entries);
        const whole = machine.serialize();
        const pushChunks = (bytes: Buffer): KvStateMachine => {
          const parser = KvStateMachine.snapshotParser(bytes.length);
          for (let at = 0, i = 0; at < bytes.length; i++) {
            const size = Math.max(1, sizes[i % sizes.length] as number);
            // Fresh copies: the parser may keep a chunk, never a view of the caller's buffer.
            parser.push(Buffer.from(bytes.subarray(at, at + size)));
            at += size;
          }
          return parser.finish();
        };
        assert.deepEqual(pushChunks(whole).serialize(), whole);
        // A truncated snapshot fails whatever the chunking (at push or at finish).
        if (cut > 0 && cut <= whole.length) {
          const truncated = whole.subarray(0, whole.length - cut);
          assert.throws(() => pushChunks(truncated), StorageCorruptError);
        }
      },
    ),
    FC_PARAMETERS,
  );
});
