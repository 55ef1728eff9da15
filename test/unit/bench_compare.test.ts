/**
 * The benchmark's parsers: RESP replies split anywhere, redis-benchmark 7's report, /proc stat
 * lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchKey, percentile } from '../../bench/compare/load_spec';
import { selfTimes } from '../../bench/compare/cpuprofile_top';
import { statCpuMs } from '../../bench/compare/proc_cpu';
import { parseRedisBenchmark } from '../../bench/compare/redis_benchmark';
import { ReplyScanner } from '../../bench/compare/reply_scanner';

const REPLIES =
  '+OK\r\n$5\r\nhe\r\no\r\n$-1\r\n-ERR no\r\n:7\r\n$0\r\n\r\n*1\r\n$3\r\nnil\r\n' +
  '*2\r\n$3\r\nnil\r\n:1\r\n*0\r\n';

test('ReplyScanner counts the same replies whatever the chunking', () => {
  const bytes = Buffer.from(REPLIES, 'latin1');
  for (let size = 1; size <= bytes.length; size++) {
    const scanner = new ReplyScanner();
    const total = { replies: 0, errors: 0, nils: 0 };
    for (let offset = 0; offset < bytes.length; offset += size) {
      const counts = scanner.feed(bytes.subarray(offset, offset + size));
      total.replies += counts.replies;
      total.errors += counts.errors;
      total.nils += counts.nils;
    }
    assert.deepEqual(total, { replies: 9, errors: 1, nils: 2 }, `chunks of ${size} bytes`);
  }
});

test('ReplyScanner rejects what is not RESP', () => {
  assert.throws(() => new ReplyScanner().feed(Buffer.from('%1\r\n+OK\r\n')), /unexpected reply/);
  assert.throws(() => new ReplyScanner().feed(Buffer.from('$x\r\n')), /unexpected reply/);
});

const REDIS_BENCHMARK_OUTPUT = [
  'SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r',
  '====== SET ======',
  '  20000 requests completed in 0.22 seconds',
  '  50 parallel clients',
  'Latency by percentile distribution:',
  '0.000% <= 0.151 milliseconds (cumulative count 1)',
  '50.000% <= 0.431 milliseconds (cumulative count 10045)',
  '99.805% <= 2.495 milliseconds (cumulative count 19961)',
  '99.902% <= 2.607 milliseconds (cumulative count 19982)',
  '100.000% <= 2.863 milliseconds (cumulative count 20000)',
  '',
  'Cumulative distribution of latencies:',
  '99.950% <= 2.103 milliseconds (cumulative count 19990)',
  '',
  'Summary:',
  '  throughput summary: 91743.12 requests per second',
  '  latency summary (msec):',
  '          avg       min       p50       p95       p99       max',
  '        0.482     0.144     0.431     0.815     1.663     2.863',
  '@@stat 4242 (sh) S 1 2 3 0 -1 4194304 1 2 3 4 0 0 35 7 20 0 1 0 5 6 7',
  '',
].join('\n');

test('parseRedisBenchmark reads rps, p50, p99, p99.9 and the CPU of redis-benchmark', () => {
  const spec = {
    operation: 'SET' as const,
    connections: 50,
    pipeline: 1,
    requests: 20_000,
    key_space: 100,
    value_bytes: 16,
  };
  const result = parseRedisBenchmark(REDIS_BENCHMARK_OUTPUT, spec);
  assert.equal(result.ops_per_s, 91743.12);
  assert.equal(result.elapsed_ms, 220);
  assert.equal(result.p50_ms, 0.431);
  assert.equal(result.p99_ms, 1.663);
  assert.equal(result.p999_ms, 2.607);
  // cutime 35 + cstime 7 ticks at (usually) 100 Hz.
  assert.ok(result.generator_cpu_ms !== null && result.generator_cpu_ms > 0);
  assert.equal(result.generator_cpu_ms, statCpuMs('1 (sh) S 0 0 0 0 0 0 0 0 0 0 0 0 35 7', true));
});

test('statCpuMs reads utime+stime after a command name with spaces', () => {
  const line = '77 (node a) b) R 1 1 1 0 -1 0 0 0 0 0 12 8 0 0 20 0';
  assert.equal(statCpuMs(line), statCpuMs('77 (x) R 1 1 1 0 -1 0 0 0 0 0 20 0 0 0'));
  assert.ok(statCpuMs(line) > 0);
});

test('percentile is nearest-rank and benchKey matches redis-benchmark', () => {
  const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
  assert.equal(percentile(sorted, 0.5), 500);
  assert.equal(percentile(sorted, 0.999), 999);
  assert.equal(percentile([], 0.5), 0);
  assert.equal(benchKey(42), 'key:000000000042');
});

test('selfTimes charges each sample the time to the next one, by function, idle apart', () => {
  const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 9 });
  const profile = {
    nodes: [
      { id: 1, callFrame: frame('(root)') },
      { id: 2, callFrame: frame('parse', 'file:///x/parser.js') },
      { id: 3, callFrame: frame('(idle)') },
      { id: 4, callFrame: frame('parse', 'file:///x/parser.js') },
    ],
    samples: [2, 3, 4, 2],
    timeDeltas: [0, 1000, 5000, 2000],
  };
  const { functions, busy_ms, idle_ms } = selfTimes(profile);
  assert.equal(idle_ms, 5);
  assert.equal(busy_ms, 3);
  assert.deepEqual(
    functions.map((f) => [f.name, f.self_ms]),
    [['parse parser.js:10', 3]],
  );
});
