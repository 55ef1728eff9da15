/**
 * Membership changes in the pure core (thesis §4.1, single-server changes with the errata), one
 * test per rule; the simulator runs them under faults (test/sim).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  allocateId,
  applyChange,
  bootstrapMembership,
  decodeMembership,
  encodeMembership,
  type Membership,
  MembershipLog,
  votersOf,
  learnersOf,
} from '../../src/raft/membership';
import { decodeCommand } from '../../src/kv/command_codec';
import { CommandMalformedError } from '../../src/util/errors';
import { MessageType } from '../../src/raft/protocol';
import { makeCore, termAt, TestNet } from '../support/raft_test_net';

const data = (text: string): Uint8Array => Buffer.from(text);

/** A 3-voter cluster led by 1 with its no-op committed, and node 4 running outside it. */
function clusterWithSpare(): TestNet {
  const net = new TestNet([1, 2, 3]);
  net.cores.set(4, makeCore(4, []));
  net.elect(1);
  return net;
}

function addAndPromote(net: TestNet, id: number): void {
  const leader = net.core(1);
  assert.ok(leader.proposeMembershipChange({ kind: 'add_learner', id, address: `h:${id}` }).ok);
  net.settle();
  assert.ok(leader.proposeMembershipChange({ kind: 'promote', id }).ok);
  net.settle();
}

test('membership entry: encode/decode round trip; malformed entries are typed errors', () => {
  const membership: Membership = {
    members: [
      { id: 1, voter: true, address: '127.0.0.1:8001' },
      { id: 7, voter: false, address: '' },
    ],
    next_id: 9,
  };
  const bytes = encodeMembership(membership);
  assert.deepEqual(decodeMembership(bytes), membership);
  assert.equal(decodeCommand(bytes), null, 'the state machine skips it like the no-op');
  for (let cut = 1; cut < bytes.length; cut++)
    assert.throws(() => decodeMembership(bytes.subarray(0, cut)), CommandMalformedError);
  const learners_only = encodeMembership({
    members: [{ id: 1, voter: false, address: '' }],
    next_id: 2,
  });
  assert.throws(() => decodeMembership(learners_only), /no voter/);
  const descending = encodeMembership({
    members: [
      { id: 2, voter: true, address: '' },
      { id: 1, voter: true, address: '' },
    ],
    next_id: 3,
  });
  assert.throws(() => decodeCommand(descending), CommandMalformedError);
  const reused = encodeMembership({ members: [{ id: 5, voter: true, address: '' }], next_id: 5 });
  assert.throws(() => decodeMembership(reused), /next_id 5 not above/);
});

test('membership entry version 1 (no next_id) still decodes: next_id is the highest id + 1', () => {
  // As the build before next_id wrote it: [0x80][1][count] then the members.
  const v1 = Buffer.from([
    0x80, 1, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 6, 0, 0, 0, 0, 1, 0, 0, 0, 0x61,
  ]);
  const membership = decodeMembership(v1);
  assert.deepEqual(membership, {
    members: [
      { id: 1, voter: true, address: '' },
      { id: 6, voter: false, address: 'a' },
    ],
    next_id: 7,
  });
  assert.equal(decodeCommand(v1), null, 'still a no-op for the state machine');
});

test('ids are never reused: next_id only grows, through removals and the entry codec', () => {
  const base = bootstrapMembership([1, 2, 3]);
  assert.equal(allocateId(base), 4);
  const added = applyChange(base, { kind: 'add_learner', id: allocateId(base), address: 'a' });
  assert.ok(added.ok);
  const removed = applyChange(added.membership, { kind: 'remove', id: 4 });
  assert.ok(removed.ok);
  assert.equal(allocateId(removed.membership), 5, 'the removed id 4 is not given out again');
  const round_trip = decodeMembership(encodeMembership(removed.membership));
  assert.equal(allocateId(round_trip), 5, 'the entry (and so a snapshot) keeps the mark');
  const log = new MembershipLog(0, base);
  log.onAppend(3, encodeMembership(added.membership));
  log.onAppend(4, encodeMembership(removed.membership));
  log.compact(4);
  assert.equal(allocateId(log.current), 5);
});

