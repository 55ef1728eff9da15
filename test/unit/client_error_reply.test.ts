/** How KvClient reads the cluster's error replies: retry, follow, or hand to the caller. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyErrorReply } from '../../src/client/error_reply';

test('a node shutting down replies TRYAGAIN (certainly not executed): the client retries', () => {
  assert.deepEqual(classifyErrorReply('TRYAGAIN shutting down; retry on another node'), {
    kind: 'try_again',
  });
});

test('TRYAGAIN "request not served" (it did not run) is retried, not outcome unknown', () => {
  // The node replies this only after every attempt was refused or never sent (not leader, not
  // sent, no leader), so the write certainly did not run.
  assert.deepEqual(
    classifyErrorReply('TRYAGAIN request not served within 10000 ms; it was not executed'),
    { kind: 'try_again' },
  );
});
