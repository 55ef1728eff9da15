/**
 * Progress and its in-flight window on their own: the transitions the core drives, the
 * match < next invariant they keep, and the bounded ring's assertions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Inflights } from '../../src/raft/inflights';
import { Progress } from '../../src/raft/progress';
import { AssertionFailure } from '../../src/util/assert';

test('Inflights: a bounded ring that refuses a push while full and frees up to an ack', () => {
  const window = new Inflights(3);
  for (const seq of [1, 2, 3]) window.push({ seq, prev_index: seq * 10 });
  assert.equal(window.full, true);
  assert.throws(() => window.push({ seq: 4, prev_index: 40 }), AssertionFailure);
  window.freeTo(2);
  assert.equal(window.count, 1);
  assert.equal(window.find(1), null);
  assert.deepEqual(window.find(3), { seq: 3, prev_index: 30 });
  // Wrap around the end of the ring.
  window.push({ seq: 5, prev_index: 50 });
  window.push({ seq: 6, prev_index: 60 });
  assert.equal(window.full, true);
  assert.deepEqual(window.find(6), { seq: 6, prev_index: 60 });
  assert.throws(() => window.push({ seq: 7, prev_index: 70 }), AssertionFailure);
  window.freeTo(100);
  assert.equal(window.count, 0);
  window.push({ seq: 8, prev_index: 80 });
  assert.equal(window.count, 1);
});

test('Inflights: seqs must be pushed in send order', () => {
  const window = new Inflights(4);
  window.push({ seq: 5, prev_index: 0 });
  assert.throws(() => window.push({ seq: 5, prev_index: 1 }), AssertionFailure);
  assert.throws(() => new Inflights(0), AssertionFailure);
});

test('Progress: an answered probe starts replicate at match + 1; streaming fills a window', () => {
  const pr = new Progress(11, 2);
  assert.equal(pr.state, 'probe');
  assert.equal(pr.canSend(20), true);
  pr.onSent(1, 0); // an empty probe at next = 11
  assert.equal(pr.canSend(20), false, 'one probe at a time');
  pr.onAccepted(1, 10);
  assert.equal(pr.state, 'replicate');
  assert.deepEqual([pr.match, pr.next], [10, 11]);
  pr.onSent(2, 4);
  pr.onSent(3, 4);
  assert.deepEqual([pr.next, pr.inflight_messages, pr.canSend(30)], [19, 2, false]);
  pr.onAccepted(2, 14);
  assert.deepEqual([pr.match, pr.next, pr.inflight_messages], [14, 19, 1]);
  pr.onAccepted(3, 18);
  assert.deepEqual([pr.match, pr.next, pr.inflight_messages], [18, 19, 0]);
  assert.equal(pr.max_ack, 3);
});

test('Progress: every message answered or lost brings next back to match + 1', () => {
  const pr = new Progress(1, 8);
  pr.onSent(1, 0);
  pr.onAccepted(1, 0);
  pr.onSent(2, 5);
  pr.onSent(3, 5);
  pr.onAccepted(3, 5); // seq 2's answer never came: resend from 6
  assert.deepEqual([pr.state, pr.match, pr.next, pr.inflight_messages], ['replicate', 5, 6, 0]);
});

test('Progress: a rejection returns to probe at the hint, never at or below match', () => {
  const pr = new Progress(1, 8);
  pr.onSent(1, 0);
  pr.onAccepted(1, 0);
  pr.onSent(2, 10); // entries 1..10, prev 0
  pr.onSent(3, 10); // entries 11..20, prev 10
  pr.onRejected(3, 4, 7); // hint 4, follower commit 7
  assert.deepEqual([pr.state, pr.match, pr.next, pr.inflight_messages], ['probe', 7, 8, 0]);
  // The rejection of seq 2 is now stale: nothing changes.
  pr.onRejected(2, 0, 0);
  assert.deepEqual([pr.state, pr.match, pr.next], ['probe', 7, 8]);
});

test('Progress: an old answer that overtakes the probe point restarts the probe past it', () => {
  const pr = new Progress(5, 8);
  pr.onSent(7, 0);
  pr.onAccepted(3, 9); // seq 3 predates this probe, but proves the follower holds up to 9
  assert.deepEqual([pr.state, pr.match, pr.next, pr.canSend(20)], ['probe', 9, 10, true]);
});

test('Progress: probe retries are only for probe state', () => {
  const pr = new Progress(1, 8);
  pr.onSent(1, 0);
  pr.allowProbeRetry();
  assert.equal(pr.canSend(0), true);
  pr.onAccepted(1, 0);
  assert.throws(() => pr.allowProbeRetry(), AssertionFailure);
});
