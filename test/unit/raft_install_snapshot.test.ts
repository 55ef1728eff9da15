/**
 * InstallSnapshot in the core (Raft paper Figure 13, etcd's StateSnapshot): the leader's progress
 * state while a snapshot is sent, the follower's checks before it installs one, and the Ready that
 * carries the install. The tests play the server's part (the byte stream).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RaftLog } from '../../src/raft/log';
import {
  InstallSnapshotStatus,
  MessageType,
  type InstallSnapshotRequest,
  type InstallSnapshotResponse,
} from '../../src/raft/protocol';
import type { RaftCore } from '../../src/raft/core';
import { KvStateMachine } from '../../src/kv/state_machine';
import { Replica } from '../../src/replica/replica';
import { ELECTION_TICKS, makeCore, TestNet } from '../support/raft_test_net';

const data = (n: number): Uint8Array => new Uint8Array([n & 0xff]);

function proposeAndSettle(net: TestNet, leader: number, count: number): void {
  for (let i = 0; i < count; i++) assert.ok(net.core(leader).propose(data(i)).ok);
  net.settle();
  net.tickAll(2);
}

/** Leader 1 with node 3 cut off while 30 entries commit, then compacted to its applied index. */
function leaderPastFollower(): { net: TestNet; leader: RaftCore; snapshot_index: number } {
  const net = new TestNet([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  proposeAndSettle(net, 1, 30);
  const leader = net.core(1);
  const snapshot_index = leader.applied_index;
  leader.snapshotDurable({ index: snapshot_index, term: leader.termAt(snapshot_index) });
  leader.compact(snapshot_index);
  net.heal();
  return { net, leader, snapshot_index };
}

function peer(core: RaftCore, id: number): ReturnType<RaftCore['status']>['peers'][number] {
  const status = core.status().peers.find((p) => p.id === id);
  assert.ok(status);
  return status;
}

function response(
  core: RaftCore,
  snapshot_index: number,
  status: InstallSnapshotResponse['status'],
  match_index = 0,
): InstallSnapshotResponse {
  return {
    type: MessageType.InstallSnapshotResponse,
    term: core.current_term,
    follower_id: 3,
    snapshot_index,
    status,
    next_offset: 0,
    match_index,
  };
}

function chunk(
  term: number,
  snapshot_index: number,
  snapshot_term: number,
): InstallSnapshotRequest {
  return {
    type: MessageType.InstallSnapshotRequest,
    term,
    leader_id: 1,
    snapshot_index,
    snapshot_term,
    offset: 0,
    total_bytes: 1,
    chunk_crc: 0,
    data: new Uint8Array(1),
  };
}

test('a follower behind the first index gets a snapshot transfer and no AppendEntries', () => {
  const { net, leader, snapshot_index } = leaderPastFollower();
  net.delivered = [];
  net.tickAll(2 * ELECTION_TICKS);
  assert.deepEqual(net.snapshot_sends, [{ from: 1, to: 3, term: leader.current_term }]);
  const progress = peer(leader, 3);
  assert.equal(progress.state, 'snapshot');
  assert.equal(progress.pending_snapshot, snapshot_index);
  const with_entries = net.delivered.filter(
    (m) => m.type === MessageType.AppendEntriesRequest && m.entries.length > 0,
  );
  assert.ok(with_entries.every((m) => m.type === MessageType.AppendEntriesRequest));
  assert.ok(net.core(3).last_log_index <= 1, 'no entries past the no-op reached node 3');
  assert.ok(
    net.delivered.some(
      (m) => m.type === MessageType.AppendEntriesRequest && m.entries.length === 0,
    ),
    'heartbeats still go out',
  );
  assert.equal(leader.compactionLimit(), snapshot_index, 'the log after the snapshot is kept');
});

test('Installed: probe from the snapshot, then replicate by log; no second snapshot (#212)', () => {
  const { net, leader, snapshot_index } = leaderPastFollower();
  net.tickAll(2);
  proposeAndSettle(net, 1, 5); // the log grows past the snapshot while it is being sent
  const follower = net.core(3);
  // The server delivered the file; the follower installs it and answers Installed.
  const point = { index: snapshot_index, term: leader.termAt(snapshot_index) };
  assert.ok(follower.offerSnapshot(1, leader.current_term, point));
  net.settle();
  net.tickAll(4);
  assert.equal(peer(leader, 3).state, 'replicate');
  assert.equal(follower.last_log_index, leader.last_log_index);
  assert.equal(follower.commit_index, leader.commit_index);
  assert.equal(net.snapshot_sends.length, 1, 'one snapshot, then the log');
});

test('Rejected or a failed send ends the transfer; the next round starts another', () => {
  const { net, leader, snapshot_index } = leaderPastFollower();
  net.tickAll(2);
  leader.step(3, response(leader, snapshot_index, InstallSnapshotStatus.Rejected));
  assert.equal(peer(leader, 3).state, 'probe');
  net.tickAll(2);
  assert.equal(peer(leader, 3).state, 'snapshot');
  leader.reportSnapshotFailed(3);
  assert.equal(peer(leader, 3).state, 'probe');
  net.tickAll(2);
  assert.equal(net.snapshot_sends.length, 3);
});

test('chunk acknowledgements keep a leader alive under CheckQuorum', () => {
  const { net, leader, snapshot_index } = leaderPastFollower();
  net.tickAll(2);
  net.isolate(2);
  // Node 3 answers only chunks (its heartbeat answers are lost): still contact.
  net.drop = (e) => e.from === 3 && e.message.type === MessageType.AppendEntriesResponse;
  for (let i = 0; i < 4 * ELECTION_TICKS; i++) {
    leader.step(3, response(leader, snapshot_index, InstallSnapshotStatus.Ack));
    net.tick(1);
  }
  assert.equal(leader.current_role, 'leader');
  for (let i = 0; i < 2 * ELECTION_TICKS; i++) net.tick(1);
  assert.notEqual(leader.current_role, 'leader', 'without any answer it steps down');
});

test('chunks reset the follower election timer: a long transfer starts no campaign', () => {
  const follower = makeCore(3, [1, 2, 3], {
    restored: { hard_state: { term: 5, vote: 1, commit: 0 }, entries: [] },
  });
  for (let i = 0; i < 10 * ELECTION_TICKS; i++) {
    follower.step(1, chunk(5, 100, 5));
    follower.tick();
  }
  assert.equal(follower.current_role, 'follower');
  assert.equal(follower.status().leader_id, 1);
  assert.equal(follower.current_term, 5);
});

test('a chunk from a stale term is rejected with the newer term; its snapshot is refused', () => {
  const follower = makeCore(3, [1, 2, 3], {
    restored: { hard_state: { term: 7, vote: 2, commit: 0 }, entries: [] },
  });
  follower.step(1, chunk(5, 100, 5));
  const ready = follower.ready();
  assert.ok(ready);
  const reply = [...ready.messages, ...ready.messages_after_persist][0]?.message;
  assert.equal(reply?.type, MessageType.InstallSnapshotResponse);
  if (reply?.type !== MessageType.InstallSnapshotResponse) return;
  assert.equal(reply.status, InstallSnapshotStatus.Rejected);
  assert.equal(reply.term, 7);
  follower.advance(ready);
  assert.equal(follower.offerSnapshot(1, 5, { index: 100, term: 5 }), false);
  assert.equal(follower.commit_index, 0);
});

/** A follower at term 3 led by 1, with entries 1..6 (terms 1,1,2,2,3,3), commit `commit`. */
function followerWithLog(commit: number): RaftCore {
  const terms = [1, 1, 2, 2, 3, 3];
  const core = makeCore(3, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 1, commit },
      entries: terms.map((term, i) => ({ term, data: data(i + 1) })),
    },
  });
  core.step(1, chunk(3, 4, 2)); // learn the leader
  const ready = core.ready();
  if (ready !== null) core.advance(ready);
  return core;
}

