import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ForwardLane, LOCAL_TARGET } from '../../src/server/forward_lane';

test('a pipeline to one leader goes at once, in order', () => {
  const lane = new ForwardLane();
  for (let i = 0; i < 100; i++) {
    const entry = lane.enter();
    assert.ok(lane.mayGo(entry, 'A'));
    lane.sent(entry, 'A');
  }
});

test('a request retried after NOT_LEADER is re-sent before later ones reach the new leader', () => {
  const lane = new ForwardLane();
  const first = lane.enter();
  lane.sent(first, 'A');
  const second = lane.enter();
  lane.sent(second, 'A');
  // The old leader refuses the first; a new request must not overtake it to the new leader.
  lane.retrying(first);
  const third = lane.enter();
  assert.equal(lane.mayGo(third, 'B'), false);
  assert.equal(lane.mayGo(second, 'B'), false, 'the second is behind the first too');
  assert.ok(lane.mayGo(first, 'B'));
  lane.sent(first, 'B');
  assert.equal(lane.mayGo(third, 'B'), false, 'the second is still in flight to the old leader');
  lane.retrying(second);
  assert.ok(lane.mayGo(second, 'B'));
  lane.sent(second, 'B');
  assert.ok(lane.mayGo(third, 'B'));
  assert.equal(lane.mayGo(third, LOCAL_TARGET), false);
  lane.release(first);
  lane.release(second);
  assert.ok(lane.mayGo(third, LOCAL_TARGET));
});

test('a change wakes the earliest waiting request', async () => {
  const lane = new ForwardLane();
  const first = lane.enter();
  lane.sent(first, 'A');
  const second = lane.enter();
  assert.equal(lane.mayGo(second, 'B'), false);
  let woken = false;
  const turn = lane.waitTurn(second, 60_000).then(() => {
    woken = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(woken, false);
  lane.release(first);
  await turn;
  assert.ok(lane.mayGo(second, 'B'));
});
