/**
 * Review findings for the pure Raft core, each as a concrete message
 * sequence driven through the RaftCore API. Each test asserts the CORRECT
 * behaviour, so a test that fails demonstrates the bug it is named after.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageType } from '../../src/raft/protocol';
import { ELECTION_TICKS, makeCore, TestNet, type Envelope } from './raft_test_net';

const data = (text: string): Uint8Array => Buffer.from(text);
const isAppend = (e: Envelope): boolean => e.message.type === MessageType.AppendEntriesRequest;
const appendWithEntries = (e: Envelope): boolean =>
  e.message.type === MessageType.AppendEntriesRequest && e.message.entries.length > 0;

// ---------------------------------------------------------------------------------------------
// Finding 1 (safety): a rejection sent by handleStaleTerm to a request of an OLDER term carries
// the receiver's current term, so a node that is leader again in that newer term accepts it as
// a current-term response. Seqs restart at 0 in becomeLeader, so its `ack` (a seq of the older
// term) is compared with this term's read rounds and can confirm a ReadIndex round that the
// follower never answered: a stale read.
// ---------------------------------------------------------------------------------------------
test('finding 1: a stale-term AppendEntries rejection must not confirm a ReadIndex round of a later term', () => {
  const net = new TestNet([1, 2, 3], { uncommitted_bytes_max: 1 << 20 });
  net.elect(1);
  const term1 = net.core(1).current_term;
  // Term 1 runs for a while so node 1's seq counter grows well above what term 3 will use.
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

// ---------------------------------------------------------------------------------------------
// Finding 2 (liveness): in replicate state a heartbeat response frees every inflight (freeUpTo)
// including lost ones, but pr.next stays past the gap. With nothing new to send, nothing ever
// re-sends the lost entries: heartbeats are sent at prev = pr.match and always succeed.
// ---------------------------------------------------------------------------------------------
test('finding 2: a lost AppendEntries in replicate state is re-sent even when no new entry is proposed', () => {
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
    `entry ${proposed.index} never committed (commit ${leader.commit_index}, base ${base}); node 2 last index ${net.core(2).last_log_index}, ` +
      `leader view ${JSON.stringify(leader.status().peers.find((p) => p.id === 2))}`,
  );
});

// ---------------------------------------------------------------------------------------------
// Finding 3 (liveness): sendReadRound resets heartbeat_elapsed. broadcastHeartbeat is the only
// retry of a lost probe (it clears probe_sent). Under a steady read load the periodic heartbeat
// never fires, so a follower whose probe was lost stayed in probe with probe_sent = true forever.
// Failed at b39ecf4; passes since 2f98330 (a read-round heartbeat answer now counts as an answer to
// the current probe). Kept as a regression test.
// ---------------------------------------------------------------------------------------------
test('finding 3: a lost probe is retried even while ReadIndex rounds keep resetting the heartbeat timer', () => {
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

// ---------------------------------------------------------------------------------------------
// Finding 4 (liveness, far-fetched): seqs are compared as int32 serial numbers. Inflight records
// of a follower that stayed silent for more than 2^31 messages look "newer" than every later ack,
// so freeUpTo never frees them and a full window never reopens. (The test fast-forwards the
// private seq counter instead of sending 2^31 messages.)
// ---------------------------------------------------------------------------------------------
test('finding 4: the flow-control window reopens after a follower was silent for 2^31 messages', () => {
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
  (leader as unknown as { seq: number }).seq += 2 ** 31 + 1000; // int32 wrap happens at the next (seq + 1) | 0
  net.cut.delete('1>2');
  net.tick([1, 2], 5 * ELECTION_TICKS);
  assert.ok(
    leader.commit_index >= p.index,
    `entry ${p.index} never commits: window ${JSON.stringify(leader.status().peers.find((q) => q.id === 2))}`,
  );
});

test('finding 4b: a follower that was down for 2^31 messages is still caught up from probe state (probe_first_seq wrap)', () => {
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
  net.tick([3, 1], 4); // heartbeat rounds: probes to node 2 are resent and lost; probe_first_seq stays
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

// ---------------------------------------------------------------------------------------------
// Checked and found correct (passes): truncation while a Ready is outstanding does not let
// advance() mark the replaced entries durable (RaftLog.truncated_since_ready).
// ---------------------------------------------------------------------------------------------
test('checked: a truncation during an outstanding Ready limits what advance() proves durable', () => {
  const follower = makeCore(2, [1, 2, 3]);
  follower.step(1, {
    type: MessageType.AppendEntriesRequest,
    term: 1,
    leader_id: 1,
    prev_log_index: 0,
    prev_log_term: 0,
    leader_commit: 1,
    seq: 1,
    entries: [
      { term: 1, data: data('a') },
      { term: 1, data: data('b') },
      { term: 1, data: data('c') },
    ],
  });
  const r1 = follower.ready()!;
  assert.deepEqual([r1.entries?.first_index, r1.entries?.entries.length], [1, 3]);
  // While r1 is being written, a leader of term 2 replaces index 2 onwards.
  follower.step(3, {
    type: MessageType.AppendEntriesRequest,
    term: 2,
    leader_id: 3,
    prev_log_index: 1,
    prev_log_term: 1,
    leader_commit: 1,
    seq: 1,
    entries: [{ term: 2, data: data('B') }],
  });
  follower.advance(r1);
  assert.equal(follower.status().stable_index, 1, 'only index 1 of r1 is still in the log');
  const r2 = follower.ready()!;
  assert.equal(r2.entries?.first_index, 2);
  assert.equal(r2.entries?.entries[0]?.term, 2);
  follower.advance(r2);
  assert.equal(follower.status().stable_index, 2);
});