test('Figure 13 rule 6: a matching entry at the snapshot index keeps the log after it', () => {
  const core = followerWithLog(2);
  assert.ok(core.offerSnapshot(1, 3, { index: 4, term: 2 }));
  assert.equal(core.first_log_index, 5);
  assert.equal(core.last_log_index, 6);
  assert.equal(core.commit_index, 4);
  assert.equal(core.applied_index, 4);
  const ready = core.ready();
  assert.ok(ready);
  assert.deepEqual(ready.snapshot, { index: 4, term: 2 });
  assert.equal(ready.must_sync, true);
  assert.equal(ready.entries, null);
  assert.deepEqual(ready.committed, []);
  assert.equal(ready.messages.length, 0, 'the answer waits for the install to be durable');
  const reply = ready.messages_after_persist[0]?.message;
  assert.equal(reply?.type, MessageType.InstallSnapshotResponse);
  if (reply?.type === MessageType.InstallSnapshotResponse) {
    assert.equal(reply.status, InstallSnapshotStatus.Installed);
    assert.equal(reply.match_index, 4);
  }
  core.advance(ready);
});

test('Figure 13 rule 7: a conflicting log is discarded', () => {
  const core = followerWithLog(2);
  assert.ok(core.offerSnapshot(1, 3, { index: 5, term: 2 })); // we hold term 3 at 5
  assert.equal(core.first_log_index, 6);
  assert.equal(core.last_log_index, 5, 'nothing after the snapshot');
  assert.equal(core.status().last_log_term, 2);
  assert.equal(core.commit_index, 5);
});