test('changes: one server at a time; the last voter cannot go', () => {
  const base = bootstrapMembership([1, 2, 3]);
  const added = applyChange(base, { kind: 'add_learner', id: 4, address: 'a' });
  assert.ok(added.ok);
  assert.deepEqual(learnersOf(added.membership), [4]);
  assert.deepEqual(votersOf(added.membership), [1, 2, 3]);
  assert.equal(applyChange(base, { kind: 'add_learner', id: 2, address: '' }).ok, false);
  assert.equal(applyChange(base, { kind: 'promote', id: 2 }).ok, false);
  assert.equal(applyChange(base, { kind: 'promote', id: 9 }).ok, false);
  assert.equal(applyChange(base, { kind: 'remove', id: 9 }).ok, false);
  assert.equal(applyChange(bootstrapMembership([5]), { kind: 'remove', id: 5 }).ok, false);
});

test('§4.1: the latest configuration in the log is used; truncation rolls it back', () => {
  const log = new MembershipLog(0, bootstrapMembership([1, 2, 3]));
  const four = applyChange(log.current, { kind: 'add_learner', id: 4, address: '' });
  assert.ok(four.ok);
  assert.equal(log.onAppend(5, encodeMembership(four.membership)), true);
  assert.deepEqual(learnersOf(log.current), [4]);
  assert.deepEqual(learnersOf(log.at(4)), []);
  assert.equal(log.onAppend(6, data('x')), false);
  assert.equal(log.onTruncate(6), false);
  assert.equal(log.onTruncate(5), true);
  assert.deepEqual(learnersOf(log.current), []);
  assert.equal(log.current_index, 0);
  log.onAppend(7, encodeMembership(four.membership));
  log.compact(8);
  assert.equal(log.current_index, 8);
  assert.deepEqual(learnersOf(log.at(8)), [4]);
});

test('a learner is replicated to but never counted: commits need the voters', () => {
  const net = clusterWithSpare();
  const leader = net.core(1);
  assert.ok(leader.proposeMembershipChange({ kind: 'add_learner', id: 4, address: 'h:4' }).ok);
  net.settle();
  assert.deepEqual(learnersOf(net.core(4).current_membership), [4], 'the learner learns it');
  assert.equal(net.core(4).last_log_index, leader.last_log_index);
  // With both other voters cut off, the learner's acknowledgement alone commits nothing.
  net.isolate(2);
  net.isolate(3);
  const commit = leader.commit_index;
  assert.ok(leader.propose(data('w')).ok);
  net.settle();
  assert.equal(net.core(4).last_log_index, leader.last_log_index, 'the learner has it');
  assert.equal(leader.commit_index, commit, 'not committed without a majority of voters');
  // A learner never campaigns, however long it hears nothing.
  net.isolate(4);
  net.tick(4, 100);
  assert.equal(net.core(4).current_role, 'follower');
  assert.equal(net.core(4).current_term, leader.current_term);
});

test('a learner does not raise the quorum: 2 of 3 voters commit with the learner down', () => {
  const net = clusterWithSpare();
  const leader = net.core(1);
  net.isolate(4); // added while unreachable: a learner that never catches up
  assert.ok(leader.proposeMembershipChange({ kind: 'add_learner', id: 4, address: 'h:4' }).ok);
  net.settle();
  assert.deepEqual(learnersOf(leader.current_membership), [4]);
  assert.equal(leader.membership_index <= leader.commit_index, true, 'the addition committed');
  net.isolate(3);
  const commit = leader.commit_index;
  assert.ok(leader.propose(data('w')).ok);
  net.settle();
  assert.equal(leader.commit_index, commit + 1, 'leader and node 2 are a majority of 3 voters');
  // Nor does it count for CheckQuorum: the leader keeps leading past an election timeout.
  net.tick(1, 30);
  net.settle();
  assert.equal(leader.current_role, 'leader');
});

test('promotion: the new voter counts, and the quorum grows with it (4 voters need 3)', () => {
  const net = clusterWithSpare();
  addAndPromote(net, 4);
  const leader = net.core(1);
  assert.deepEqual(votersOf(leader.current_membership), [1, 2, 3, 4]);
  assert.deepEqual(votersOf(net.core(4).current_membership), [1, 2, 3, 4]);
  net.isolate(2);
  net.isolate(3);
  const commit = leader.commit_index;
  assert.ok(leader.propose(data('w')).ok);
  net.settle();
  assert.equal(leader.commit_index, commit, '2 of 4 voters is no majority');
  net.heal();
  net.tick(1, 2);
  assert.ok(leader.commit_index > commit);
});

