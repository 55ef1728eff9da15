/**
 * The logger: level filter, JSON lines, and repeat suppression with a count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, DEFAULT_LOG_LEVEL } from '../../src/util/log';

function capture(options: Parameters<typeof createLogger>[3] = {}) {
  const lines: string[] = [];
  let now_ms = 1_000_000;
  const logger = createLogger('node1', 'info', (line) => lines.push(line), {
    now_ms: () => now_ms,
    ...options,
  });
  return { lines, logger, advance: (ms: number) => (now_ms += ms) };
}

test('the default level shows info and hides debug', () => {
  assert.equal(DEFAULT_LOG_LEVEL, 'info');
  const { lines, logger } = capture();
  logger.debug('per request');
  logger.info('role leader in term 2');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^\S+Z INFO node1 role leader in term 2\n$/);
});

test('json format writes one parseable object per line', () => {
  const { lines, logger } = capture({ format: 'json' });
  logger.warn('peer 3 down: "x"');
  const parsed: unknown = JSON.parse(lines[0]!);
  assert.deepEqual(Object.keys(parsed as object), ['time', 'level', 'node', 'message']);
  assert.equal((parsed as { message: string }).message, 'peer 3 down: "x"');
  assert.equal((parsed as { level: string }).level, 'warn');
  assert.ok(lines[0]!.endsWith('}\n'));
});

test('an identical line within the window is counted, then reported with the next one', () => {
  const { lines, logger, advance } = capture({ repeat_window_ms: 10_000 });
  logger.warn('dial failed: ECONNREFUSED');
  for (let i = 0; i < 5; i++) {
    advance(1000);
    logger.warn('dial failed: ECONNREFUSED');
  }
  logger.warn('something else');
  assert.equal(lines.length, 2);
  advance(10_000);
  logger.warn('dial failed: ECONNREFUSED');
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, /dial failed: ECONNREFUSED \(repeated 5 times\)\n$/);
  advance(10_000);
  logger.warn('dial failed: ECONNREFUSED');
  assert.match(lines[3]!, /ECONNREFUSED\n$/);
});
