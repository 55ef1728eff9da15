/**
 * Rule-by-rule tests of the pure Raft core (etcd's raft_paper_test.go is the
 * model: one test per sentence that matters). A tiny synchronous network
 * with instant disks drives the cores; the simulator covers the rest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageType, type LogEntry } from '../../src/raft/protocol';
import { ELECTION_TICKS, makeCore, termAt, TestNet, type Envelope } from '../support/raft_test_net';
import { appendEntriesRequest } from '../support/raft_messages';

const data = (text: string): Uint8Array => Buffer.from(text);
const isAppend = (e: Envelope): boolean => e.message.type === MessageType.AppendEntriesRequest;
const appendWithEntries = (e: Envelope): boolean =>
  e.message.type === MessageType.AppendEntriesRequest && e.message.entries.length > 0;

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
          target.startsWith('../util/assert') ||
          target.startsWith('../util/errors') ||
          target.startsWith('../util/limits') ||
          target.startsWith('../util/prng'),
        `${file} imports ${target}; the core may only import ` +
          'its own modules and pure utilities',
      );
    }
  }
});

test('§5.2: a lone node that hears nothing campaigns, wins and commits its no-op', () => {
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

test('test switch vote_without_log_check grants that vote (the check refuses it)', () => {
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

test("PreVote: never changes the receiver's term; a node that hears its leader refuses", () => {
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

test('PreVote: a node cut off does not inflate its term, so its return deposes no one', () => {
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

test('Figure 8: no commit of an earlier-term entry by counting replicas; the switch does', () => {
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

test('the leader counts its own entries only once persisted, unless the test switch says', () => {
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

test('fast backtracking: 10,000 conflicting entries are repaired in a few round trips', () => {
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
  assert.equal(termAt(cluster.core(3), 10_000), 5);
});

test('flow control: at most inflight_messages_max AppendEntries go to a silent follower', () => {
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

test('the uncommitted-bytes cap refuses proposals with its own reason, across leaders', () => {
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

test('ReadIndex: reads wait for one round answered by a majority; reads share rounds', () => {
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

test('a follower never truncates committed entries; it keeps Log Matching on conflict', () => {
  const follower = makeCore(2, [1, 2, 3], {
    restored: {
      hard_state: { term: 2, vote: 0, commit: 0 },
      entries: [
        { term: 1, data: data('a') },
        { term: 2, data: data('b') },
      ],
    },
  });
  follower.step(
    1,
    appendEntriesRequest({
      term: 3,
      prev_log_index: 1,
      prev_log_term: 1,
      leader_commit: 2,
      entries: [{ term: 3, data: data('c') }],
    }),
  );
  const ready = follower.ready()!;
  assert.deepEqual(
    ready.entries?.first_index,
    2,
    'the conflicting suffix is replaced from index 2',
  );
  assert.equal(termAt(follower, 2), 3);
  assert.equal(follower.commit_index, 2);
});

// A node rejecting an AppendEntries of an older term answers in its own, current term, so a node
// that leads again in that term takes the rejection for an answer of this leadership. Its `ack`
// echoes a seq of the older term: were it counted as an answer to a read round, a follower that
// never answered the round could confirm it, and the read would be stale.
test('ReadIndex: a current-term rejection of an older AppendEntries confirms no read', () => {
  const net = new TestNet([1, 2, 3], { uncommitted_bytes_max: 1 << 20 });
  net.elect(1);
  const term1 = net.core(1).current_term;
  // Term 1 runs for a while so that the delayed message carries a large seq: a leader that counted
  // seqs afresh in each term would send term 3's rounds with smaller ones.
  net.tick([1], 100);
  // Node 1 (term 1) sends one more heartbeat round; its message to node 3 is delayed in the
  // network.
  net.hold = (e) => e.from === 1 && e.to === 3 && isAppend(e);
  net.tick([1], 2);
  net.hold = () => false;
  const delayed = net.held.find((e) => e.message.term === term1)!;
  assert.ok(delayed);
  const delayed_seq =
    delayed.message.type === MessageType.AppendEntriesRequest ? delayed.message.seq : -1;
  assert.ok(delayed_seq > 50, `old-term seq ${delayed_seq}`);

  // Leadership goes 1 → 2 (term 2) → 1 (term 3) by two transfers.
  assert.ok(net.core(1).transferLeadership(2));
  net.settle();
  assert.equal(net.core(2).current_role, 'leader');
  net.tick([2], 2);
  assert.ok(net.core(2).transferLeadership(1));
  net.settle();
  assert.equal(net.core(1).current_role, 'leader');
  const term3 = net.core(1).current_term;
  assert.equal(term3, term1 + 2);
  net.tick([1], 2); // commits node 1's no-op of term 3, so reads go straight to a heartbeat round

  // The delayed term-1 heartbeat now reaches node 3 (term 3): node 3 rejects it, replying
  // {term 3, success false, ack <term-1 seq>}. That reply is delayed too.
  net.hold = (e) => e.from === 3 && e.to === 1;
  net.release(delayed);
  net.settle();
  net.hold = () => false;
  const stale_reply = net.held.find((e) => e.message.type === MessageType.AppendEntriesResponse)!;
  assert.ok(stale_reply);
  assert.equal(stale_reply.message.term, term3, 'the reply carries the CURRENT term');

  // Node 1 is now cut off (or merely paused: ReadIndex must not depend on clocks). Nodes 2 and 3
  // elect node 2 in term 4 and commit a write node 1 never sees.
  net.isolate(1);
  net.tick([2, 3], 3 * ELECTION_TICKS);
  assert.equal(
    net.core(2).current_role === 'leader' || net.core(3).current_role === 'leader',
    true,
  );
  const new_leader = net.core(2).current_role === 'leader' ? net.core(2) : net.core(3);
  assert.ok(new_leader.propose(data('x=new')).ok);
  net.settle();
  assert.ok(new_leader.commit_index > net.core(1).commit_index, 'a write committed without node 1');

  // Node 1 still believes it leads term 3 and starts a read. Its read round goes nowhere.
  assert.equal(net.core(1).current_role, 'leader');
  assert.deepEqual(net.core(1).readIndex(42), { ok: true });
  net.settle();
  assert.equal(net.reads.get(1)?.length ?? 0, 0);

  // The stale reply finally arrives. Nothing node 3 sent answers the read round...
  net.cut.clear();
  net.cut.add('2>1');
  net.cut.add('1>2');
  net.cut.add('1>3');
  net.release(stale_reply);
  net.settle();
  const served = (net.reads.get(1) ?? []).filter((r) => r.request_id === 42);
  assert.equal(
    served.length,
    0,
    `read 42 confirmed at index ${served[0]?.index} by an ack of an older term: stale read`,
  );
});

// In replicate state a heartbeat answer frees every inflight message up to its ack, lost ones
// included; with nothing new to send, only moving `next` back to match + 1 re-sends what was lost
// (heartbeats go at prev = match and always succeed).
test('replicate state: a lost AppendEntries is re-sent even when no new entry is proposed', () => {
  const net = new TestNet([1, 2, 3], { uncommitted_bytes_max: 1 << 20 });
  net.elect(1);
  net.tick([1], 2);
  net.isolate(3); // node 3 is down: commit needs node 2
  const leader = net.core(1);
  const base = leader.commit_index;
  assert.equal(leader.status().peers.find((p) => p.id === 2)!.state, 'replicate');
  let lost = 0;
  net.drop = (e) => {
    if (e.to === 2 && appendWithEntries(e) && lost === 0) {
      lost++;
      return true;
    }
    return false;
  };
  const proposed = leader.propose(data('w'));
  assert.ok(proposed.ok);
  net.settle();
  assert.equal(lost, 1);
  net.drop = () => false;
  // Plenty of heartbeat rounds on a now perfect network (node 2 keeps answering; CheckQuorum
  // holds).
  net.tick([1, 2], 5 * ELECTION_TICKS);
  assert.equal(leader.current_role, 'leader');
  assert.ok(
    leader.commit_index >= proposed.index,
    `entry ${proposed.index} never committed (commit ${leader.commit_index}, ` +
      `base ${base}); node 2 last index ${net.core(2).last_log_index}, ` +
      `leader view ${JSON.stringify(leader.status().peers.find((p) => p.id === 2))}`,
  );
});

// A read round's heartbeats reset the heartbeat timer, so under a steady read load the periodic
// heartbeat (the retry of a lost probe) never fires: the answer to a read-round heartbeat must
// count as an answer to the current probe.
test('probe state: a lost probe is retried while read rounds keep resetting heartbeats', () => {
  const net = new TestNet([1, 2, 3], { uncommitted_bytes_max: 1 << 20 });
  net.elect(1);
  net.tick([1], 2);
  net.isolate(3);
  const leader = net.core(1);
  // Two proposals; the first AppendEntries to node 2 is lost, so the second is rejected (gap) and
  // node 2 drops to probe; the probe that follows is lost as well.
  let dropped = 0;
  net.drop = (e) => {
    if (e.to === 2 && appendWithEntries(e) && dropped < 1) {
      dropped++;
      return true;
    }
    return false;
  };
  const a = leader.propose(data('a'));
  net.settle();
  let probe_lost = false;
  net.drop = (e) => {
    if (
      !probe_lost &&
      e.to === 2 &&
      appendWithEntries(e) &&
      leader.status().peers.find((p) => p.id === 2)!.state === 'probe'
    ) {
      probe_lost = true;
      return true;
    }
    return false;
  };
  const b = leader.propose(data('b'));
  net.settle();
  assert.ok(a.ok && b.ok);
  assert.equal(leader.status().peers.find((p) => p.id === 2)!.state, 'probe');
  assert.ok(probe_lost, 'the probe was lost');
  net.drop = () => false;
  // A client issues a linearizable read every tick; all reads succeed (node 2 answers heartbeats).
  let request_id = 1000;
  for (let i = 0; i < 10 * ELECTION_TICKS; i++) {
    leader.readIndex(request_id++);
    net.settle();
    net.tick([1, 2]);
  }
  assert.ok((net.reads.get(1)?.length ?? 0) > 50, 'reads keep being served');
  assert.equal(leader.current_role, 'leader');
  assert.ok(
    leader.commit_index >= b.index,
    `writes a, b never commit (commit ${leader.commit_index}, want ${b.index})`,
  );
});

// Seqs travel as int32 and are widened against the leader's counter on receipt. Compared as int32
// serial numbers, the inflight records of a follower silent for more than 2^31 messages would look
// newer than every later ack and a full window would never reopen. (The tests fast-forward the
// private seq counter instead of sending 2^31 messages.)
test('flow control: the window reopens after a follower was silent for 2^31 messages', () => {
  const net = new TestNet([1, 2, 3], { inflight_messages_max: 1, uncommitted_bytes_max: 1 << 20 });
  net.elect(1);
  net.tick([1], 2);
  const leader = net.core(1);
  net.isolate(3);
  net.cut.add('1>2'); // node 2 is unreachable for a long time
  const p = leader.propose(data('p'));
  net.settle();
  assert.ok(p.ok);
  assert.equal(leader.status().peers.find((q) => q.id === 2)!.inflight_messages, 1, 'window full');
  // ... 2^31 + 1000 messages later (reads, heartbeats to other peers, ...):
  // Int32 wrap happens at the next (seq + 1) | 0
  (leader as unknown as { seq: number }).seq += 2 ** 31 + 1000;
  net.cut.delete('1>2');
  net.tick([1, 2], 5 * ELECTION_TICKS);
  assert.ok(
    leader.commit_index >= p.index,
    `entry ${p.index} never commits: window ` +
      `${JSON.stringify(leader.status().peers.find((q) => q.id === 2))}`,
  );
});

test('probe state: a follower that was down for 2^31 messages is still caught up', () => {
  const net = new TestNet([1, 2, 3], { uncommitted_bytes_max: 1 << 20 });
  net.elect(1);
  net.isolate(2); // node 2 goes down
  for (let i = 0; i < 5; i++) assert.ok(net.core(1).propose(data(`w${i}`)).ok);
  net.settle();
  // Leadership moves to node 3, whose Progress for node 2 starts in probe at next = last + 1: node
  // 2 must reject it.
  assert.ok(net.core(1).transferLeadership(3));
  net.settle();
  const leader = net.core(3);
  assert.equal(leader.current_role, 'leader');
  // Heartbeat rounds: probes to node 2 are resent and lost; probe_first_seq stays
  net.tick([3, 1], 4);
  assert.equal(leader.status().peers.find((q) => q.id === 2)!.state, 'probe');
  // ... 2^31 + 1000 messages later (heartbeats and reads to node 1):
  (leader as unknown as { seq: number }).seq += 2 ** 31 + 1000;
  net.cut.clear(); // node 2 is back with its short log: it rejects the probe and must be backed up
  net.tick([1, 2, 3], 5 * ELECTION_TICKS);
  assert.equal(leader.current_role, 'leader');
  assert.equal(
    net.core(2).last_log_index,
    leader.last_log_index,
    `node 2 never catches up: ${JSON.stringify(leader.status().peers.find((q) => q.id === 2))}`,
  );
});

test('a truncation during an outstanding Ready limits what advance() proves durable', () => {
  const follower = makeCore(2, [1, 2, 3]);
  follower.step(
    1,
    appendEntriesRequest({
      leader_commit: 1,
      entries: [
        { term: 1, data: data('a') },
        { term: 1, data: data('b') },
        { term: 1, data: data('c') },
      ],
    }),
  );
  const r1 = follower.ready()!;
  assert.deepEqual([r1.entries?.first_index, r1.entries?.entries.length], [1, 3]);
  // While r1 is being written, a leader of term 2 replaces index 2 onwards.
  follower.step(
    3,
    appendEntriesRequest({
      term: 2,
      leader_id: 3,
      prev_log_index: 1,
      prev_log_term: 1,
      leader_commit: 1,
      entries: [{ term: 2, data: data('B') }],
    }),
  );
  follower.advance(r1);
  assert.equal(follower.status().stable_index, 1, 'only index 1 of r1 is still in the log');
  const r2 = follower.ready()!;
  assert.equal(r2.entries?.first_index, 2);
  assert.equal(r2.entries?.entries[0]?.term, 2);
  follower.advance(r2);
  assert.equal(follower.status().stable_index, 2);
});

test('a follower acknowledges entries only once all are saved, however many Readies', () => {
  // Sim seed 721474069: a Ready hands out at most ready_entries_max entries; the response to an
  // append of 3 entries went out after the first one was saved, the follower's next save failed,
  // and the leader had counted it towards committing entries it never held.
  const follower = makeCore(2, [1, 2, 3], { ready_entries_max: 1 });
  const entries: LogEntry[] = [1, 2, 3].map((i) => ({ term: 1, data: data(`e${i}`) }));
  follower.step(1, appendEntriesRequest({ entries }));
  let saved = 0;
  const acks: { match: number; saved: number }[] = [];
  for (let round = 0; round < 10 && follower.hasReady(); round++) {
    const ready = follower.ready();
    assert.ok(ready !== null);
    const saved_before = saved;
    if (ready.entries !== null)
      saved = ready.entries.first_index + ready.entries.entries.length - 1;
    const sent = [
      ...ready.messages.map(({ message }) => ({ message, saved: saved_before })),
      ...ready.messages_after_persist.map(({ message }) => ({ message, saved })),
    ];
    for (const { message, saved: durable } of sent) {
      if (message.type === MessageType.AppendEntriesResponse && message.success)
        acks.push({ match: message.log_index, saved: durable });
    }
    follower.advance(ready);
  }
  assert.deepEqual(acks, [{ match: 3, saved: 3 }]);
});
