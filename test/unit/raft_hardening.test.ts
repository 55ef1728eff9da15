/**
 * The election rules that keep a stranger or a confused peer from steering a healthy cluster
 * (thesis §4.2.3, §3.10), the term ceiling, and the checks the server puts in front of the core.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommand } from '../../src/kv/command_codec';
import type { RaftCore } from '../../src/raft/core';
import { invalidEntryReason } from '../../src/server/entry_validation';
import { recoverPoisonedTerm } from '../../src/server/term_recovery';
import { LIMITS } from '../../src/util/limits';
import { MessageType, type LogEntry, type RaftMessage } from '../../src/raft/protocol';
import { ELECTION_TICKS, makeCore, TestNet } from '../support/raft_test_net';

function voteRequest(
  type: typeof MessageType.RequestVoteRequest | typeof MessageType.TransferVoteRequest,
  term: number,
  candidate_id: number,
  last: { index: number; term: number },
): RaftMessage {
  return { type, term, candidate_id, last_log_index: last.index, last_log_term: last.term };
}

function lastOf(core: RaftCore): { index: number; term: number } {
  return { index: core.last_log_index, term: core.status().last_log_term };
}

/** Takes and advances one Ready (null when there is none). */
function drain(core: RaftCore): RaftMessage[] {
  const ready = core.ready();
  if (ready === null) return [];
  core.advance(ready);
  return [...ready.messages, ...ready.messages_after_persist].map((m) => m.message);
}

test('disruption rule: a follower hearing its leader ignores a higher-term RequestVote', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const follower = cluster.core(2);
  const term = follower.current_term;
  follower.step(3, voteRequest(MessageType.RequestVoteRequest, term + 1, 3, lastOf(follower)));
  assert.equal(follower.current_term, term, 'term unchanged');
  assert.equal(follower.status().leader_id, 1, 'still follows the leader');
  assert.deepEqual(drain(follower), [], 'no reply, nothing to persist');
});

test('disruption rule: the leader ignores a higher-term RequestVote and stays leader', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const leader = cluster.core(1);
  const term = leader.current_term;
  leader.step(3, voteRequest(MessageType.RequestVoteRequest, term + 5, 3, lastOf(leader)));
  cluster.settle();
  assert.equal(leader.current_role, 'leader');
  assert.equal(leader.current_term, term);
});

test('disruption rule: a node that missed its leader for an election timeout votes', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const follower = cluster.core(2);
  const term = follower.current_term;
  cluster.isolate(2);
  // Fewer ticks than its randomized timeout could be: it must not have campaigned on its own.
  for (let i = 0; i < ELECTION_TICKS; i++) follower.tick();
  assert.equal(follower.current_term, term, 'no campaign of its own (prevote kept the term)');
  drain(follower);
  cluster.heal();
  follower.step(3, voteRequest(MessageType.RequestVoteRequest, term + 1, 3, lastOf(follower)));
  assert.equal(follower.current_term, term + 1, 'out of lease: the higher term is adopted');
  const reply = drain(follower).find((m) => m.type === MessageType.RequestVoteResponse);
  assert.ok(reply !== undefined && reply.type === MessageType.RequestVoteResponse);
  assert.equal(reply.vote_granted, true);
});

test('disruption rule exception: a transfer campaign is marked and answered in lease', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const follower = cluster.core(2);
  const term = follower.current_term;
  follower.step(3, voteRequest(MessageType.TransferVoteRequest, term + 1, 3, lastOf(follower)));
  assert.equal(follower.current_term, term + 1);
  const reply = drain(follower).find((m) => m.type === MessageType.RequestVoteResponse);
  assert.ok(reply !== undefined && reply.type === MessageType.RequestVoteResponse);
  assert.equal(reply.vote_granted, true);
});

test('leadership transfer uses TransferVoteRequest and wins while followers are in lease', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.tick(1, 2);
  cluster.delivered = [];
  assert.ok(cluster.core(1).transferLeadership(3));
  cluster.settle();
  assert.equal(cluster.core(3).current_role, 'leader');
  const kinds = new Set(cluster.delivered.map((m) => m.type));
  assert.ok(kinds.has(MessageType.TransferVoteRequest), 'the transfer campaign is marked');
  assert.ok(!kinds.has(MessageType.RequestVoteRequest), 'no plain vote request was needed');
});

test('TimeoutNow is obeyed only from the leader of the current term', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const follower = cluster.core(2);
  const term = follower.current_term;
  // From another follower, at our term.
  follower.step(3, { type: MessageType.TimeoutNow, term, leader_id: 3 });
  // Naming the leader, at a higher term (a stranger guessing ahead).
  follower.step(1, { type: MessageType.TimeoutNow, term: term + 1, leader_id: 1 });
  // From the leader's link but naming someone else.
  follower.step(1, { type: MessageType.TimeoutNow, term, leader_id: 3 });
  assert.equal(follower.current_role, 'follower');
  assert.equal(follower.current_term, term);
  assert.deepEqual(drain(follower), []);
  follower.step(1, { type: MessageType.TimeoutNow, term, leader_id: 1 });
  assert.equal(follower.current_role, 'candidate', 'the real leader is obeyed');
  assert.equal(follower.current_term, term + 1);
});

