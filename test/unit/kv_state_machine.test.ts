import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeCommand } from '../../src/kv/command_codec';
import { KvStateMachine } from '../../src/kv/state_machine';
import { AssertionFailure } from '../../src/util/assert';
import { StorageCorruptError } from '../../src/util/errors';
import { fcRuns } from '../support/fast_check';

const FC_PARAMETERS = fcRuns(300);

const b = (text: string): Buffer => Buffer.from(text);

function setEntry(key: Buffer | string, ...words: (Buffer | string)[]): Buffer {
  return encodeCommand({
    op: 'set',
    key: Buffer.from(key),
    words: words.map((word) => Buffer.from(word)),
  });
}

function delEntry(...keys: (Buffer | string)[]): Buffer {
  return encodeCommand({ op: 'del', keys: keys.map((key) => Buffer.from(key)) });
}

/** Applies entries at consecutive indexes after the machine's last_applied. */
function applyAll(machine: KvStateMachine, ...entries: Uint8Array[]): void {
  for (const entry of entries) machine.apply(machine.last_applied + 1, entry);
}

test('seed example: SET CS06142 Cloud Computing, then GET returns both words', () => {
  const machine = new KvStateMachine();
  assert.deepEqual(machine.apply(1, setEntry('CS06142', 'Cloud', 'Computing')), { kind: 'ok' });
  assert.deepEqual(machine.get(b('CS06142')), [b('Cloud'), b('Computing')]);
  assert.equal(machine.get(b('CS06143')), null);
  assert.equal(machine.last_applied, 1);
  assert.equal(machine.key_count, 1);
  assert.equal(machine.data_bytes, 'CS06142'.length + 'Cloud'.length + 'Computing'.length);
});

test('SET overwrites and keeps data_bytes exact', () => {
  const machine = new KvStateMachine();
  applyAll(machine, setEntry('k', 'long value here'), setEntry('k', 'v'));
  assert.deepEqual(machine.get(b('k')), [b('v')]);
  assert.equal(machine.key_count, 1);
  assert.equal(machine.data_bytes, 2);
});

test('DEL returns how many named keys existed; a key named twice counts once', () => {
  const machine = new KvStateMachine();
  applyAll(machine, setEntry('a', '1'), setEntry('b', '2'), setEntry('c', '3'));
  assert.deepEqual(machine.apply(4, delEntry('a', 'missing', 'a', 'b')), {
    kind: 'integer',
    value: 2,
  });
  assert.deepEqual(machine.apply(5, delEntry('a')), { kind: 'integer', value: 0 });
  assert.equal(machine.get(b('a')), null);
  assert.deepEqual(machine.get(b('c')), [b('3')]);
  assert.equal(machine.key_count, 1);
  assert.equal(machine.data_bytes, 2);
});

test('keys and values are binary-safe, empty ones included', () => {
  const machine = new KvStateMachine();
  const raw_ff = Buffer.from([0xff]);
  const utf8_y_umlaut = Buffer.from('ÿ', 'utf8'); // c3 bf: must not collide with ff
  const with_nul = Buffer.from([0x61, 0x00, 0x62, 0x0d, 0x0a]);
  applyAll(
    machine,
    setEntry(raw_ff, 'raw'),
    setEntry(utf8_y_umlaut, 'utf8'),
    setEntry(with_nul, with_nul),
    setEntry('', ''),
    setEntry('e', '', 'x', ''),
  );
  assert.deepEqual(machine.get(raw_ff), [b('raw')]);
  assert.deepEqual(machine.get(utf8_y_umlaut), [b('utf8')]);
  assert.deepEqual(machine.get(with_nul), [with_nul]);
  assert.deepEqual(machine.get(Buffer.alloc(0)), [Buffer.alloc(0)]);
  assert.deepEqual(machine.get(b('e')), [b(''), b('x'), b('')]);
  assert.equal(machine.key_count, 5);
});

test('SET copies its input: later changes to the entry buffer do not leak in', () => {
  const machine = new KvStateMachine();
  const entry = setEntry('k', 'value');
  machine.apply(1, entry);
  entry.fill(0x7a);
  assert.deepEqual(machine.get(b('k')), [b('value')]);
});

test('get returns a fresh array each time', () => {
  const machine = new KvStateMachine();
  machine.apply(1, setEntry('k', 'a', 'b'));
  machine.get(b('k'))?.pop();
  assert.deepEqual(machine.get(b('k')), [b('a'), b('b')]);
});

test('the no-op entry only advances last_applied', () => {
  const machine = new KvStateMachine();
  assert.deepEqual(machine.apply(1, new Uint8Array(0)), { kind: 'noop' });
  assert.equal(machine.last_applied, 1);
  assert.equal(machine.key_count, 0);
});

