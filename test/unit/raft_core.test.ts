/**
 * Rule-by-rule tests of the pure Raft core (etcd's raft_paper_test.go is the
 * model: one test per sentence that matters). A tiny synchronous network
 * with instant disks drives the cores; the simulator covers the rest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageType, type LogEntry } from '../../src/wire/types';
import { ELECTION_TICKS, makeCore, TestNet } from './raft_test_net';

const data = (text: string): Uint8Array => Buffer.from(text);

test('the core imports no I/O, timers, clock or randomness of its own', () => {
  // Compiled to dist/test/unit: the sources are three levels up (or under the working directory).
  const dir = [
    join(__dirname, '..', '..', '..', 'src', 'raft'),
    join(process.cwd(), 'src', 'raft'),
  ].find((d) => existsSync(d));
  assert.ok(dir !== undefined, 'src/raft found');
  const forbidden = [
    /from ['"]node:/,
    /require\(/,
    /\bsetTimeout\b/,
    /\bsetInterval\b/,
    /\bDate\b/,
    /Math\.random/,
    /\bPromise\b/,
    /\bprocess\./,
    /from ['"](fs|net|os|crypto|timers)['"]/,
  ];
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 4);
  for (const file of files) {
    const text = readFileSync(join(dir, file), 'utf8');
    for (const pattern of forbidden)
      assert.doesNotMatch(text, pattern, `${file} must not use ${pattern}`);
    for (const match of text.matchAll(/from ['"]([^'"]+)['"]/g)) {
      const target = match[1]!;
      assert.ok(
        target.startsWith('./') ||
          target === '../wire/types' ||
          target === '../util/limits' ||
          target.startsWith('../util/assert') ||
          target.startsWith('../util/prng'),
        `${file} imports ${target}; the core may only import its own modules, wire types and pure utilities`,
      );
    }
  }
});

test('§5.2: a follower that hears nothing campaigns and a lone node elects itself and commits its no-op', () => {
  const cluster = new TestNet([1]);
  cluster.elect(1);
  const status = cluster.core(1).status();
  assert.equal(status.term, 1);
  assert.equal(status.commit_index, 1, 'the no-op of term 1 is committed');
});

test('§5.2: three nodes elect exactly one leader and replicate its no-op', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  for (const id of [2, 3]) {
    assert.equal(cluster.core(id).current_role, 'follower');
    assert.equal(cluster.core(id).status().leader_id, 1);
  }
  cluster.tick(1, 2); // a heartbeat carries the commit index
  for (const id of [1, 2, 3]) assert.equal(cluster.core(id).commit_index, 1);
});

test('§5.4.1: a vote is refused to a candidate whose log is less up to date', () => {
  const voter = makeCore(2, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 0, commit: 0 },
      entries: [{ term: 3, data: data('x') }],
    },
  });
  voter.step(1, {
    type: MessageType.RequestVoteRequest,
    term: 4,
    candidate_id: 1,
    last_log_index: 5,
    last_log_term: 2,
  });
  const reply = voter.ready()!.messages_after_persist[0]!.message;
  assert.equal(reply.type, MessageType.RequestVoteResponse);
  assert.equal(reply.type === MessageType.RequestVoteResponse && reply.vote_granted, false);
});

test('test switch vote_without_log_check grants that same vote (the check is what refuses it)', () => {
  const voter = makeCore(2, [1, 2, 3], {
    restored: {
      hard_state: { term: 3, vote: 0, commit: 0 },
      entries: [{ term: 3, data: data('x') }],
    },
    faults: { vote_without_log_check: true },
  });
  voter.step(1, {
    type: MessageType.RequestVoteRequest,
    term: 4,
    candidate_id: 1,
    last_log_index: 5,
    last_log_term: 2,
  });
  const reply = voter.ready()!.messages_after_persist[0]!.message;
  assert.equal(reply.type === MessageType.RequestVoteResponse && reply.vote_granted, true);
});

test('§5.2: at most one vote per term, and it is persisted before the reply is sent', () => {
  const voter = makeCore(3, [1, 2, 3]);
  voter.step(1, {
    type: MessageType.RequestVoteRequest,
    term: 1,
    candidate_id: 1,
    last_log_index: 0,
    last_log_term: 0,
  });
  const first = voter.ready()!;
  assert.deepEqual(
    first.hard_state,
    { term: 1, vote: 1, commit: 0 },
    'the vote is in the same Ready as the reply, to persist first',
  );
  assert.equal(first.must_sync, true);
  assert.equal(first.messages.length, 0, 'nothing goes out before the vote is durable');
  assert.equal(first.messages_after_persist.length, 1, 'the grant waits for the save');
  voter.advance(first);
  voter.step(2, {
    type: MessageType.RequestVoteRequest,
    term: 1,
    candidate_id: 2,
    last_log_index: 0,
    last_log_term: 0,
  });
  const second = voter.ready()!.messages[0]!.message;
  assert.equal(second.type === MessageType.RequestVoteResponse && second.vote_granted, false);
});

test("PreVote: a pre-vote request never changes the receiver's term, and a node that hears its leader refuses it", () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const term = cluster.core(2).current_term;
  cluster.core(2).step(3, {
    type: MessageType.PreVoteRequest,
    term: term + 1,
    candidate_id: 3,
    last_log_index: 99,
    last_log_term: term,
  });
  const ready = cluster.core(2).ready()!;
  assert.equal(ready.hard_state, null, 'term and vote unchanged');
  const reply = ready.messages.find((m) => m.to === 3)!.message;
  assert.equal(
    reply.type === MessageType.PreVoteResponse && reply.vote_granted,
    false,
    'in lease: refused',
  );
  cluster.core(2).advance(ready);
});

test('PreVote: a node cut off from the cluster does not inflate its term, so it cannot depose the leader when it returns', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  const term = cluster.core(1).current_term;
  cluster.isolate(3);
  cluster.tickAll(20 * ELECTION_TICKS);
  assert.equal(cluster.core(3).current_term, term, 'pre-votes failed, the term stayed');
  cluster.heal();
  cluster.tickAll(4 * ELECTION_TICKS);
  assert.equal(cluster.core(1).current_role, 'leader');
  assert.equal(cluster.core(1).current_term, term);
});

test('CheckQuorum: a leader that hears from no majority for an election timeout steps down', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.isolate(1);
  cluster.tick(1, 2 * ELECTION_TICKS + 1);
  assert.notEqual(cluster.core(1).current_role, 'leader');
});

test('Figure 8: a leader never commits an entry of an earlier term by counting replicas; the test switch does', () => {
  for (const faults of [{}, { commit_old_term_entries: true }]) {
    // Node 1 restarts as leader of term 3 holding an entry of term 2 at index 1 that node 2 also
    // holds.
    const entries: LogEntry[] = [{ term: 2, data: data('old') }];
    const leader = makeCore(1, [1, 2, 3], {
      restored: { hard_state: { term: 2, vote: 1, commit: 0 }, entries },
      faults,
    });
    for (let i = 0; i < 2 * ELECTION_TICKS + 1 && leader.current_role !== 'candidate'; i++) {
      leader.tick();
      if (leader.current_role === 'pre_candidate')
        leader.step(2, { type: MessageType.PreVoteResponse, term: 3, vote_granted: true });
    }
    assert.equal(leader.current_role, 'candidate');
    leader.step(2, { type: MessageType.RequestVoteResponse, term: 3, vote_granted: true });
    assert.equal(leader.current_role, 'leader');
    leader.advance(leader.ready()!); // persists the no-op at index 2
    // Node 2 acknowledges index 1 only (say the no-op has not reached it yet).
    const probe = leader.status().peers.find((p) => p.id === 2)!;
    assert.ok(probe);
    leader.step(2, {
      type: MessageType.AppendEntriesResponse,
      term: 3,
      follower_id: 2,
      log_index: 1,
      success: true,
      follower_commit: 0,
      ack: 1,
    });
    const expected = faults.commit_old_term_entries === true ? 1 : 0;
    assert.equal(leader.commit_index, expected);
  }
});

test('the leader counts its own entries only once they are persisted (advance), unless the test switch says otherwise', () => {
  for (const faults of [{}, { ack_before_persist: true }]) {
    const cluster = new TestNet([1, 2, 3], { faults });
    cluster.elect(1);
    cluster.tick(1, 2);
    const leader = cluster.core(1);
    const base = leader.commit_index;
    assert.ok(leader.propose(data('w')).ok);
    // Follower 2 acknowledges the new entry before the leader has persisted it.
    leader.step(2, {
      type: MessageType.AppendEntriesResponse,
      term: leader.current_term,
      follower_id: 2,
      log_index: base + 1,
      success: true,
      follower_commit: base,
      ack: 99,
    });
    assert.equal(leader.commit_index, faults.ack_before_persist === true ? base + 1 : base);
    const ready = leader.ready()!;
    leader.advance(ready);
    assert.equal(leader.commit_index, base + 1, 'committed once our own copy is durable');
  }
});

test('fast backtracking: a follower with 10,000 conflicting entries is repaired in a handful of round trips', () => {
  const conflicting: LogEntry[] = [];
  for (let i = 0; i < 10_000; i++)
    conflicting.push({ term: 2 + Math.floor(i / 4000), data: data(`stale-${i}`) });
  const leader_log: LogEntry[] = [];
  for (let i = 0; i < 10_000; i++) leader_log.push({ term: 5, data: data(`good-${i}`) });
  const cluster = new TestNet([1, 2, 3]);
  cluster.cores.set(
    1,
    makeCore(1, [1, 2, 3], {
      restored: { hard_state: { term: 5, vote: 1, commit: 0 }, entries: leader_log },
    }),
  );
  cluster.cores.set(
    2,
    makeCore(2, [1, 2, 3], {
      restored: { hard_state: { term: 5, vote: 1, commit: 0 }, entries: leader_log.slice() },
    }),
  );
  cluster.cores.set(
    3,
    makeCore(3, [1, 2, 3], {
      restored: { hard_state: { term: 4, vote: 0, commit: 0 }, entries: conflicting },
    }),
  );
  cluster.elect(1);
  for (let i = 0; i < 40; i++) cluster.tick(1);
  const rejections = cluster.delivered.filter(
    (m) => m.type === MessageType.AppendEntriesResponse && !m.success && m.follower_id === 3,
  ).length;
  assert.ok(
    rejections <= 5,
    `follower 3 rejected ${rejections} times (one per stale term, not per entry)`,
  );
  assert.equal(cluster.core(3).last_log_index, cluster.core(1).last_log_index);
  assert.equal(cluster.core(3).termAt(10_000), 5);
});

test('flow control: at most inflight_messages_max AppendEntries are outstanding to a follower that does not answer', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.cut.add('2>1'); // follower 2's answers are lost
  cluster.delivered = [];
  const leader = cluster.core(1);
  for (let i = 0; i < 200; i++) {
    // 200 proposals in 200 separate Readies: without a window each would go out at once.
    leader.propose(data(`p${i}`));
    cluster.settle();
  }
  const to2 = leader.status().peers.find((p) => p.id === 2)!;
  assert.ok(to2.inflight_messages <= 8, `in flight ${to2.inflight_messages}`);
});

test('the uncommitted-bytes cap refuses proposals with a distinct reason, and survives a change of leader', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.isolate(1); // nothing can commit now
  const leader = cluster.core(1);
  let refused: string | null = null;
  for (let i = 0; i < 100 && refused === null; i++) {
    const result = leader.propose(data('x'.repeat(100)));
    if (!result.ok) refused = result.reason;
  }
  assert.equal(refused, 'uncommitted_full');
  cluster.settle();
  // Node 1 restarts as leader of a new term with the same uncommitted tail: the cap still holds.
  const restored = {
    hard_state: { term: leader.current_term, vote: 1, commit: leader.commit_index },
    entries: leader.logEntries(),
  };
  const again = makeCore(1, [1], { restored });
  for (let i = 0; i < 2 * ELECTION_TICKS + 1; i++) again.tick();
  assert.equal(again.current_role, 'leader');
  assert.ok(again.status().uncommitted_bytes >= 900, 'the tail from the old term still counts');
});

test('ReadIndex: reads wait for one heartbeat round answered by a majority; many reads share one round', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.tick(1, 2);
  const leader = cluster.core(1);
  cluster.hold = () => true;
  for (let id = 1; id <= 5; id++) assert.deepEqual(leader.readIndex(id), { ok: true });
  cluster.settle();
  assert.equal(
    cluster.reads.get(1)?.length ?? 0,
    0,
    'no read is served before the round is answered',
  );
  const round = cluster.held.filter((h) => h.message.type === MessageType.AppendEntriesRequest);
  assert.equal(round.length, 2, 'one heartbeat per follower confirms all five reads');
  cluster.hold = () => false;
  const first = round[0]!;
  cluster.core(first.to).step(first.from, first.message);
  cluster.settle();
  assert.equal(
    cluster.reads.get(1)?.length,
    5,
    'one follower plus the leader is a majority of three',
  );
});

test('test switch read_without_heartbeat serves reads with no round at all', () => {
  const cluster = new TestNet([1, 2, 3], { faults: { read_without_heartbeat: true } });
  cluster.elect(1);
  cluster.tick(1, 2);
  cluster.isolate(1);
  assert.deepEqual(cluster.core(1).readIndex(7), { ok: true });
  cluster.settle();
  assert.equal(cluster.reads.get(1)?.length, 1);
});

test('ReadIndex: a deposed leader fails its pending reads instead of serving them', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.tick(1, 2);
  cluster.isolate(1);
  assert.deepEqual(cluster.core(1).readIndex(1), { ok: true });
  const failed: number[] = [];
  for (let i = 0; i < 3 * ELECTION_TICKS; i++) {
    cluster.core(1).tick();
    const ready = cluster.core(1).ready();
    if (ready !== null) {
      failed.push(...ready.failed_reads);
      assert.equal(ready.reads.length, 0);
      cluster.core(1).advance(ready);
    }
  }
  assert.deepEqual(failed, [1]);
});

test('leadership transfer: TimeoutNow makes the caught-up target leader of the next term', () => {
  const cluster = new TestNet([1, 2, 3]);
  cluster.elect(1);
  cluster.tick(1, 2);
  assert.ok(cluster.core(1).transferLeadership(3));
  cluster.settle();
  assert.equal(cluster.core(3).current_role, 'leader');
  assert.equal(cluster.core(1).current_role, 'follower');
  assert.equal(cluster.core(1).status().leader_id, 3);
});

test('a follower never truncates committed entries (assertion) and keeps Log Matching on conflict', () => {
  const follower = makeCore(2, [1, 2, 3], {
    restored: {
      hard_state: { term: 2, vote: 0, commit: 0 },
      entries: [
        { term: 1, data: data('a') },
        { term: 2, data: data('b') },
      ],
    },
  });
  follower.step(1, {
    type: MessageType.AppendEntriesRequest,
    term: 3,
    leader_id: 1,
    prev_log_index: 1,
    prev_log_term: 1,
    leader_commit: 2,
    seq: 1,
    entries: [{ term: 3, data: data('c') }],
  });
  const ready = follower.ready()!;
  assert.deepEqual(
    ready.entries?.first_index,
    2,
    'the conflicting suffix is replaced from index 2',
  );
  assert.equal(follower.termAt(2), 3);
  assert.equal(follower.commit_index, 2);
});
