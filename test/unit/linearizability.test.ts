import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  checkLinearizable,
  formatOperation,
  type HistoryOperation,
  type KvInput,
} from '../sim/linearizability';
import { SeededRandom } from '../../src/util/prng';
import { fcRuns } from '../support/fast_check';

function set(
  client_id: number,
  key: string,
  value: string,
  call_time: number,
  return_time: number,
): HistoryOperation {
  return {
    client_id,
    input: { kind: 'set', key, value },
    output: { kind: 'set' },
    call_time,
    return_time,
  };
}
function get(
  client_id: number,
  key: string,
  value: string | null,
  call_time: number,
  return_time: number,
): HistoryOperation {
  return {
    client_id,
    input: { kind: 'get', key },
    output: { kind: 'get', value },
    call_time,
    return_time,
  };
}
function del(
  client_id: number,
  key: string,
  count: number,
  call_time: number,
  return_time: number,
): HistoryOperation {
  return {
    client_id,
    input: { kind: 'del', key },
    output: { kind: 'del', count },
    call_time,
    return_time,
  };
}
/** The same call, but the client never learned whether it took effect. */
function unknown(op: HistoryOperation): HistoryOperation {
  return { ...op, output: { kind: 'unknown' }, return_time: Infinity };
}

function assertLinearizable(history: readonly HistoryOperation[]): void {
  const result = checkLinearizable(history);
  assert.equal(result.timed_out, false);
  assert.equal(result.ok, true, result.failure?.explanation);
}
function assertNotLinearizable(history: readonly HistoryOperation[], key = 'x'): string {
  const result = checkLinearizable(history);
  assert.equal(result.timed_out, false);
  assert.equal(result.ok, false, 'expected a linearizability violation');
  assert.equal(result.failure?.key, key);
  return result.failure?.explanation ?? '';
}

describe('linearizable histories', () => {
  test('sequential set then get', () => {
    assertLinearizable([set(1, 'x', 'a', 0, 10), get(1, 'x', 'a', 20, 30)]);
  });

  test('empty history', () => {
    assertLinearizable([]);
  });

  test('a get concurrent with a set may see the old or the new value', () => {
    for (const seen of [null, 'new'])
      assertLinearizable([set(1, 'x', 'new', 0, 20), get(2, 'x', seen, 10, 30)]);
    assertLinearizable([
      set(1, 'x', 'old', 0, 5),
      set(1, 'x', 'new', 10, 30),
      get(2, 'x', 'old', 15, 20),
    ]);
  });

  test('a get before any set returns nil', () => {
    assertLinearizable([get(1, 'x', null, 0, 10), set(1, 'x', 'a', 20, 30)]);
  });

  test('del counts 1 when the key exists, then 0', () => {
    assertLinearizable([
      set(1, 'x', 'a', 0, 10),
      del(1, 'x', 1, 20, 30),
      del(1, 'x', 0, 40, 50),
      get(1, 'x', null, 60, 70),
    ]);
  });

  test('an unknown-outcome set that a later get observes', () => {
    assertLinearizable([
      unknown(set(1, 'x', 'a', 0, 10)),
      get(2, 'x', null, 20, 30),
      get(2, 'x', 'a', 40, 50),
    ]);
  });

  test('an unknown-outcome set that is never observed', () => {
    assertLinearizable([
      set(1, 'x', 'a', 0, 10),
      unknown(set(2, 'x', 'b', 20, 30)),
      get(1, 'x', 'a', 40, 50),
    ]);
  });

  test('unknown-outcome del and get may or may not take effect', () => {
    assertLinearizable([
      set(1, 'x', 'a', 0, 10),
      unknown(del(2, 'x', 0, 20, 30)),
      get(1, 'x', 'a', 40, 50),
      get(1, 'x', null, 60, 70),
    ]);
    assertLinearizable([unknown(get(1, 'x', null, 0, 10)), set(2, 'x', 'a', 20, 30)]);
  });

  test('an unknown-outcome set can explain a del that found the key', () => {
    assertLinearizable([unknown(set(1, 'x', 'a', 0, 10)), del(2, 'x', 1, 20, 30)]);
  });

  test('an unknown-outcome del can explain a later nil read', () => {
    assertLinearizable([
      set(1, 'x', 'a', 0, 10),
      unknown(del(2, 'x', 0, 20, 30)),
      get(1, 'x', 'a', 40, 50),
      get(3, 'x', null, 60, 70),
    ]);
  });

  test('an unknown-outcome set of a value another set also wrote may explain a read', () => {
    assertLinearizable([
      set(1, 'x', 'a', 0, 10),
      del(1, 'x', 1, 20, 30),
      unknown(set(2, 'x', 'a', 25, 26)),
      get(3, 'x', 'a', 40, 50),
    ]);
  });

  test('an unknown-outcome set may take effect long after its call', () => {
    assertLinearizable([
      unknown(set(1, 'x', 'late', 0, 1)),
      set(2, 'x', 'a', 10, 20),
      get(2, 'x', 'a', 30, 40),
      del(2, 'x', 1, 50, 60),
      get(2, 'x', null, 70, 80),
      del(3, 'x', 1, 90, 100),
    ]);
  });

  test('overlapping operations on two keys are checked independently', () => {
    assertLinearizable([
      set(1, 'x', 'x1', 0, 30),
      set(2, 'y', 'y1', 5, 25),
      get(3, 'y', 'y1', 10, 40),
      get(4, 'x', null, 12, 14),
      get(4, 'x', 'x1', 15, 50),
      del(2, 'y', 1, 26, 60),
      get(1, 'y', null, 61, 70),
    ]);
  });

  test('touching intervals are concurrent: a return and a call at one instant', () => {
    assertLinearizable([set(1, 'x', 'a', 0, 10), get(2, 'x', null, 10, 20)]);
    assertLinearizable([get(2, 'x', 'a', 0, 10), set(1, 'x', 'a', 10, 20)]);
  });

  test('a zero-length operation is fine', () => {
    assertLinearizable([set(1, 'x', 'a', 5, 5), get(1, 'x', 'a', 5, 5)]);
  });
});

