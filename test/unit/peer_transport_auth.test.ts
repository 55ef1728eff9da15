/**
 * The Raft port's connection start on real sockets: fingerprint exchange, authentication with a
 * cluster secret, seed (bare-frame) interop in open mode, and messages refused before Raft.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { describeMembers } from '../../src/config/fingerprint';
import { PeerHandshake } from '../../src/server/peer_handshake';
import type { PeerAddress } from '../../src/server/peer_transport';
import { LIMITS } from '../../src/util/limits';
import { encodeMessage } from '../../src/wire/codec';
import { MessageType, type RaftMessage } from '../../src/raft/protocol';
import {
  closeAll,
  HOST,
  handshakeFor,
  members,
  onCleanup,
  type PeerNode as Node,
  RawSocket,
  SECRET,
  startPeerNode,
  vote,
} from '../support/peer_nodes';
import { waitFor } from '../support/wait';

afterEach(closeAll);

/** Node `self_id` of `list`; it refuses AppendEntries carrying an entry that starts with 0xee. */
function startNode(
  self_id: number,
  list: PeerAddress[],
  secret: Buffer | null,
  send_hello = true,
): Promise<Node> {
  return startPeerNode(
    self_id,
    list,
    { ...handshakeFor(self_id, list, secret), send_hello },
    {
      validate_message: (message) =>
        message.type === MessageType.AppendEntriesRequest &&
        message.entries.some((e) => e.data[0] === 0xee)
          ? 'poison entry'
          : null,
    },
  );
}

function linksUp(nodes: Node[]): boolean {
  return nodes.every((n) => n.transport.status().every((s) => s.outbound === 'connected'));
}

test('with a secret: peers authenticate and talk; a stranger naming a member is not', async () => {
  const list = await members(2);
  const a = await startNode(1, list, SECRET);
  const b = await startNode(2, list, SECRET);
  await waitFor('authenticated links up', () => linksUp([a, b]));
  assert.ok(a.transport.send(2, vote(1)));
  await waitFor('request delivered', () => b.received.length === 1);
  assert.deepEqual(b.received[0], { from: 1, message: vote(1) });
  assert.ok(
    b.transport.send(1, { type: MessageType.RequestVoteResponse, term: 1, vote_granted: true }),
  );
  await waitFor('response delivered', () => a.received.length === 1);

  const stranger = new RawSocket(list[1]!.raft_port);
  await stranger.connected();
  stranger.socket.write(encodeMessage(vote(1, 50)));
  await waitFor('stranger closed', () => stranger.closed);
  assert.equal(b.received.length, 1, 'nothing from the stranger reached Raft');
  assert.ok(
    b.log.some((line) => /WARN raft inbound .* handshake failed: sent frame type 1/.test(line)),
  );
});

test('with a secret: a silent connection is closed at the handshake deadline', async () => {
  const list = await members(2);
  const a = await startNode(1, list, SECRET);
  const silent = new RawSocket(list[0]!.raft_port);
  await silent.connected();
  const started_ms = Date.now();
  await waitFor('silent socket closed', () => silent.closed);
  const elapsed_ms = Date.now() - started_ms;
  assert.ok(elapsed_ms >= LIMITS.peer_handshake_timeout_ms - 100, `closed after ${elapsed_ms} ms`);
  assert.ok(a.log.some((line) => /no authenticated handshake within/.test(line)));
});

test('a node without the secret cannot join a cluster that has one', async () => {
  const list = await members(2);
  const a = await startNode(1, list, SECRET);
  const b = await startNode(2, list, null);
  await waitFor(
    'both sides logged the refusal',
    () =>
      a.log.some((l) => /handshake failed/.test(l)) &&
      b.log.some((l) => /handshake failed/.test(l)),
  );
  b.transport.send(1, vote(2));
  a.transport.send(2, vote(1));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(a.received.length, 0);
  assert.equal(b.received.length, 0);
});

for (const secret of [null, SECRET]) {
  const mode = secret === null ? 'open' : 'secret';
  test(`config mismatch (${mode} mode): refused and logged on both sides`, async () => {
    const list = await members(3);
    const a = await startNode(1, list, secret);
    // Node 2's file lists only two members.
    const b = await startNode(2, list.slice(0, 2), secret);
    const mismatch = (log: string[]) =>
      log.some(
        (line) =>
          line.startsWith('ERROR') &&
          line.includes('cluster config mismatch') &&
          line.includes(describeMembers(list.map((m) => ({ ...m, client_port: 0 })))) &&
          line.includes(describeMembers(list.slice(0, 2).map((m) => ({ ...m, client_port: 0 })))),
      );
    await waitFor('both sides name both member lists', () => mismatch(a.log) && mismatch(b.log));
    a.transport.send(2, vote(1));
    b.transport.send(1, vote(2));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(a.received.length, 0, 'no frame crossed');
    assert.equal(b.received.length, 0, 'no frame crossed');
    const errors = a.log.filter((line) => line.includes('cluster config mismatch'));
    assert.ok(errors.length <= 2, `logged once per direction, not per redial: ${errors.length}`);
  });
}

