/** The small shared utilities: backoff delays, host:port text, error descriptions. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatHostPort, parseHostPort } from '../../src/util/address';
import { backoffDelay } from '../../src/util/backoff';
import { describeError, StorageIoError } from '../../src/util/errors';

test('backoff: never below the base, the ceiling doubles per failure up to the max', () => {
  const base_ms = 50;
  const max_ms = 1000;
  const low = (failures: number): number => backoffDelay(failures, base_ms, max_ms, () => 0);
  const high = (failures: number): number =>
    backoffDelay(failures, base_ms, max_ms, () => 1 - Number.EPSILON);
  assert.equal(low(1), 50);
  assert.ok(high(1) <= 50);
  assert.deepEqual([low(2), Math.round(high(2))], [50, 100]);
  assert.deepEqual([low(3), Math.round(high(3))], [100, 200]);
  assert.deepEqual([low(10), Math.round(high(10))], [500, 1000]);
  assert.deepEqual([low(10_000), Math.round(high(10_000))], [500, 1000]);
});

test('backoff: the injected random source decides the delay, so a seed replays it', () => {
  const draws = [0.25, 0.75];
  const delays = draws.map((draw) => backoffDelay(3, 10, 1000, () => draw));
  assert.deepEqual(delays, [25, 35]);
});

test('host:port: names, IPv4 and bracketed IPv6 parse and format back to the same text', () => {
  for (const text of ['127.0.0.1:8001', 'db.example:6379', '[::1]:8002']) {
    const parsed = parseHostPort(text);
    assert.ok(parsed.ok, text);
    assert.equal(formatHostPort(parsed.address), text);
  }
  assert.deepEqual(parseHostPort(' [::1]:8002 '), {
    ok: true,
    address: { host: '::1', port: 8002 },
  });
});

test('host:port: malformed text is refused with the reason', () => {
  const cases: [string, RegExp][] = [
    ['localhost', /is not host:port/],
    [':8001', /is not host:port/],
    ['::1:8001', /IPv6 host must be written in brackets/],
    ['127.0.0.1:', /bad port '': expected a decimal number/],
    ['127.0.0.1:80a1', /bad port '80a1'/],
    ['127.0.0.1:65536', /bad port 65536: more than 65535/],
    ['127.0.0.1:0', /bad port 0: less than 1/],
  ];
  for (const [text, problem] of cases) {
    const parsed = parseHostPort(text);
    assert.equal(parsed.ok, false, text);
    if (!parsed.ok) assert.match(parsed.problem, problem, text);
  }
});

test('describeError: class name unless a plain Error, and an errno code the message lacks', () => {
  assert.equal(describeError(new Error('boom')), 'boom');
  assert.equal(
    describeError(new StorageIoError('disk gone')),
    'StorageIoError: disk gone (STORAGE_IO)',
  );
  const errno = Object.assign(new Error('open /x: no such file'), { code: 'ENOENT' });
  assert.equal(describeError(errno), 'open /x: no such file (ENOENT)');
  const named = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
    code: 'ECONNREFUSED',
  });
  assert.equal(describeError(named), 'connect ECONNREFUSED 127.0.0.1:1');
  assert.equal(describeError('a string'), 'a string');
});