describe('non-linearizable histories', () => {
  test('a get returning a value never written', () => {
    assertNotLinearizable([set(1, 'x', 'a', 0, 10), get(2, 'x', 'b', 20, 30)]);
  });

  test('stale read: set returned, then a later-called get sees the old value', () => {
    assertNotLinearizable([
      set(1, 'x', 'old', 0, 10),
      set(1, 'x', 'new', 20, 30),
      get(2, 'x', 'old', 40, 50),
    ]);
  });

  test('two sequential gets see the new value, then the old one', () => {
    assertNotLinearizable([
      set(1, 'x', 'old', 0, 10),
      set(1, 'x', 'new', 20, 100),
      get(2, 'x', 'new', 30, 40),
      get(3, 'x', 'old', 50, 60),
    ]);
  });

  test('del returning 1 for a missing key', () => {
    assertNotLinearizable([del(1, 'x', 1, 0, 10)]);
    assertNotLinearizable([
      set(1, 'x', 'a', 0, 10),
      del(1, 'x', 1, 20, 30),
      del(2, 'x', 1, 40, 50),
    ]);
  });

  test('del returning 0 for an existing key', () => {
    assertNotLinearizable([set(1, 'x', 'a', 0, 10), del(1, 'x', 0, 20, 30)]);
  });

  test('reads see writes in an order incompatible with real time', () => {
    assertNotLinearizable([
      set(1, 'x', '1', 0, 10),
      set(2, 'x', '2', 20, 30),
      get(3, 'x', '1', 40, 50),
    ]);
  });

  test('a strictly earlier return orders operations', () => {
    assertNotLinearizable([set(1, 'x', 'a', 0, 10), get(2, 'x', null, 11, 20)]);
  });

  test('an unknown-outcome write cannot take effect before its call', () => {
    assertNotLinearizable([get(1, 'x', 'a', 0, 10), unknown(set(2, 'x', 'a', 20, 30))]);
  });

  test('an unknown-outcome write takes effect at most once', () => {
    const history = [
      unknown(set(1, 'x', 'a', 0, 1)),
      unknown(set(2, 'x', 'b', 0, 1)),
      get(3, 'x', 'a', 10, 20),
      get(3, 'x', 'b', 30, 40),
      get(3, 'x', 'a', 50, 60),
    ];
    assertNotLinearizable(history);
    // A second write of the same value makes it fine.
    assertLinearizable([...history, unknown(set(4, 'x', 'a', 0, 1))]);
  });

  test('one unknown-outcome set cannot explain two dels that found the key', () => {
    assertNotLinearizable([
      unknown(set(1, 'x', 'a', 0, 1)),
      del(2, 'x', 1, 10, 20),
      del(2, 'x', 1, 30, 40),
    ]);
  });

  test('only the bad key is reported, with the longest prefix and the stuck operations', () => {
    const explanation = assertNotLinearizable(
      [
        set(1, 'y', 'fine', 0, 10),
        get(2, 'y', 'fine', 20, 30),
        set(1, 'x', '1', 0, 10),
        set(2, 'x', '2', 20, 30),
        get(3, 'x', '1', 40, 50),
      ],
      'x',
    );
    assert.match(explanation, /key "x"/);
    assert.match(explanation, /prefix found \(2 steps\)/);
    assert.match(explanation, /client 2 set\("x", "2"\) -> ok \[20, 30\]/);
    assert.match(explanation, /value after it: "2"/);
    assert.match(explanation, /client 3 get\("x"\) -> "1" \[40, 50\]/);
  });
});