test('term ceiling: a node at raft_term_max never campaigns, yet follows a leader', () => {
  const restored = { hard_state: { term: LIMITS.raft_term_max, vote: 0, commit: 0 }, entries: [] };
  const node = makeCore(2, [1, 2, 3], { restored });
  for (let i = 0; i < 10 * ELECTION_TICKS; i++) {
    node.tick();
    for (const message of drain(node)) assert.ok(message.term <= LIMITS.raft_term_max);
  }
  assert.equal(node.current_role, 'follower');
  assert.equal(node.current_term, LIMITS.raft_term_max);
  node.step(1, {
    type: MessageType.AppendEntriesRequest,
    term: LIMITS.raft_term_max,
    leader_id: 1,
    prev_log_index: 0,
    prev_log_term: 0,
    leader_commit: 1,
    seq: 1,
    entries: [{ term: LIMITS.raft_term_max, data: new Uint8Array(0) }],
  });
  assert.equal(node.status().leader_id, 1);
  assert.equal(node.commit_index, 1);
});

test('term ceiling: a message with a term above raft_term_max changes nothing', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const follower = cluster.core(2);
  const term = follower.current_term;
  cluster.isolate(2);
  for (let i = 0; i < 3 * ELECTION_TICKS; i++) follower.tick(); // out of lease
  drain(follower);
  for (const bad of [LIMITS.raft_term_max + 1, 0x7fff_ffff]) {
    follower.step(3, voteRequest(MessageType.RequestVoteRequest, bad, 3, lastOf(follower)));
    follower.step(3, { type: MessageType.TimeoutNow, term: bad, leader_id: 3 });
  }
  assert.equal(follower.current_term, term);
});

test('term ceiling: the last allowed campaign reaches exactly raft_term_max', () => {
  const restored = {
    hard_state: { term: LIMITS.raft_term_max - 1, vote: 0, commit: 0 },
    entries: [],
  };
  const lone = makeCore(1, [1], { restored });
  for (let i = 0; i < 2 * ELECTION_TICKS; i++) {
    lone.tick();
    drain(lone);
  }
  assert.equal(lone.current_role, 'leader');
  assert.equal(lone.current_term, LIMITS.raft_term_max);
});

test('recoverPoisonedTerm resumes a forged term at the last log term with the vote spent', () => {
  const entries: LogEntry[] = [
    { term: 1, data: new Uint8Array(0) },
    { term: 4, data: new Uint8Array(0) },
  ];
  const sane = { hard_state: { term: 6, vote: 3, commit: 2 }, entries };
  assert.deepEqual(recoverPoisonedTerm(sane, 2), { restored: sane, note: null });
  const poisoned = { hard_state: { term: 0x7fff_ffff, vote: 3, commit: 2 }, entries };
  const recovered = recoverPoisonedTerm(poisoned, 2);
  assert.deepEqual(recovered.restored.hard_state, { term: 4, vote: 2, commit: 2 });
  assert.match(recovered.note ?? '', /2147483647 exceeds raft_term_max/);
  const hopeless = {
    hard_state: { term: 0x7fff_ffff, vote: 0, commit: 0 },
    entries: [{ term: 0x7fff_ffff, data: new Uint8Array(0) }],
  };
  const kept = recoverPoisonedTerm(hopeless, 2);
  assert.equal(kept.restored, hopeless);
  assert.match(kept.note ?? '', /wipe its data directory/);
});

test('invalidEntryReason accepts commands and no-ops and names the first bad entry', () => {
  const set = encodeCommand({ op: 'set', key: Buffer.from('k'), words: [Buffer.from('v')] });
  const append = (entries: LogEntry[]): RaftMessage => ({
    type: MessageType.AppendEntriesRequest,
    term: 5,
    leader_id: 1,
    prev_log_index: 7,
    prev_log_term: 3,
    leader_commit: 0,
    seq: 1,
    entries,
  });
  assert.equal(invalidEntryReason(append([])), null);
  assert.equal(
    invalidEntryReason(
      append([
        { term: 3, data: set },
        { term: 5, data: new Uint8Array(0) },
      ]),
    ),
    null,
  );
  assert.match(
    invalidEntryReason(
      append([
        { term: 5, data: set },
        { term: 5, data: Buffer.from([9]) },
      ]),
    ) ?? '',
    /entry 9 is not a command/,
  );
  assert.match(invalidEntryReason(append([{ term: 6, data: set }])) ?? '', /entry 8 has term 6/);
  assert.match(invalidEntryReason(append([{ term: 2, data: set }])) ?? '', /entry 8 has term 2/);
  assert.equal(invalidEntryReason({ type: MessageType.TimeoutNow, term: 1, leader_id: 1 }), null);
});
