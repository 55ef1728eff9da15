/**
 * RAFT.NODE ADD (issue 15): the reply a joining node parses, the leader's id allocation (never an
 * id used before) and the idempotent answer for a joiner that retries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replica } from '../../src/replica/replica';
import type { Reply } from '../../src/resp/client_codec';
import type { ClientReply } from '../../src/server/client_listener';
import { formatAddReply, judgeAddReply, parseAddReply } from '../../src/server/join_client';
import { type MembershipCommandHost, nodeCommand } from '../../src/server/membership_commands';
import { learnersOf } from '../../src/raft/membership';
import { makeCore, TestNet } from '../support/raft_test_net';

const FINGERPRINT = Buffer.alloc(32, 0xab);
const HEX = FINGERPRINT.toString('hex');

test('ADD reply: parsed back; hints and errors tell the joiner what to do next', () => {
  const text = formatAddReply({ id: 4, cluster_fingerprint: FINGERPRINT });
  assert.equal(text, `OK id=4 cluster=${HEX}`);
  assert.deepEqual(parseAddReply(text), { id: 4, cluster_fingerprint: FINGERPRINT });
  assert.equal(parseAddReply('OK'), null);
  assert.equal(parseAddReply(`OK id=0 cluster=${HEX}`), null);
  assert.equal(parseAddReply(`OK id=4 cluster=${HEX.slice(2)}`), null);
  const error = (message: string): Reply => ({ type: 'error', message });
  assert.deepEqual(judgeAddReply({ type: 'simple', value: text }), {
    kind: 'granted',
    grant: { id: 4, cluster_fingerprint: FINGERPRINT },
  });
  assert.deepEqual(judgeAddReply(error('TRYAGAIN not the leader (leader 10.0.0.1:8001)')), {
    kind: 'retry',
    reason: 'TRYAGAIN not the leader (leader 10.0.0.1:8001)',
    next: '10.0.0.1:8001',
  });
  assert.equal(judgeAddReply(error('MOVED 0 10.0.0.2:8002')).kind, 'retry');
  assert.equal(
    (judgeAddReply(error('MOVED 0 10.0.0.2:8002')) as { next: string }).next,
    '10.0.0.2:8002',
  );
  assert.deepEqual(judgeAddReply(error('TRYAGAIN a change is in progress')), {
    kind: 'retry',
    reason: 'TRYAGAIN a change is in progress',
    next: null,
  });
  assert.equal(judgeAddReply(error('ERR 127.0.0.1:8004 is node 4, a voter')).kind, 'final');
  assert.equal(judgeAddReply({ type: 'simple', value: 'OK' }).kind, 'final');
});

/** Node 1 leads [1, 2, 3] with a Replica applying its Readies; nodes 4 and 5 run outside. */
function leaderWithReplica(): { net: TestNet; host: (id: number) => MembershipCommandHost } {
  const net = new TestNet([1, 2, 3]);
  net.cores.set(4, makeCore(4, []));
  net.cores.set(5, makeCore(5, []));
  const replicas = new Map([1, 2].map((id) => [id, new Replica(net.core(id))]));
  net.on_ready = (id, ready) => replicas.get(id)?.applyReady(ready);
  net.elect(1);
  const host = (id: number): MembershipCommandHost => ({
    core: net.core(id),
    replica: replicas.get(id)!,
    addressOf: (of) => `127.0.0.1:${8000 + of}`,
    schedule: () => undefined,
    cluster_fingerprint: FINGERPRINT,
  });
  return { net, host };
}

async function add(net: TestNet, host: MembershipCommandHost, address: string): Promise<string> {
  const args = ['RAFT.NODE', 'ADD', address].map((word) => Buffer.from(word));
  const result = nodeCommand(args, host);
  net.settle();
  const reply: ClientReply = await result;
  return reply.reply.toString('latin1').trim();
}

test('ADD: a fresh id once committed, the same answer to a retry, never a reused id', async () => {
  const { net, host } = leaderWithReplica();
  net.isolate(4); // the new node is not up yet: it holds nothing
  assert.equal(await add(net, host(1), '127.0.0.1:8004'), `+OK id=4 cluster=${HEX}`);
  assert.deepEqual(learnersOf(net.core(1).current_membership), [4]);
  // The joiner died before storing its id and asks again: same id, no second learner.
  assert.equal(await add(net, host(1), '127.0.0.1:8004'), `+OK id=4 cluster=${HEX}`);
  assert.deepEqual(learnersOf(net.core(1).current_membership), [4]);
  // A follower points at the leader.
  assert.match(
    await add(net, host(2), '127.0.0.1:8009'),
    /^-TRYAGAIN .*\(leader 127\.0\.0\.1:8001\)$/,
  );
  // Once node 4 holds entries, its address is not handed out again: it must be removed first.
  net.heal();
  net.tickAll(3);
  net.settle();
  assert.match(await add(net, host(1), '127.0.0.1:8004'), /^-ERR .*is node 4, a learner holding/);
  const remove = nodeCommand(
    ['RAFT.NODE', 'REMOVE', '4'].map((w) => Buffer.from(w)),
    host(1),
  );
  net.settle();
  assert.equal((await remove).reply.toString('latin1'), '+OK\r\n');
  // The same address again after the removal: a new id (4 is never reused).
  assert.equal(await add(net, host(1), '127.0.0.1:8004'), `+OK id=5 cluster=${HEX}`);
  assert.match(await add(net, host(1), 'nonsense'), /^-ERR RAFT.NODE ADD/);
  assert.match(await add(net, host(1), '127.0.0.1:900'), /^-ERR .*client port must exceed/);
});