describe('formatOperation', () => {
  test('shows client, call, result and interval', () => {
    assert.equal(formatOperation(set(3, 'k', 'v', 1, 2)), 'client 3 set("k", "v") -> ok [1, 2]');
    assert.equal(formatOperation(get(3, 'k', null, 1, 2)), 'client 3 get("k") -> nil [1, 2]');
    assert.equal(formatOperation(del(3, 'k', 1, 1, 2)), 'client 3 del("k") -> 1 [1, 2]');
    assert.equal(
      formatOperation(unknown(set(3, 'k', 'v', 1, 2))),
      'client 3 set("k", "v") -> ? (unknown outcome) [1, ∞)',
    );
  });

  test('elides long values', () => {
    const text = formatOperation(set(1, 'k', 'v'.repeat(1000), 0, 1));
    assert.ok(text.length < 100, text);
  });
});

describe('malformed histories are rejected', () => {
  test('return before call', () => {
    assert.throws(() => checkLinearizable([set(1, 'x', 'a', 10, 5)]), /precedes call_time/);
  });
  test('output that does not answer the input', () => {
    assert.throws(
      () =>
        checkLinearizable([
          {
            client_id: 1,
            input: { kind: 'get', key: 'x' },
            output: { kind: 'set' },
            call_time: 0,
            return_time: 1,
          },
        ]),
      /does not answer/,
    );
  });
});

describe('step budget', () => {
  test('a search that exceeds the budget reports timed_out, neither ok nor a failure', () => {
    // Many concurrent writes with a read of a value never written: proving it
    // bad needs more than 10 steps.
    const history = [
      ...Array.from({ length: 12 }, (_, i) => set(i, 'x', `v${i}`, 0, 100)),
      get(99, 'x', 'never', 0, 100),
    ];
    const result = checkLinearizable(history, { step_budget: 10 });
    assert.deepEqual(result, { ok: false, timed_out: true });
    assert.equal(checkLinearizable(history).ok, false);
  });
});

// ---------------------------------------------------------------------------
// Randomised checks.

type StateValue = string | null;

/** Applies `op` to the model; null when its output contradicts the state. */
function modelStep(op: HistoryOperation, state: StateValue): { state: StateValue } | null {
  const unknownOutcome = op.output.kind === 'unknown';
  switch (op.input.kind) {
    case 'set':
      return { state: op.input.value };
    case 'get':
      return unknownOutcome || (op.output.kind === 'get' && op.output.value === state)
        ? { state }
        : null;
    case 'del':
      return unknownOutcome ||
        (op.output.kind === 'del' && op.output.count === (state === null ? 0 : 1))
        ? { state: null }
        : null;
  }
}