test('a snapshot at or below the commit index is not installed but answered', () => {
  const core = followerWithLog(5);
  assert.equal(core.wantsSnapshot(4), false);
  assert.equal(core.offerSnapshot(1, 3, { index: 4, term: 2 }), false);
  assert.equal(core.applied_index, 5, 'nothing was replaced');
  const ready = core.ready();
  const reply = ready?.messages.find(
    (m) => m.message.type === MessageType.InstallSnapshotResponse,
  )?.message;
  assert.ok(reply?.type === MessageType.InstallSnapshotResponse);
  assert.equal(reply.status, InstallSnapshotStatus.Installed);
  assert.equal(reply.match_index, 5);
});

test('switch install_stale_snapshot: the applied index goes back', () => {
  const core = makeCore(3, [1, 2, 3], {
    faults: { install_stale_snapshot: true },
    restored: {
      hard_state: { term: 3, vote: 1, commit: 6 },
      entries: [1, 1, 2, 2, 3, 3].map((term, i) => ({ term, data: data(i + 1) })),
    },
  });
  core.step(1, chunk(3, 4, 2));
  const first = core.ready();
  assert.ok(first);
  assert.equal(first.committed.length, 6);
  core.advance(first);
  assert.ok(core.offerSnapshot(1, 3, { index: 4, term: 2 }));
  assert.equal(core.applied_index, 4, 'applied went back from 6: what the simulator catches');
});

test('RaftLog.restoreSnapshot keeps uncommitted-bytes accounting and the stable mark', () => {
  const log = new RaftLog(
    [1, 1, 2].map((term, i) => ({ term, data: new Uint8Array(i + 1) })),
    0,
  );
  log.restoreSnapshot({ index: 2, term: 1 });
  assert.equal(log.uncommitted_bytes, 3);
  assert.equal(log.stable, 3);
  assert.equal(log.hasUnstable(), false);
  log.restoreSnapshot({ index: 9, term: 4 });
  assert.equal(log.last_index, 9);
  assert.equal(log.uncommitted_bytes, 0);
  assert.equal(log.stable, 9);
});

test('a deposed leader installing a snapshot answers its covered writes: outcome unknown', () => {
  const core = makeCore(1, [1], {});
  const replica = new Replica(core, new KvStateMachine());
  for (let tick = 0; tick < 4 * ELECTION_TICKS && core.current_role !== 'leader'; tick++) {
    core.tick();
    for (let ready = core.ready(); ready !== null; ready = core.ready()) {
      replica.applyReady(ready);
      core.advance(ready);
    }
  }
  const outcomes: string[] = [];
  const index = replica.write(
    { op: 'set', key: Buffer.from('k'), words: [Buffer.from('v')] },
    (o) => outcomes.push(o.ok ? 'ok' : o.error),
  );
  assert.ok(index !== null);
  const covering = new KvStateMachine();
  for (let i = 1; i <= index + 1; i++) covering.apply(i, new Uint8Array());
  replica.installState(covering);
  assert.deepEqual(outcomes, ['unknown']);
  assert.equal(replica.pending_writes, 0);
});
