import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCommand, encodeCommand, type KvCommand } from '../../src/kv/command_codec';
import { globMatch } from '../../src/kv/glob';
import { KvStateMachine } from '../../src/kv/state_machine';
import { encodeRedisValue, type RedisValue } from '../../src/resp/redis_value';
import { keySlot } from '../../src/server/commands/cluster_slot';
import { DATA_COMMANDS } from '../../src/kv/redis_commands';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Applies Redis-view commands at the given stamps; returns their replies as RESP2 text. */
class Replayer {
  readonly machine = new KvStateMachine();

  write(stamp_ms: number, ...args: string[]): string {
    return this.apply({ op: 'redis', stamp_ms, args: args.map(b) });
  }

  apply(command: KvCommand): string {
    const result = this.machine.apply(this.machine.last_applied + 1, encodeCommand(command));
    assert.equal(result.kind, 'value');
    return resp(result.kind === 'value' ? result.value : { t: 'null' });
  }

  read(now_ms: number, ...args: string[]): string {
    const spec = DATA_COMMANDS.get(args[0]!.toLowerCase());
    assert.ok(spec !== undefined && spec.kind === 'read', args[0]);
    return resp(spec.run({ state: this.machine, now_ms }, args.map(b)));
  }
}

function resp(value: RedisValue): string {
  return encodeRedisValue(value, 2).toString('latin1');
}

test('SET options: NX/XX/GET act, unknown options and bad expiries are errors, never data', () => {
  const r = new Replayer();
  assert.equal(r.write(1000, 'SET', 'k', 'v', 'NX'), '+OK\r\n');
  assert.equal(r.write(1000, 'SET', 'k', 'w', 'NX'), '$-1\r\n');
  assert.equal(r.write(1000, 'SET', 'k', 'w', 'XX', 'GET'), '$1\r\nv\r\n');
  assert.equal(r.write(1000, 'SET', 'nope', 'w', 'XX'), '$-1\r\n');
  assert.equal(r.write(1000, 'SET', 'k', 'x', 'BOGUS'), '-ERR syntax error\r\n');
  assert.equal(
    r.write(1000, 'SET', 'k', 'x', 'EX', '0'),
    "-ERR invalid expire time in 'set' command\r\n",
  );
  assert.equal(r.write(1000, 'SET', 'k', 'x', 'EX', '1', 'PX', '5'), '-ERR syntax error\r\n');
  assert.equal(r.read(1000, 'GET', 'k'), '$1\r\nw\r\n');
  assert.deepEqual(r.machine.get(b('k')), [b('w')], 'stored as one word');
});

test('expiry follows entry stamps, never reads back after the deadline; KEEPTTL keeps it', () => {
  const r = new Replayer();
  r.write(10_000, 'SET', 'k', 'v', 'PX', '500');
  assert.equal(r.read(10_499, 'GET', 'k'), '$1\r\nv\r\n');
  assert.equal(r.read(10_500, 'GET', 'k'), '$-1\r\n', 'gone at its deadline by the reader clock');
  assert.equal(r.read(10_100, 'PTTL', 'k'), ':400\r\n');
  r.write(10_100, 'SET', 'k', 'w', 'KEEPTTL');
  assert.equal(r.read(10_100, 'PTTL', 'k'), ':400\r\n');
  // A later entry stamped earlier (a new leader with a slower clock) does not move time back.
  r.write(20_000, 'SET', 'other', 'x');
  r.write(5_000, 'SET', 'late', 'y', 'PX', '1000');
  assert.equal(r.machine.clock_ms, 20_000);
  assert.equal(r.read(0, 'GET', 'late'), '$1\r\ny\r\n', 'deadline counted from the clock, 21000');
  assert.equal(r.read(0, 'GET', 'k'), '$-1\r\n', 'expired by the state machine clock');
  assert.equal(r.write(20_000, 'INCR', 'k'), ':1\r\n', 'an expired key is absent to writes too');
  assert.equal(r.read(20_000, 'TTL', 'k'), ':-1\r\n');
});

test('EXPIRE entries delete only keys past their deadline at the entry stamp', () => {
  const r = new Replayer();
  r.write(1000, 'SET', 'a', '1', 'PX', '100');
  r.write(1000, 'SET', 'b', '1', 'PX', '5000');
  r.write(1000, 'SET', 'c', '1');
  assert.equal(r.apply({ op: 'expire', stamp_ms: 2000, keys: [b('a'), b('b'), b('c')] }), ':1\r\n');
  assert.equal(r.machine.key_count, 2);
  assert.equal(r.machine.expiring_key_count, 1);
});