/** The deliberately simple reference: try every order that respects real time. */
function bruteForceLinearizable(history: readonly HistoryOperation[]): boolean {
  const returnTime = (op: HistoryOperation): number =>
    op.output.kind === 'unknown' ? Infinity : op.return_time;
  const search = (remaining: readonly HistoryOperation[], state: StateValue): boolean => {
    if (remaining.length === 0) return true;
    return remaining.some((candidate, index) => {
      if (remaining.some((other) => other !== candidate && returnTime(other) < candidate.call_time))
        return false;
      const stepped = modelStep(candidate, state);
      return (
        stepped !== null &&
        search([...remaining.slice(0, index), ...remaining.slice(index + 1)], stepped.state)
      );
    });
  };
  const keys = new Set(history.map((op) => op.input.key));
  return [...keys].every((key) =>
    search(
      history.filter((op) => op.input.key === key),
      null,
    ),
  );
}

const VALUES = ['a', 'b', 'c'];

const arbitraryOperation: fc.Arbitrary<HistoryOperation> = fc
  .record({
    client_id: fc.integer({ min: 0, max: 3 }),
    key: fc.constantFrom('x', 'x', 'x', 'y'),
    kind: fc.constantFrom('get', 'set', 'del'),
    value: fc.constantFrom(...VALUES),
    read: fc.constantFrom<StateValue>(null, ...VALUES),
    count: fc.constantFrom(0, 1, 1, 2),
    call_time: fc.integer({ min: 0, max: 20 }),
    duration: fc.integer({ min: 0, max: 10 }),
    outcome_unknown: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  })
  .map((r): HistoryOperation => {
    const op =
      r.kind === 'set'
        ? set(r.client_id, r.key, r.value, r.call_time, r.call_time + r.duration)
        : r.kind === 'get'
          ? get(r.client_id, r.key, r.read, r.call_time, r.call_time + r.duration)
          : del(r.client_id, r.key, r.count, r.call_time, r.call_time + r.duration);
    return r.outcome_unknown ? unknown(op) : op;
  });

describe('randomised', () => {
  test('agrees with a brute-force search on small random histories, with either search', () => {
    let linearizable_count = 0;
    fc.assert(
      fc.property(fc.array(arbitraryOperation, { minLength: 1, maxLength: 8 }), (history) => {
        const expected = bruteForceLinearizable(history);
        if (expected) linearizable_count++;
        for (const search of ['auto', 'quick', 'thorough'] as const) {
          const result = checkLinearizable(history, { search });
          assert.equal(result.timed_out, false);
          assert.equal(
            result.ok,
            expected,
            `${search}: ${result.failure?.explanation ?? 'checker: ok; brute force: not'}`,
          );
        }
      }),
      fcRuns(2000),
    );
    // Both verdicts must be well represented, or the comparison proves little.
    assert.ok(
      linearizable_count > 200 && linearizable_count < 1800,
      `linearizable in ${linearizable_count} of 2000 runs`,
    );
  });

  test('a sequential run stretched to overlap stays linearizable; a phantom read not', () => {
    const GAP = 10;
    const arbitraryCommand = fc.record({
      client_id: fc.integer({ min: 0, max: 4 }),
      key: fc.constantFrom('x', 'y', 'z'),
      kind: fc.constantFrom('get', 'get', 'set', 'del'),
      value: fc.constantFrom('a', 'b', 'c', 'd'),
      stretch_back: fc.integer({ min: 0, max: 4 * GAP }),
      stretch_forward: fc.integer({ min: 0, max: 4 * GAP }),
      outcome_unknown: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    });
    fc.assert(
      fc.property(
        fc.array(arbitraryCommand, { minLength: 1, maxLength: 40 }),
        fc.nat(),
        (commands, corrupt_pick) => {
          // Operation i takes effect at time GAP * i; its interval only has to contain that point.
          const state = new Map<string, string>();
          const history = commands.map((command, i): HistoryOperation => {
            const point = GAP * (i + 1);
            const call_time = point - command.stretch_back;
            const return_time = point + command.stretch_forward;
            const current = state.get(command.key) ?? null;
            let op: HistoryOperation;
            if (command.kind === 'set') {
              state.set(command.key, command.value);
              op = set(command.client_id, command.key, command.value, call_time, return_time);
            } else if (command.kind === 'del') {
              state.delete(command.key);
              op = del(
                command.client_id,
                command.key,
                current === null ? 0 : 1,
                call_time,
                return_time,
              );
            } else {
              op = get(command.client_id, command.key, current, call_time, return_time);
            }
            return command.outcome_unknown ? unknown(op) : op;
          });
          assertLinearizable(history);

          const reads = history.flatMap((op, index) => (op.output.kind === 'get' ? [index] : []));
          fc.pre(reads.length > 0);
          const corrupt_index = reads[corrupt_pick % reads.length] ?? 0;
          const corrupted = history.map((op, index) =>
            index === corrupt_index
              ? { ...op, output: { kind: 'get' as const, value: 'never-written' } }
              : op,
          );
          const target = history[corrupt_index];
          assert.ok(target !== undefined);
          assertNotLinearizable(corrupted, target.input.key);
        },
      ),
      fcRuns(300),
    );
  });
});

