/**
 * PeerTransport.setPeers (issue 15): the peer set follows the configuration in the log. New
 * members are dialled, removed ones are closed and refused, an address a removed node used may
 * belong to a new id, and a node that does not yet know its configuration answers whoever passes
 * the fingerprint check.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PeerTransport, type PeerAddress } from '../../src/server/peer_transport';
import type { HandshakeSettings } from '../../src/server/peer_handshake';
import { MessageType, type RaftMessage } from '../../src/raft/protocol';
import { SILENT_LOGGER } from '../../src/util/log';
import { leakedHandles, waitFor } from '../support/wait';
import { freePort } from '../support/ports';

const HOST = '127.0.0.1';
const FINGERPRINT = createHash('sha256').update('set-peers-test').digest();

interface Node {
  id: number;
  port: number;
  transport: PeerTransport;
  received: Array<{ from: number; message: RaftMessage }>;
}

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
  await waitFor('no sockets, servers or timers left', () => leakedHandles().length === 0);
});

function handshake(self_id: number, peers: PeerAddress[]): HandshakeSettings {
  return {
    self_id,
    fingerprint: FINGERPRINT,
    members: 'test',
    secret: null,
    peer_ids: new Set(peers.map((p) => p.id)),
  };
}

async function startNode(id: number, port: number, peers: PeerAddress[]): Promise<Node> {
  const received: Node['received'] = [];
  const transport = new PeerTransport(
    {
      self_id: id,
      listen_host: HOST,
      listen_port: port,
      peers,
      logger: SILENT_LOGGER,
      backoff_base_ms: 10,
      backoff_max_ms: 100,
      handshake: handshake(id, peers),
    },
    (from, message) => received.push({ from, message }),
  );
  cleanups.push(() => transport.close());
  await transport.start();
  return { id, port, transport, received };
}

function address(node: { id: number; port: number }): PeerAddress {
  return { id: node.id, host: HOST, raft_port: node.port };
}

function vote(candidate_id: number): RaftMessage {
  return {
    type: MessageType.RequestVoteRequest,
    term: 1,
    candidate_id,
    last_log_index: 0,
    last_log_term: 0,
  };
}

/** Sends until one arrives: a link comes up asynchronously. */
async function deliver(from: Node, to: Node, message: RaftMessage): Promise<void> {
  const before = to.received.length;
  await waitFor(`node ${to.id} hears node ${from.id}`, () => {
    if (to.received.slice(before).some((r) => r.from === from.id)) return true;
    from.transport.send(to.id, message);
    return false;
  });
}

test('a peer added at run time is dialled; a removed one is closed and refused', async () => {
  const a = await startNode(1, await freePort(), []);
  const b_port = await freePort();
  const b = await startNode(2, b_port, [address(a)]);
  assert.equal(a.transport.send(2, vote(1)), false, 'no link before setPeers');
  a.transport.setPeers([address(b)]);
  await deliver(a, b, vote(1));
  await deliver(b, a, vote(2));

  a.transport.setPeers([]);
  assert.deepEqual(
    a.transport.status().map((s) => s.id),
    [],
    'the removed peer has no link',
  );
  assert.equal(a.transport.send(2, vote(1)), false);
  // B still dials A, but A refuses the removed id at the handshake: nothing more arrives.
  const heard = a.received.length;
  for (let i = 0; i < 20; i++) {
    b.transport.send(1, vote(2));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(a.received.length, heard, 'a removed peer is not heard');
});

test('an address a removed node used can belong to a new id', async () => {
  const a = await startNode(1, await freePort(), []);
  const shared_port = await freePort();
  const old_node = await startNode(2, shared_port, [address(a)]);
  a.transport.setPeers([address(old_node)]);
  await deliver(a, old_node, vote(1));
  await old_node.transport.close();

  const new_node = await startNode(5, shared_port, [address(a)]);
  a.transport.setPeers([{ id: 5, host: HOST, raft_port: shared_port }]);
  await deliver(a, new_node, vote(1));
  await deliver(new_node, a, vote(5));
  assert.ok(
    new_node.received.every((r) => r.from === 1),
    'the new node hears node 1 under its id',
  );
});

test('a node that knows no configuration answers an unknown peer, never dials it', async () => {
  const joiner = await startNode(4, await freePort(), []);
  const leader = await startNode(1, await freePort(), [address(joiner)]);
  // Refused while it admits only its (empty) peer set.
  for (let i = 0; i < 10; i++) {
    leader.transport.send(4, vote(1));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(joiner.received.length, 0, 'an unknown id is refused by default');

  joiner.transport.setPeers([], true);
  await deliver(leader, joiner, vote(1));
  // Answers go back on the inbound connection: no dial needed.
  const response: RaftMessage = {
    type: MessageType.RequestVoteResponse,
    term: 1,
    vote_granted: false,
  };
  await deliver(joiner, leader, response);
  assert.equal(joiner.transport.status().find((s) => s.id === 1)?.outbound, 'backoff');

  // Once the configuration names the leader with its address, the node dials it too.
  joiner.transport.setPeers([address(leader)]);
  await waitFor('the joiner dials the leader', () => {
    return joiner.transport.status().find((s) => s.id === 1)?.outbound === 'connected';
  });
});