test('INCR family, APPEND, MSETNX, RENAME, EXISTS, DBSIZE, KEYS', () => {
  const r = new Replayer();
  assert.equal(r.write(1, 'INCRBY', 'n', '-5'), ':-5\r\n');
  assert.equal(r.write(1, 'DECRBY', 'n', '5'), ':-10\r\n');
  r.write(1, 'SET', 'max', '9223372036854775807');
  assert.equal(r.write(1, 'INCR', 'max'), '-ERR increment or decrement would overflow\r\n');
  assert.equal(
    r.write(1, 'INCR', 'nope', 'x'),
    "-ERR wrong number of arguments for 'incr' command\r\n",
  );
  assert.equal(r.write(1, 'APPEND', 'n', 'x'), ':4\r\n');
  assert.equal(r.write(1, 'INCR', 'n'), '-ERR value is not an integer or out of range\r\n');
  assert.equal(r.write(1, 'MSETNX', 'a', '1', 'n', '2'), ':0\r\n');
  assert.equal(r.write(1, 'MSETNX', 'a', '1', 'b', '2'), ':1\r\n');
  assert.equal(r.write(1, 'RENAME', 'a', 'c'), '+OK\r\n');
  assert.equal(r.write(1, 'RENAME', 'a', 'c'), '-ERR no such key\r\n');
  assert.equal(r.read(1, 'EXISTS', 'a', 'b', 'c', 'c'), ':3\r\n');
  assert.equal(r.read(1, 'DBSIZE'), ':4\r\n');
  assert.equal(r.read(1, 'KEYS', '[bc]'), '*2\r\n$1\r\nb\r\n$1\r\nc\r\n');
});

test('a seed-view value reads in the Redis view as its words joined by spaces', () => {
  const r = new Replayer();
  r.machine.apply(1, encodeCommand({ op: 'set', key: b('k'), words: [b('a'), b('b')] }));
  assert.equal(r.read(1, 'GET', 'k'), '$3\r\na b\r\n');
  assert.equal(r.read(1, 'STRLEN', 'k'), ':3\r\n');
});

test('transactions: all queued commands at one index; a watched change aborts the whole', () => {
  const r = new Replayer();
  r.write(1, 'SET', 'w', '1');
  const watch_index = r.machine.last_applied;
  const transaction = (watched: string[]): Extract<KvCommand, { op: 'transaction' }> => ({
    op: 'transaction',
    stamp_ms: 1,
    watch_index,
    watched: watched.map(b),
    commands: [['SET', 'w', '2'].map(b), ['INCR', 'w'].map(b), ['INCR', 'x', 'y'].map(b)],
  });
  assert.equal(
    r.apply(transaction(['w'])),
    "*3\r\n+OK\r\n:3\r\n-ERR wrong number of arguments for 'incr' command\r\n",
  );
  assert.equal(r.apply(transaction(['w'])), '*-1\r\n', 'w changed after the watch index');
  assert.equal(r.read(1, 'GET', 'w'), '$1\r\n3\r\n');
  r.write(1, 'DEL', 'w');
  assert.equal(
    r.apply({ ...transaction(['w']), watch_index: r.machine.last_applied - 1 }),
    '*-1\r\n',
  );
  assert.equal(r.apply({ ...transaction(['unrelated']), watch_index: 0 }).slice(0, 4), '*3\r\n');
});

test('snapshots carry deadlines, modification indices, tombstones and the clock', () => {
  const r = new Replayer();
  r.write(1000, 'SET', 'a', '1', 'PX', '100');
  r.write(1000, 'SET', 'b', '1');
  r.write(1500, 'DEL', 'b');
  const restored = KvStateMachine.restore(r.machine.serialize());
  assert.deepEqual(restored.serialize(), r.machine.serialize());
  assert.equal(restored.clock_ms, 1500);
  assert.equal(restored.deadlineOf('a'), 1100);
  assert.equal(restored.changedAfter(b('b'), 2, 0), true, 'the tombstone survived');
  assert.equal(restored.changedAfter(b('b'), 3, 0), false);
});

test('unknown opcodes and malformed Redis entries never crash apply', () => {
  const machine = new KvStateMachine();
  assert.equal(machine.apply(1, Buffer.from([0x63, 1, 2])).kind, 'invalid');
  const result = machine.apply(2, encodeCommand({ op: 'redis', stamp_ms: 0, args: [b('NOSUCH')] }));
  assert.equal(result.kind, 'value');
  assert.equal(machine.key_count, 0);
});

test('new opcodes round-trip through the codec', () => {
  const commands: KvCommand[] = [
    { op: 'redis', stamp_ms: 2 ** 50, args: [b('SET'), b(''), b('v')] },
    { op: 'transaction', stamp_ms: 7, watch_index: 3, watched: [], commands: [] },
    {
      op: 'transaction',
      stamp_ms: 7,
      watch_index: 3,
      watched: [b('k')],
      commands: [[b('GET'), b('k')]],
    },
    { op: 'expire', stamp_ms: 9, keys: [b('a'), b('b')] },
  ];
  for (const command of commands) assert.deepEqual(decodeCommand(encodeCommand(command)), command);
});

test('glob patterns and cluster key slots match Redis', () => {
  assert.ok(globMatch('key:*', 'key:12'));
  assert.ok(globMatch('h?llo', 'hello'));
  assert.ok(globMatch('h[^e]llo', 'hallo'));
  assert.ok(!globMatch('h[^e]llo', 'hello'));
  assert.ok(globMatch('h[a-b]llo', 'hbllo'));
  assert.ok(globMatch('a\\*', 'a*'));
  assert.ok(!globMatch('a\\*', 'ab'));
  assert.ok(globMatch('*a*b*', 'xxaxxbxx'));
  // Values from Redis's CLUSTER KEYSLOT.
  assert.equal(keySlot(b('foo')), 12182);
  assert.equal(keySlot(b('{user1000}.following')), keySlot(b('user1000')));
  assert.equal(keySlot(b('123456789')), 12739);
});