test('one change at a time: a second change waits until the first commits (retryable)', () => {
  const net = clusterWithSpare();
  const leader = net.core(1);
  net.hold = (e) => e.message.type === MessageType.AppendEntriesRequest;
  assert.ok(leader.proposeMembershipChange({ kind: 'add_learner', id: 4, address: '' }).ok);
  net.settle();
  const second = leader.proposeMembershipChange({ kind: 'remove', id: 3 });
  assert.equal(second.ok, false);
  assert.equal(!second.ok && second.reason, 'change_in_progress');
  net.hold = () => false;
  for (const held of [...net.held]) net.release(held);
  net.settle();
  net.tick(1, 2);
  assert.ok(leader.proposeMembershipChange({ kind: 'remove', id: 3 }).ok);
});

test('errata: a new leader proposes no change before an entry of its term commits', () => {
  const net = new TestNet([1, 2, 3]);
  net.hold = (e) => e.message.type === MessageType.AppendEntriesRequest;
  net.elect(1);
  const leader = net.core(1);
  const refused = leader.proposeMembershipChange({ kind: 'remove', id: 3 });
  assert.equal(!refused.ok && refused.reason, 'no_commit_in_term');
  net.hold = () => false;
  for (const held of [...net.held]) net.release(held);
  net.settle();
  assert.ok(leader.proposeMembershipChange({ kind: 'remove', id: 3 }).ok);
});

test('a configuration appended and then truncated on a follower is rolled back', () => {
  const net = new TestNet([1, 2, 3, 4, 5]);
  net.elect(1);
  // Only node 2 receives the change; then 1 and 2 are cut off and 3 leads without it.
  for (const id of [3, 4, 5]) net.cut.add(`1>${id}`);
  assert.ok(net.core(1).proposeMembershipChange({ kind: 'add_learner', id: 6, address: '' }).ok);
  net.settle();
  assert.deepEqual(learnersOf(net.core(2).current_membership), [6]);
  net.isolate(1);
  net.isolate(2);
  net.tick([4, 5], 10); // their lease on leader 1 runs out (timeouts are at least 10 ticks)
  net.elect(3);
  const leader = 3;
  net.heal();
  net.isolate(1);
  assert.ok(net.core(leader).propose(data('w')).ok);
  net.settle();
  net.tick(leader, 2);
  assert.equal(net.core(2).last_log_index, net.core(leader).last_log_index);
  assert.deepEqual(learnersOf(net.core(2).current_membership), [], 'rolled back');
  assert.equal(net.core(2).membership_index, 0);
});

test('removing the leader: it hands over once its removal commits, then never campaigns', () => {
  const net = clusterWithSpare();
  const leader = net.core(1);
  assert.ok(leader.proposeMembershipChange({ kind: 'remove', id: 1 }).ok);
  net.settle();
  net.tickAll(4);
  assert.notEqual(leader.current_role, 'leader', 'the removed leader stepped down');
  const successor = [2, 3].find((id) => net.core(id).current_role === 'leader');
  assert.ok(successor !== undefined, 'a remaining voter took over (TimeoutNow)');
  assert.deepEqual(votersOf(net.core(successor).current_membership), [2, 3]);
  const term = net.core(successor).current_term;
  net.tickAll(200);
  assert.equal(net.core(successor).current_term, term, 'the removed node disturbed nobody');
  assert.notEqual(leader.current_role, 'leader');
  assert.ok(net.core(successor).propose(data('after')).ok);
  net.settle();
  net.tick(successor, 2);
  assert.equal(net.core(successor).commit_index, net.core(successor).last_log_index);
});

test('replace a voter: add a learner, promote it, remove the old one; reads still confirm', () => {
  const net = clusterWithSpare();
  addAndPromote(net, 4);
  const leader = net.core(1);
  net.tick(1, 2);
  assert.ok(leader.proposeMembershipChange({ kind: 'remove', id: 3 }).ok);
  net.settle();
  net.tick(1, 2);
  assert.deepEqual(votersOf(leader.current_membership), [1, 2, 4]);
  net.isolate(3);
  assert.ok(leader.readIndex(77).ok);
  net.settle();
  net.tick(1, 2);
  assert.ok(
    net.reads.get(1)?.some((r) => r.request_id === 77),
    'read confirmed by 2 and 4',
  );
  const status = leader.status();
  assert.deepEqual(
    status.peers.map((p) => [p.id, p.voter]),
    [
      [2, true],
      [4, true],
    ],
  );
});

/**
 * The bug in the original single-server algorithm (raft-dev, 2015): leader 1 of {1,2,3,4} promotes
 * learner 5, reaching only 5; leader 2 of term 2 removes 1 before an entry of its term committed
 * and commits with {2,3}, a majority of {2,3,4}; then 1 wins term 3 with 4 and 5, a majority of
 * {1,..,5}, and overwrites what 2 committed. The errata rule refuses 2's change.
 */
