import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionOrder } from '../../src/server/connection_order';
import { DeadlineList, LocalRequest } from '../../src/server/request_deadlines';
import { SeededRandom } from '../../src/util/prng';

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('commands of one kind all start at once', () => {
  const order = new ConnectionOrder();
  const started: number[] = [];
  for (let i = 0; i < 5; i++) order.run(false, () => started.push(i));
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
});

test('a read waits for the writes before it, a write for the reads before it', async () => {
  const order = new ConnectionOrder();
  const started: string[] = [];
  const done = new Map<string, () => void>();
  const run = (name: string, is_read: boolean): void =>
    order.run(is_read, (finish) => {
      started.push(name);
      done.set(name, finish);
    });
  run('w1', false);
  run('w2', false);
  run('r1', true);
  run('r2', true);
  run('w3', false);
  assert.deepEqual(started, ['w1', 'w2']);
  done.get('w2')?.();
  await settle();
  assert.deepEqual(started, ['w1', 'w2'], 'r1 still waits for w1');
  done.get('w1')?.();
  await settle();
  assert.deepEqual(started, ['w1', 'w2', 'r1', 'r2'], 'both reads go together');
  done.get('r1')?.();
  await settle();
  assert.deepEqual(started, ['w1', 'w2', 'r1', 'r2'], 'w3 waits for r2 too');
  done.get('r2')?.();
  await settle();
  assert.deepEqual(started, ['w1', 'w2', 'r1', 'r2', 'w3']);
});

test('a command arriving behind a waiting one waits too, even with nothing running', async () => {
  const order = new ConnectionOrder();
  const started: string[] = [];
  let finish_w1: () => void = () => assert.fail('w1 not started');
  order.run(false, (finish) => {
    started.push('w1');
    finish_w1 = finish;
  });
  order.run(true, () => started.push('r1'));
  order.run(false, () => started.push('w2'));
  assert.deepEqual(started, ['w1']);
  finish_w1();
  await settle();
  assert.deepEqual(started, ['w1', 'r1'], 'w2 is behind r1, which never finished');
});

test('the deadline list expires in deadline order, whatever the insertion order', () => {
  const seed = Date.now() >>> 0;
  const random = new SeededRandom(seed);
  const list = new DeadlineList();
  const expired: number[] = [];
  const requests: LocalRequest[] = [];
  for (let i = 0; i < 200; i++) {
    const request = new LocalRequest(random.int(1001));
    request.on_expire = () => expired.push(request.deadline_ms);
    list.add(request);
    requests.push(request);
  }
  const removed = requests.filter((_, i) => i % 3 === 0);
  for (const request of removed) list.remove(request);
  list.expireUpTo(500);
  const due = requests
    .filter((r, i) => i % 3 !== 0 && r.deadline_ms <= 500)
    .map((r) => r.deadline_ms)
    .sort((a, b) => a - b);
  assert.deepEqual(expired, due, `seed ${seed}`);
  assert.equal(list.size, 200 - removed.length - due.length, `seed ${seed}`);
  list.expireUpTo(1000);
  assert.equal(list.size, 0, `seed ${seed}`);
});
