import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeAddress } from '../../src/config/config';
import { clusterFingerprint, describeMembers } from '../../src/config/fingerprint';
import {
  HandshakeType,
  PeerHandshake,
  type HandshakeResult,
  type HandshakeSettings,
} from '../../src/server/peer_handshake';
import { LIMITS } from '../../src/util/limits';
import { encodeMessage } from '../../src/wire/codec';
import { MessageType } from '../../src/raft/protocol';

const NODES: NodeAddress[] = [1, 2, 3].map((id) => ({
  id,
  host: '127.0.0.1',
  client_port: 8000 + id,
  raft_port: 7000 + id,
}));
const SECRET = Buffer.from('correct horse battery staple');

function settings(
  self_id: number,
  secret: Buffer | null,
  nodes: NodeAddress[] = NODES,
): HandshakeSettings {
  return {
    self_id,
    fingerprint: clusterFingerprint(nodes, ''),
    members: describeMembers(nodes),
    secret,
    peer_ids: new Set(nodes.map((n) => n.id).filter((id) => id !== self_id)),
  };
}

/** Runs the exchange to quiescence; returns each side's last result. */
function exchange(
  dialer: PeerHandshake,
  acceptor: PeerHandshake,
  after_dialer_done: Buffer = Buffer.alloc(0),
  chunking: (bytes: Buffer) => Buffer[] = (bytes) => [bytes],
): { dialer: HandshakeResult; acceptor: HandshakeResult } {
  let dialer_result: HandshakeResult = { kind: 'pending' };
  let acceptor_result: HandshakeResult = { kind: 'pending' };
  for (let round = 0; round < 10; round++) {
    let to_acceptor = Buffer.concat(dialer.takeOutgoing());
    if (dialer_result.kind === 'done' && after_dialer_done.length > 0) {
      to_acceptor = Buffer.concat([to_acceptor, after_dialer_done]);
      after_dialer_done = Buffer.alloc(0);
    }
    if (to_acceptor.length > 0 && acceptor_result.kind === 'pending') {
      for (const chunk of chunking(to_acceptor)) {
        if (acceptor_result.kind === 'pending') acceptor_result = acceptor.push(chunk);
      }
    }
    const to_dialer = Buffer.concat(acceptor.takeOutgoing());
    if (to_dialer.length > 0 && dialer_result.kind === 'pending') {
      for (const chunk of chunking(to_dialer)) {
        if (dialer_result.kind === 'pending') dialer_result = dialer.push(chunk);
      }
    }
    if (to_acceptor.length === 0 && to_dialer.length === 0 && after_dialer_done.length === 0) break;
  }
  return { dialer: dialer_result, acceptor: acceptor_result };
}

const RAFT_FRAME = encodeMessage({ type: MessageType.TimeoutNow, term: 3, leader_id: 1 });

test('open mode: a Hello is answered, the dialer identified, trailing Raft bytes pass on', () => {
  const dialer = new PeerHandshake(settings(1, null), 'dialer', 2);
  assert.equal(dialer.may_send_raft, true, 'open mode never waits');
  const acceptor = new PeerHandshake(settings(2, null), 'acceptor', null);
  const hello = Buffer.concat(dialer.takeOutgoing());
  const result = acceptor.push(Buffer.concat([hello, RAFT_FRAME]));
  assert.equal(result.kind, 'done');
  if (result.kind !== 'done') return;
  assert.equal(result.peer_id, 1);
  assert.deepEqual(result.rest, RAFT_FRAME);
  const reply = Buffer.concat(acceptor.takeOutgoing());
  assert.equal(reply.readUInt32LE(0), HandshakeType.Hello);
  const dialer_result = dialer.push(Buffer.concat([reply, RAFT_FRAME]));
  assert.equal(dialer_result.kind, 'done');
  if (dialer_result.kind === 'done') assert.deepEqual(dialer_result.rest, RAFT_FRAME);
});

test('open mode: a bare-frame (seed) peer needs no Hello, in either direction', () => {
  const acceptor = new PeerHandshake(settings(2, null), 'acceptor', null);
  const result = acceptor.push(RAFT_FRAME);
  assert.deepEqual(result, {
    kind: 'done',
    peer_id: null,
    rest: RAFT_FRAME,
    peer_incarnation: null,
  });
  assert.deepEqual(acceptor.takeOutgoing(), [], 'nothing a seed decoder would choke on');
  const dialer = new PeerHandshake(settings(1, null), 'dialer', 2);
  dialer.takeOutgoing();
  const first = dialer.push(RAFT_FRAME.subarray(0, 3)); // even split inside the header
  assert.equal(first.kind, 'pending');
  const second = dialer.push(RAFT_FRAME.subarray(3));
  assert.deepEqual(second, { kind: 'done', peer_id: 2, rest: RAFT_FRAME, peer_incarnation: null });
});

test('a config mismatch fails on both sides, each naming both member lists', () => {
  const two_nodes = NODES.slice(0, 2);
  const dialer = new PeerHandshake(settings(1, null, two_nodes), 'dialer', 2);
  const acceptor = new PeerHandshake(settings(2, null), 'acceptor', null);
  const results = exchange(dialer, acceptor);
  for (const result of [results.dialer, results.acceptor]) {
    assert.equal(result.kind, 'failed');
    if (result.kind !== 'failed') continue;
    assert.equal(result.mismatch, true);
    assert.match(result.reason, /cluster config mismatch/);
    assert.ok(result.reason.includes(describeMembers(NODES)));
    assert.ok(result.reason.includes(describeMembers(two_nodes)));
  }
});