test('applying out of order is a broken invariant', () => {
  const machine = new KvStateMachine();
  assert.throws(() => machine.apply(2, setEntry('k', 'v')), AssertionFailure);
  machine.apply(1, setEntry('k', 'v'));
  assert.throws(() => machine.apply(1, setEntry('k', 'v')), AssertionFailure);
  assert.equal(machine.last_applied, 1);
});

test('a committed entry that is not a command is skipped alike on every replica', () => {
  const poisons = [Buffer.from([9, 9, 9]), Buffer.from([1]), Buffer.from([2, 0, 0, 0, 0])];
  const machines = [new KvStateMachine(), new KvStateMachine()];
  for (const machine of machines) {
    machine.apply(1, setEntry('k', 'v'));
    for (const [i, poison] of poisons.entries()) {
      const result = machine.apply(2 + i, poison);
      assert.equal(result.kind, 'invalid', `poison ${i} is reported, not applied`);
    }
    assert.deepEqual(machine.apply(5, setEntry('j', 'w')), { kind: 'ok' });
    assert.equal(machine.last_applied, 5);
  }
  assert.deepEqual(machines[0]!.serialize(), machines[1]!.serialize());
  assert.deepEqual(machines[0]!.get(Buffer.from('k')), [Buffer.from('v')]);
});

test('empty state serializes to the documented header', () => {
  const expected = Buffer.concat([
    Buffer.from('KVSM'),
    Buffer.from(`03${'00'.repeat(24)}0000000000000000`, 'hex'),
  ]);
  assert.deepEqual(new KvStateMachine().serialize(), expected);
});

test('snapshot golden bytes for one key', () => {
  const machine = new KvStateMachine();
  applyAll(machine, new Uint8Array(0), setEntry('k', 'ab', ''));
  const expected = Buffer.concat([
    Buffer.from('KVSM'),
    Buffer.from(
      '03 0200000000000000 0000000000000000 0000000000000000 01000000'.replace(/ /g, ''),
      'hex',
    ),
    // key length 1, stored length 7 + 4 + 8 + 2, no deadline
    Buffer.from('01000000 15000000 0000000000000000'.replace(/ /g, ''), 'hex'),
    b('k'),
    // stored value: mod_index 2 (u48), tag 1 (several words), 2 words of 2 and 0 bytes
    Buffer.from('020000000000 01 02000000 02000000 00000000'.replace(/ /g, ''), 'hex'),
    b('ab'),
    Buffer.from('00000000', 'hex'), // no tombstones
  ]);
  assert.deepEqual(machine.serialize(), expected);
});

type Op =
  | { op: 'set'; key: Buffer; words: Buffer[] }
  | { op: 'del'; keys: Buffer[] }
  | { op: 'noop' };

// A small key alphabet makes overwrites and deletes of existing keys common.
const key = fc.constantFrom(
  b(''),
  b('a'),
  b('b'),
  Buffer.from([0xff]),
  Buffer.from([0xc3, 0xbf]),
  Buffer.from([0]),
  b('long-key-name'),
);
const word = fc.uint8Array({ maxLength: 12 }).map((array) => Buffer.from(array));
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      key,
      words: fc.array(word, { minLength: 1, maxLength: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('del' as const),
      keys: fc.array(key, { minLength: 1, maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: 'noop' as const }) },
);

function entryOf(operation: Op): Buffer {
  return operation.op === 'noop' ? Buffer.alloc(0) : encodeCommand(operation);
}

/** The obvious model: a Map from hex key to words. */
function runWithModel(ops: Op[]): { machine: KvStateMachine; model: Map<string, Buffer[]> } {
  const machine = new KvStateMachine();
  const model = new Map<string, Buffer[]>();
  ops.forEach((operation, position) => {
    const result = machine.apply(position + 1, entryOf(operation));
    if (operation.op === 'set') {
      model.set(operation.key.toString('hex'), operation.words);
      assert.deepEqual(result, { kind: 'ok' });
    } else if (operation.op === 'del') {
      let removed = 0;
      for (const name of operation.keys) if (model.delete(name.toString('hex'))) removed++;
      assert.deepEqual(result, { kind: 'integer', value: removed });
    } else {
      assert.deepEqual(result, { kind: 'noop' });
    }
  });
  return { machine, model };
}

function assertMatchesModel(machine: KvStateMachine, model: Map<string, Buffer[]>): void {
  assert.equal(machine.key_count, model.size);
  let data_bytes = 0;
  for (const [hex_key, words] of model) {
    assert.deepEqual(machine.get(Buffer.from(hex_key, 'hex')), words);
    data_bytes += hex_key.length / 2 + words.reduce((sum, w) => sum + w.length, 0);
  }
  assert.equal(machine.data_bytes, data_bytes);
}