function errataScenario(allow_early_change: boolean): { committed_apart: boolean } {
  const faults = { membership_change_before_term_commit: allow_early_change };
  const net = new TestNet([1, 2, 3, 4], { faults });
  net.cores.set(5, makeCore(5, [], { faults }));
  net.elect(1);
  assert.ok(net.core(1).proposeMembershipChange({ kind: 'add_learner', id: 5, address: '' }).ok);
  net.settle();
  net.tick(1, 2);
  for (const id of [2, 3, 4]) net.cut.add(`1>${id}`);
  assert.ok(net.core(1).proposeMembershipChange({ kind: 'promote', id: 5 }).ok);
  net.settle();
  assert.equal(votersOf(net.core(5).current_membership).length, 5, 'only 5 has the promotion');
  net.isolate(1);
  net.isolate(5);
  // 2 wins term 2 with 3 and 4; its entries reach 3 only.
  net.hold = (e) =>
    e.from === 2 && e.to === 4 && e.message.type === MessageType.AppendEntriesRequest;
  net.tick([3, 4], 10);
  net.elect(2);
  const early = net.core(2).proposeMembershipChange({ kind: 'remove', id: 1 });
  assert.equal(early.ok, allow_early_change);
  net.settle();
  net.tick([2, 3], 2);
  const index_2 = net.core(2).commit_index;
  // 1 campaigns with 4 and 5, which never heard of term 2's entries.
  net.hold = () => false;
  net.held = [];
  net.heal();
  for (const [a, b] of [
    [1, 2],
    [1, 3],
    [5, 2],
    [5, 3],
    [2, 4],
  ] as const) {
    net.cut.add(`${a}>${b}`);
    net.cut.add(`${b}>${a}`);
  }
  net.tick([1, 4, 5], 60);
  // 1 or 5 (both hold the promotion) may win; neither can without the early change.
  const winner = [1, 5].find((id) => net.core(id).current_role === 'leader');
  if (winner === undefined) return { committed_apart: false };
  net.tick(winner, 2);
  const index = Math.min(index_2, net.core(winner).commit_index);
  return { committed_apart: termAt(net.core(winner), index) !== termAt(net.core(2), index) };
}

test('errata: with the rule a deposed leader cannot undo a commit; without it, it does', () => {
  assert.equal(errataScenario(false).committed_apart, false);
  assert.equal(errataScenario(true).committed_apart, true);
});

test('InstallSnapshot: the follower takes the configuration the snapshot records', () => {
  const four = applyChange(bootstrapMembership([1, 2, 3]), {
    kind: 'add_learner',
    id: 4,
    address: '',
  });
  assert.ok(four.ok);
  const promoted = applyChange(four.membership, { kind: 'promote', id: 4 });
  assert.ok(promoted.ok);
  // A follower of term 3 whose log (terms 1,1,2) conflicts with the snapshot at 5 (term 3).
  const follower = makeCore(3, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 1, commit: 1 },
      entries: [1, 1, 2].map((term) => ({ term, data: data(`e${term}`) })),
    },
  });
  follower.step(1, {
    type: MessageType.AppendEntriesRequest,
    term: 3,
    leader_id: 1,
    prev_log_index: 1,
    prev_log_term: 1,
    leader_commit: 1,
    seq: 1,
    entries: [],
  });
  assert.ok(follower.offerSnapshot(1, 3, { index: 5, term: 3 }, promoted.membership));
  assert.deepEqual(votersOf(follower.current_membership), [1, 2, 3, 4]);
  assert.equal(follower.membership_index, 5);
});

test('auto-promotion: the leader promotes a learner once it is caught up, never before', () => {
  const net = new TestNet([1, 2, 3], { auto_promote_learners: true });
  net.cores.set(4, makeCore(4, [], { auto_promote_learners: true }));
  net.elect(1);
  const leader = net.core(1);
  net.isolate(4);
  assert.ok(leader.proposeMembershipChange({ kind: 'add_learner', id: 4, address: 'h:4' }).ok);
  net.settle();
  net.tickAll(3);
  net.settle();
  assert.deepEqual(learnersOf(leader.current_membership), [4], 'unreachable: stays a learner');
  net.heal();
  net.tickAll(3);
  net.settle();
  assert.deepEqual(votersOf(leader.current_membership), [1, 2, 3, 4], 'caught up: promoted');
  assert.deepEqual(votersOf(net.core(4).current_membership), [1, 2, 3, 4]);
  assert.equal(leader.membership_index <= leader.status().commit_index, true, 'committed');
});