test('the fingerprint depends on members, ports and cluster name, not on their order', () => {
  const base = clusterFingerprint(NODES, '');
  assert.deepEqual(clusterFingerprint([...NODES].reverse(), ''), base);
  assert.notDeepEqual(clusterFingerprint(NODES.slice(0, 2), ''), base);
  assert.notDeepEqual(clusterFingerprint(NODES, 'blue'), base);
  const moved = NODES.map((n) => (n.id === 3 ? { ...n, raft_port: 7999 } : n));
  assert.notDeepEqual(clusterFingerprint(moved, ''), base);
});

test('secret mode: mutual authentication, byte by byte, then Raft bytes flow', () => {
  const dialer = new PeerHandshake(settings(1, SECRET), 'dialer', 3);
  const acceptor = new PeerHandshake(settings(3, SECRET), 'acceptor', null);
  assert.equal(dialer.may_send_raft, false);
  const byte_by_byte = (bytes: Buffer): Buffer[] =>
    [...bytes].map((_, i) => bytes.subarray(i, i + 1));
  const results = exchange(dialer, acceptor, RAFT_FRAME, byte_by_byte);
  assert.equal(results.dialer.kind, 'done');
  assert.equal(dialer.may_send_raft, true);
  assert.equal(results.acceptor.kind, 'done');
  if (results.acceptor.kind !== 'done') return;
  assert.equal(results.acceptor.peer_id, 1, 'the peer id is fixed by the handshake');
});

test('secret mode: the Raft frame that follows the confirm in one chunk is handed on', () => {
  const dialer = new PeerHandshake(settings(1, SECRET), 'dialer', 3);
  const acceptor = new PeerHandshake(settings(3, SECRET), 'acceptor', null);
  const results = exchange(dialer, acceptor, RAFT_FRAME);
  assert.equal(results.acceptor.kind, 'done');
  if (results.acceptor.kind === 'done') assert.deepEqual(results.acceptor.rest, RAFT_FRAME);
});

test('secret mode: a different secret fails with no Raft byte read', () => {
  const dialer = new PeerHandshake(
    settings(1, Buffer.from('another secret of 16+ bytes')),
    'dialer',
    2,
  );
  const acceptor = new PeerHandshake(settings(2, SECRET), 'acceptor', null);
  const results = exchange(dialer, acceptor, RAFT_FRAME);
  assert.equal(results.dialer.kind, 'failed');
  if (results.dialer.kind === 'failed') assert.match(results.dialer.reason, /wrong MAC/);
  assert.equal(results.acceptor.kind, 'pending', 'still waiting for a confirm it never gets');
});

test('secret mode: a confirm recorded in one session is refused by the next (fresh nonces)', () => {
  const dialer = new PeerHandshake(settings(1, SECRET), 'dialer', 2);
  const acceptor = new PeerHandshake(settings(2, SECRET), 'acceptor', null);
  const challenge = Buffer.concat(dialer.takeOutgoing());
  acceptor.push(challenge);
  dialer.push(Buffer.concat(acceptor.takeOutgoing()));
  const confirm = Buffer.concat(dialer.takeOutgoing());
  // Replay the recorded challenge and confirm to a fresh acceptor.
  const victim = new PeerHandshake(settings(2, SECRET), 'acceptor', null);
  assert.equal(victim.push(challenge).kind, 'pending');
  const result = victim.push(confirm);
  assert.equal(result.kind, 'failed');
  if (result.kind === 'failed') assert.match(result.reason, /wrong MAC/);
});

test('secret mode: the acceptor refuses bare frames, open Hellos, strangers and floods', () => {
  const open_hello = Buffer.concat(
    new PeerHandshake(settings(1, null), 'dialer', 2).takeOutgoing(),
  );
  const stranger = Buffer.concat(
    new PeerHandshake({ ...settings(1, SECRET), self_id: 9 }, 'dialer', 2).takeOutgoing(),
  );
  const flood = Buffer.alloc(LIMITS.peer_handshake_bytes_max + 16);
  flood.writeUInt32LE(HandshakeType.AuthChallenge, 0);
  flood.writeUInt32LE(0xffff, 4);
  const cases: [string, Buffer, RegExp][] = [
    ['bare RequestVote', RAFT_FRAME, /before completing the handshake/],
    ['open Hello', open_hello, /requires authentication/],
    ['unknown node id', stranger, /not one of our peers/],
    ['oversized challenge', flood, /claims 65535 bytes/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const acceptor = new PeerHandshake(settings(2, SECRET), 'acceptor', null);
    const result = acceptor.push(bytes);
    assert.equal(result.kind, 'failed', name);
    if (result.kind === 'failed') assert.match(result.reason, pattern, name);
    assert.deepEqual(acceptor.takeOutgoing(), [], `${name}: no answer, no MAC`);
  }
});

test('secret mode: a dialer answered by another node id refuses it', () => {
  const dialer = new PeerHandshake(settings(1, SECRET), 'dialer', 2);
  const impostor = new PeerHandshake(settings(3, SECRET), 'acceptor', null);
  const results = exchange(dialer, impostor);
  assert.equal(results.dialer.kind, 'failed');
  if (results.dialer.kind === 'failed')
    assert.match(results.dialer.reason, /answered as node 3, but we dialled node 2/);
});