// ---------------------------------------------------------------------------
// Larger histories.

interface GeneratedHistory {
  history: HistoryOperation[];
  /** Indices of operations with a known get output (candidates for corruption). */
  reads: number[];
}

/**
 * Clients issue operations one at a time; each takes effect at a random point
 * inside its interval, in the global order of those points, so the history is
 * linearizable by construction. Some outcomes are reported unknown; of those,
 * half really took effect and half did not.
 */
function generateJitteredHistory(
  seed: number,
  operation_count: number,
  key_count: number,
  client_count: number,
  unknown_ratio: number,
): GeneratedHistory {
  const random = new SeededRandom(seed);
  interface Planned {
    client_id: number;
    input: KvInput;
    call_time: number;
    point: number;
    return_time: number;
    outcome_unknown: boolean;
    took_effect: boolean;
  }
  const planned: Planned[] = [];
  const client_free_at = new Array<number>(client_count).fill(0);
  for (let i = 0; i < operation_count; i++) {
    const client_id = i % client_count;
    const call_time = (client_free_at[client_id] ?? 0) + random.int(5);
    const point = call_time + 1 + random.int(20);
    const return_time = point + random.int(20);
    const outcome_unknown = random.float() < unknown_ratio;
    client_free_at[client_id] = outcome_unknown ? call_time + 1 : return_time + 1;
    const key = `k${random.int(key_count)}`;
    const dice = random.int(10);
    const input: KvInput =
      dice < 5
        ? { kind: 'get', key }
        : dice < 9
          ? { kind: 'set', key, value: `v${i}` }
          : { kind: 'del', key };
    planned.push({
      client_id,
      input,
      call_time,
      point,
      return_time,
      outcome_unknown,
      took_effect: !outcome_unknown || random.int(2) === 0,
    });
  }
  const state = new Map<string, string>();
  const history = new Array<HistoryOperation>(operation_count);
  const by_point = planned
    .map((_, index) => index)
    .sort((a, b) => (planned[a]?.point ?? 0) - (planned[b]?.point ?? 0) || a - b);
  for (const index of by_point) {
    const p = planned[index];
    assert.ok(p !== undefined);
    const current = state.get(p.input.key) ?? null;
    let op: HistoryOperation;
    if (p.input.kind === 'set') {
      if (p.took_effect) state.set(p.input.key, p.input.value);
      op = set(p.client_id, p.input.key, p.input.value, p.call_time, p.return_time);
    } else if (p.input.kind === 'del') {
      if (p.took_effect) state.delete(p.input.key);
      op = del(p.client_id, p.input.key, current === null ? 0 : 1, p.call_time, p.return_time);
    } else {
      op = get(p.client_id, p.input.key, current, p.call_time, p.return_time);
    }
    history[index] = p.outcome_unknown ? unknown(op) : op;
  }
  const reads = history.flatMap((op, index) => (op.output.kind === 'get' ? [index] : []));
  return { history, reads };
}

