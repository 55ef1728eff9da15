/**
 * Log compaction in the core: the log keeps an offset (the snapshot's last index and term), drops
 * what a snapshot covers, restarts from a snapshot point, and never sends AppendEntries that would
 * need a compacted entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RaftLog } from '../../src/raft/log';
import { MessageType } from '../../src/raft/protocol';
import { makeCore, TestNet } from '../support/raft_test_net';

const data = (n: number): Uint8Array => new Uint8Array([n & 0xff]);

function appliedLog(count: number): RaftLog {
  const log = new RaftLog([], 0);
  for (let i = 1; i <= count; i++) log.append({ term: 1 + (i > count / 2 ? 1 : 0), data: data(i) });
  log.takeUnstable(1000, 1 << 20);
  log.markStable(count);
  log.commitTo(count);
  log.takeCommitted(1000);
  return log;
}

test('compaction drops covered entries and keeps the term at the snapshot index', () => {
  const log = appliedLog(10);
  log.compact(7);
  assert.equal(log.snapshot_index, 7);
  assert.equal(log.snapshot_term, 2);
  assert.equal(log.first_index, 8);
  assert.equal(log.last_index, 10);
  assert.equal(log.retained_entries, 3);
  assert.equal(log.term(7), 2);
  assert.equal(log.term(6), -1, 'the term of a compacted index is unknown');
  assert.deepEqual(log.entry(8).data, data(8));
  assert.deepEqual(
    log.slice(8, 10).map((e) => e.data[0]),
    [8, 9, 10],
  );
  log.compact(5); // older than the snapshot: nothing to do
  assert.equal(log.first_index, 8);
  assert.throws(() => log.entry(7), /log entry 7 exists/);
  assert.equal(log.append({ term: 3, data: data(11) }), 11);
});

test('compaction beyond the applied index is refused', () => {
  const log = new RaftLog(
    [
      { term: 1, data: data(1) },
      { term: 1, data: data(2) },
    ],
    2,
  );
  log.takeCommitted(1);
  assert.throws(() => log.compact(2), /compact 2 beyond applied 1/);
});

test('a restart from a snapshot point applies only the committed entries after it', () => {
  const core = makeCore(1, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 1, commit: 12 },
      entries: [
        { term: 3, data: data(11) },
        { term: 3, data: data(12) },
        { term: 3, data: data(13) },
      ],
      snapshot: { index: 10, term: 2 },
    },
  });
  const status = core.status();
  assert.equal(status.snapshot_index, 10);
  assert.equal(status.last_log_index, 13);
  assert.equal(core.first_log_index, 11);
  assert.equal(core.applied_index, 10);
  const ready = core.ready();
  assert.ok(ready);
  assert.deepEqual(
    ready.committed.map((c) => c.index),
    [11, 12],
  );
  core.advance(ready);
});

test('a restart applies from the state machine snapshot, later than the log start', () => {
  const core = makeCore(1, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 1, commit: 13 },
      entries: [11, 12, 13].map((n) => ({ term: 3, data: data(n) })),
      snapshot: { index: 10, term: 2 },
      applied_index: 12,
    },
  });
  assert.equal(core.first_log_index, 11, 'the entries the state snapshot covers stay in the log');
  assert.equal(core.applied_index, 12);
  const ready = core.ready();
  assert.deepEqual(
    ready?.committed.map((c) => c.index),
    [13],
  );
});

test('a commit index on disk below the snapshot is raised to it (snapshots are committed)', () => {
  const core = makeCore(1, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 1, commit: 4 },
      entries: [],
      snapshot: { index: 10, term: 2 },
    },
  });
  assert.equal(core.commit_index, 10);
  assert.equal(core.last_log_index, 10);
  assert.equal(core.status().last_log_term, 2);
});

function proposeAndSettle(net: TestNet, leader: number, count: number): void {
  for (let i = 0; i < count; i++) assert.ok(net.core(leader).propose(data(i)).ok);
  net.settle();
  net.tickAll(2); // a heartbeat carries the new commit index to the followers
}

test('a leader compacted past a lagging follower sends it no AppendEntries with entries', () => {
  const net = new TestNet([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  proposeAndSettle(net, 1, 30);
  const leader = net.core(1);
  assert.equal(leader.applied_index, leader.last_log_index);
  leader.compact(leader.applied_index);
  assert.equal(leader.first_log_index, leader.last_log_index + 1);
  net.heal();
  net.delivered = [];
  net.tickAll(3 * 10);
  assert.equal(leader.current_role, 'leader', 'the lagging follower does not depose the leader');
  // Node 3 cannot be reached by AppendEntries any more: only heartbeats (no entries) go to it, and
  // nothing crashes for want of a compacted entry.
  proposeAndSettle(net, 1, 5);
  assert.equal(net.core(2).commit_index, leader.commit_index, 'node 2 still replicates');
  assert.ok(net.core(3).last_log_index < leader.first_log_index, 'node 3 waits for a snapshot');
  const to3 = net.delivered.filter(
    (m) => m.type === MessageType.AppendEntriesRequest && m.entries.length > 0 && m.term > 0,
  );
  for (const message of to3) {
    if (message.type !== MessageType.AppendEntriesRequest) continue;
    assert.ok(message.prev_log_index >= leader.status().snapshot_index);
  }
});

test('compacting below what followers still need keeps a lagging follower reachable', () => {
  const net = new TestNet([1, 2, 3]);
  net.elect(1);
  proposeAndSettle(net, 1, 5);
  net.isolate(3);
  proposeAndSettle(net, 1, 30);
  const leader = net.core(1);
  const keep_from = leader.followersNeedFrom();
  assert.ok(keep_from <= net.core(3).last_log_index + 1, 'node 3 still needs its next entry');
  leader.compact(Math.min(leader.applied_index, keep_from - 1));
  assert.ok(leader.first_log_index > 1, 'something was compacted');
  net.heal();
  net.tickAll(3 * 10);
  assert.equal(net.core(3).last_log_index, leader.last_log_index, 'node 3 caught up by log');
  assert.equal(net.core(3).commit_index, leader.commit_index);
});