test('open mode with the handshake on: a bare-frame (seed) peer is still served', async () => {
  const list = await members(2);
  const a = await startNode(1, list, null);
  const seed = new RawSocket(list[0]!.raft_port);
  await seed.connected();
  seed.socket.write(encodeMessage(vote(2, 3)));
  await waitFor('bare request delivered', () => a.received.length === 1);
  assert.deepEqual(a.received[0], { from: 2, message: vote(2, 3) });
});

/**
 * A strict seed-format peer (id 2) listening on its Raft port: it closes any connection whose first
 * frame is not a Raft message (types 1..8), and answers a Raft frame with a bare vote response on
 * the same connection.
 */
const GRANTED: RaftMessage = { type: MessageType.RequestVoteResponse, term: 4, vote_granted: true };

async function strictSeedPeer(port: number): Promise<{ first_types: number[] }> {
  const seen = { first_types: [] as number[] };
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    let first = true;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!first || buffered.length < 4) return;
      first = false;
      const type = buffered.readUInt32LE(0);
      seen.first_types.push(type);
      if (type < 1 || type > 8) socket.destroy();
      else socket.write(encodeMessage(GRANTED));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, HOST, resolve));
  onCleanup(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return seen;
}

test('peer_hello off: a strict bare-frame peer that would refuse a Hello is served', async () => {
  const list = await members(2);
  const seed = await strictSeedPeer(list[1]!.raft_port);
  const a = await startNode(1, list, null, false);
  // A message before the link is up is dropped (Raft retries): send until one arrives.
  await waitFor('a frame reached the seed peer', () => {
    if (seed.first_types.length === 0) a.transport.send(2, vote(1, 4));
    return seed.first_types.length > 0;
  });
  await waitFor('the seed peer answered', () => a.received.length === 1);
  assert.deepEqual(a.received[0], { from: 2, message: GRANTED });
  assert.deepEqual(seed.first_types, [MessageType.RequestVoteRequest], 'a bare frame came first');
});

test('peer_hello on (default): a strict seed peer gets a Hello first, refuses it', async () => {
  const list = await members(2);
  const seed = await strictSeedPeer(list[1]!.raft_port);
  const a = await startNode(1, list, null);
  await waitFor('the seed peer saw a first frame', () => {
    if (seed.first_types.length === 0) a.transport.send(2, vote(1, 4));
    return seed.first_types.length > 0;
  });
  assert.equal(seed.first_types[0], 9, 'Hello (type 9) first');
  assert.equal(a.received.length, 0);
});

test('a refused message (poison entry) closes its connection and never reaches Raft', async () => {
  const list = await members(2);
  const a = await startNode(1, list, null);
  const peer = new RawSocket(list[0]!.raft_port);
  await peer.connected();
  peer.socket.write(
    encodeMessage({
      type: MessageType.AppendEntriesRequest,
      term: 1,
      leader_id: 2,
      prev_log_index: 0,
      prev_log_term: 0,
      leader_commit: 0,
      seq: 1,
      entries: [{ term: 1, data: Uint8Array.from([0xee]) }],
    }),
  );
  await waitFor('connection closed', () => peer.closed);
  assert.equal(a.received.length, 0);
  assert.ok(a.log.some((line) => /refused message type 3: poison entry/.test(line)));
});

test('with a secret: a frame naming another id than the handshake proved is refused', async () => {
  const list = await members(3);
  const a = await startNode(1, list, SECRET);
  // A real member (node 2, it holds the secret) authenticates, then names node 3 in a request.
  const handshake = new PeerHandshake(handshakeFor(2, list, SECRET), 'dialer', 1);
  const socket = new RawSocket(list[0]!.raft_port);
  await socket.connected();
  socket.socket.on('data', (chunk: Buffer) => {
    const result = handshake.push(chunk);
    for (const frame of handshake.takeOutgoing()) socket.socket.write(frame);
    if (result.kind === 'done') {
      socket.socket.write(encodeMessage(vote(2, 1)));
      socket.socket.write(encodeMessage(vote(3, 2)));
    }
  });
  for (const frame of handshake.takeOutgoing()) socket.socket.write(frame);
  await waitFor('connection closed', () => socket.closed);
  assert.deepEqual(
    a.received.map((r) => r.from),
    [2],
    'the frame in its own name got through, the one naming node 3 did not',
  );
  assert.ok(a.log.some((line) => /request names node id 3 on a connection from node 2/.test(line)));
});

test('a TransferVoteRequest travels as a request and its answer comes back', async () => {
  const list = await members(2);
  const a = await startNode(1, list, SECRET);
  const b = await startNode(2, list, SECRET);
  await waitFor('authenticated links up', () => linksUp([a, b]));
  const transfer_vote: RaftMessage = {
    type: MessageType.TransferVoteRequest,
    term: 4,
    candidate_id: 1,
    last_log_index: 0,
    last_log_term: 0,
  };
  assert.ok(a.transport.send(2, transfer_vote));
  await waitFor('transfer vote delivered', () => b.received.length === 1);
  assert.deepEqual(b.received[0], { from: 1, message: transfer_vote });
  const reply: RaftMessage = { type: MessageType.RequestVoteResponse, term: 4, vote_granted: true };
  assert.ok(b.transport.send(1, reply), 'the reply has a route: the request made one');
  await waitFor('reply delivered', () => a.received.length === 1);
});