function timed<T>(label: string, run: () => T): T {
  const started = process.hrtime.bigint();
  const result = run();
  const elapsed_ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(`# ${label}: ${elapsed_ms.toFixed(1)} ms`);
  return result;
}

describe('performance', () => {
  const SEED = 20240601;

  /** A read near the end returning the value of the key's first write, long overwritten. */
  function withStaleRead(
    history: readonly HistoryOperation[],
    reads: readonly number[],
  ): { corrupted: HistoryOperation[]; key: string } {
    const corrupt_index = reads[reads.length - 10] ?? 0;
    const key = history[corrupt_index]?.input.key ?? '';
    // (a known outcome: an unknown one may take effect at any later time)
    const first_write = history.find(
      (op) => op.input.key === key && op.input.kind === 'set' && op.output.kind === 'set',
    );
    assert.ok(first_write !== undefined && first_write.input.kind === 'set');
    const stale_value = first_write.input.value;
    const corrupted = history.map((op, index) =>
      index === corrupt_index
        ? { ...op, output: { kind: 'get' as const, value: stale_value } }
        : op,
    );
    return { corrupted, key };
  }

  test('10,000 ops, 20 keys, 1% unknown: linearizable; a bad or stale read is found', () => {
    const { history, reads } = generateJitteredHistory(SEED, 10_000, 20, 5, 0.01);
    const good = timed('10k ops / 20 keys / 5 clients, linearizable', () =>
      checkLinearizable(history),
    );
    assert.equal(good.ok, true, `seed ${SEED}: ${good.failure?.explanation ?? 'timed out'}`);

    const corrupt_index = reads[Math.floor(reads.length / 2)] ?? 0;
    const corrupted = history.map((op, index) =>
      index === corrupt_index
        ? { ...op, output: { kind: 'get' as const, value: 'never-written' } }
        : op,
    );
    const bad = timed('10k ops / 20 keys / 5 clients, one read of a never-written value', () =>
      checkLinearizable(corrupted),
    );
    assert.equal(bad.timed_out, false, `seed ${SEED}`);
    assert.equal(bad.ok, false, `seed ${SEED}`);
    assert.equal(bad.failure?.key, history[corrupt_index]?.input.key);

    const stale = withStaleRead(history, reads);
    const stale_result = timed('10k ops / 20 keys / 5 clients, one stale read', () =>
      checkLinearizable(stale.corrupted),
    );
    assert.equal(stale_result.timed_out, false, `seed ${SEED}`);
    assert.equal(stale_result.failure?.key, stale.key, `seed ${SEED}`);
  });

  test('5,000 ops on one key: linearizable; a stale read near the end is found', () => {
    const { history, reads } = generateJitteredHistory(SEED + 1, 5_000, 1, 5, 0);
    const good = timed('5k ops / 1 key / 5 clients, linearizable', () =>
      checkLinearizable(history),
    );
    assert.equal(good.ok, true, `seed ${SEED + 1}: ${good.failure?.explanation ?? 'timed out'}`);

    const bad = timed('5k ops / 1 key / 5 clients, one stale read', () =>
      checkLinearizable(withStaleRead(history, reads).corrupted),
    );
    assert.equal(bad.timed_out, false, `seed ${SEED + 1}`);
    assert.equal(bad.ok, false, `seed ${SEED + 1}`);
  });

  test('5,000 ops on one key, 2% unknown: linearizable; a late stale read is found', () => {
    const { history, reads } = generateJitteredHistory(SEED + 2, 5_000, 1, 5, 0.02);
    const good = timed('5k ops / 1 key / 5 clients / 2% unknown, linearizable', () =>
      checkLinearizable(history),
    );
    assert.equal(good.ok, true, `seed ${SEED + 2}: ${good.failure?.explanation ?? 'timed out'}`);

    const bad = timed('5k ops / 1 key / 5 clients / 2% unknown, one stale read', () =>
      checkLinearizable(withStaleRead(history, reads).corrupted),
    );
    assert.equal(bad.timed_out, false, `seed ${SEED + 2}`);
    assert.equal(bad.ok, false, `seed ${SEED + 2}`);
  });
});