test('random op sequences match a Map model; restore(serialize(sm)) equals sm (fast-check)', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const { machine, model } = runWithModel(ops);
      assertMatchesModel(machine, model);
      const snapshot = machine.serialize();
      const restored = KvStateMachine.restore(snapshot);
      assert.equal(restored.last_applied, machine.last_applied);
      assertMatchesModel(restored, model);
      assert.deepEqual(restored.serialize(), snapshot);
      // The restored machine keeps applying from where the original stopped.
      applyAll(restored, setEntry('after', 'restore'));
      assert.deepEqual(restored.get(b('after')), [b('restore')]);
    }),
    FC_PARAMETERS,
  );
});

test('restored mid-way, a replica ends byte-equal to one that applied all (fast-check)', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), fc.nat(), (ops, cut_seed) => {
      const { machine } = runWithModel(ops);
      const cut = ops.length === 0 ? 0 : cut_seed % (ops.length + 1);
      const { machine: early } = runWithModel(ops.slice(0, cut));
      const other = KvStateMachine.restore(early.serialize());
      ops.slice(cut).forEach((operation, i) => {
        other.apply(cut + i + 1, entryOf(operation));
      });
      assert.deepEqual(other.serialize(), machine.serialize());
    }),
    FC_PARAMETERS,
  );
});

function validSnapshot(): Buffer {
  const machine = new KvStateMachine();
  applyAll(machine, setEntry('a', 'x', 'y'), setEntry('b', ''), new Uint8Array(0));
  return machine.serialize();
}

test('restore rejects malformed snapshots with StorageCorruptError', () => {
  const valid = validSnapshot();
  for (let length = 0; length < valid.length; length++) {
    assert.throws(
      () => KvStateMachine.restore(valid.subarray(0, length)),
      StorageCorruptError,
      `prefix of ${length} bytes`,
    );
  }
  const header = (key_count: number): Buffer =>
    Buffer.concat([
      Buffer.from('KVSM'),
      Buffer.from(`030300000000000000${'00'.repeat(16)}`, 'hex'),
      u32(key_count),
    ]);
  const oneWord = (word: string, mod_index = 1): Buffer =>
    Buffer.concat([Buffer.from([mod_index, 0, 0, 0, 0, 0, 0]), b(word)]);
  const keyWith = (name: string, stored: Buffer): Buffer =>
    Buffer.concat([u32(name.length), u32(stored.length), Buffer.alloc(8), b(name), stored]);
  const noTombstones = u32(0);
  const cases: [string, Buffer][] = [
    ['bad magic', Buffer.concat([b('KVSX'), valid.subarray(4)])],
    ['unknown version', Buffer.concat([valid.subarray(0, 4), Buffer.from([4]), valid.subarray(5)])],
    ['old version 2', Buffer.concat([valid.subarray(0, 4), Buffer.from([2]), valid.subarray(5)])],
    ['trailing byte', Buffer.concat([valid, Buffer.from([0])])],
    [
      'keys out of order',
      Buffer.concat([
        header(2),
        keyWith('b', oneWord('v')),
        keyWith('a', oneWord('v')),
        noTombstones,
      ]),
    ],
    [
      'duplicate key',
      Buffer.concat([
        header(2),
        keyWith('a', oneWord('v')),
        keyWith('a', oneWord('w')),
        noTombstones,
      ]),
    ],
    ['value without header', Buffer.concat([header(1), keyWith('a', b('v')), noTombstones])],
    [
      'value from the future',
      Buffer.concat([header(1), keyWith('a', oneWord('v', 4)), noTombstones]),
    ],
    [
      'unknown value tag',
      Buffer.concat([header(1), keyWith('a', Buffer.from([1, 0, 0, 0, 0, 0, 2])), noTombstones]),
    ],
    [
      'word lengths too long',
      Buffer.concat([
        header(1),
        keyWith('a', Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 1]), u32(2), u32(1), u32(5)])),
        noTombstones,
      ]),
    ],
    ['huge key count', header(0xffffffff)],
    [
      'last_applied beyond 2^53',
      Buffer.concat([
        Buffer.from('KVSM'),
        Buffer.from(`03ffffffffffffffff${'00'.repeat(16)}00000000`, 'hex'),
      ]),
    ],
  ];
  for (const [name, snapshot] of cases) {
    assert.throws(() => KvStateMachine.restore(snapshot), StorageCorruptError, name);
  }
});

test('a corrupted snapshot restores canonically or fails with StorageCorruptError', () => {
  const valid = validSnapshot();
  fc.assert(
    fc.property(
      fc.nat({ max: valid.length - 1 }),
      fc.integer({ min: 0, max: 255 }),
      (position, value) => {
        const corrupted = Buffer.from(valid);
        corrupted[position] = value;
        let restored: KvStateMachine;
        try {
          restored = KvStateMachine.restore(corrupted);
        } catch (error) {
          assert.ok(error instanceof StorageCorruptError, `unexpected error ${String(error)}`);
          return;
        }
        assert.deepEqual(restored.serialize(), corrupted);
      },
    ),
    FC_PARAMETERS,
  );
});

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value);
  return out;
}
