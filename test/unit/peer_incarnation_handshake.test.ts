/**
 * The handshake's incarnation check (server/peer_handshake.ts): a peer presenting the remembered
 * incarnation is accepted, one that came back with a new data directory is refused by both sides
 * with a message saying what to do, in open and secret mode and whichever side dials.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeAddress } from '../../src/config/config';
import { clusterFingerprint, describeMembers } from '../../src/config/fingerprint';
import {
  HandshakeType,
  PeerHandshake,
  type HandshakeResult,
  type HandshakeSettings,
  type PeerIncarnationMemory,
} from '../../src/server/peer_handshake';

const NODES: NodeAddress[] = [1, 2].map((id) => ({
  id,
  host: '127.0.0.1',
  client_port: 8000 + id,
  raft_port: 7000 + id,
}));
const SECRET = Buffer.from('correct horse battery staple');
const OLD_1 = Buffer.alloc(16, 0x11);
const NEW_1 = Buffer.alloc(16, 0x1f);
const INC_2 = Buffer.alloc(16, 0x22);

/** A memory that records sightings at once (the transport's durability wait is tested there). */
function memory(known: Array<[number, Buffer]> = []): PeerIncarnationMemory {
  const map = new Map(known);
  return {
    recall: (id) => map.get(id) ?? null,
    remember: (id, incarnation) => {
      map.set(id, incarnation);
      return 'durable';
    },
  };
}

function settings(
  self_id: number,
  own: Buffer,
  remembered: PeerIncarnationMemory,
  secret: Buffer | null,
  check = true,
): HandshakeSettings {
  return {
    self_id,
    fingerprint: clusterFingerprint(NODES, ''),
    members: describeMembers(NODES),
    secret,
    peer_ids: new Set([self_id === 1 ? 2 : 1]),
    incarnation: { own, memory: remembered, check },
  };
}

/** Runs the exchange to quiescence; returns each side's last result. */
function exchange(
  dialer: PeerHandshake,
  acceptor: PeerHandshake,
): { dialer: HandshakeResult; acceptor: HandshakeResult } {
  let dialer_result: HandshakeResult = { kind: 'pending' };
  let acceptor_result: HandshakeResult = { kind: 'pending' };
  for (let round = 0; round < 10; round++) {
    const to_acceptor = Buffer.concat(dialer.takeOutgoing());
    if (to_acceptor.length > 0 && acceptor_result.kind === 'pending')
      acceptor_result = acceptor.push(to_acceptor);
    const to_dialer = Buffer.concat(acceptor.takeOutgoing());
    if (to_dialer.length > 0 && dialer_result.kind === 'pending')
      dialer_result = dialer.push(to_dialer);
    if (to_acceptor.length === 0 && to_dialer.length === 0) break;
  }
  return { dialer: dialer_result, acceptor: acceptor_result };
}

function reasonOf(result: HandshakeResult): string {
  assert.equal(result.kind, 'failed', JSON.stringify(result));
  if (result.kind !== 'failed') return '';
  assert.equal(result.mismatch, true, 'logged as an error');
  return result.reason;
}

const CAME_BACK = new RegExp(
  [
    'node 1 came back with a new data directory \\(incarnation (?:1f){16}, was 1{32}\\): ',
    'it lost its log and its vote and cannot rejoin as node 1; replace it: on the leader ',
    '`RAFT\\.NODE REMOVE 1`, then add the machine as a new node ',
    '\\(README: Replace a failed node\\)',
  ].join(''),
);
const WE_CAME_BACK = new RegExp(
  [
    'node 2 refuses this node: it remembers node 1 as incarnation 1{32}, but this data ',
    'directory is incarnation (?:1f){16}: this node lost its data directory .*',
    '`RAFT\\.NODE REMOVE 1`',
  ].join(''),
);

for (const secret of [null, SECRET]) {
  const mode = secret === null ? 'open' : 'secret';

  test(`${mode} mode: the remembered incarnation is accepted, either side dialling`, () => {
    for (const node_1_dials of [true, false]) {
      const one = settings(1, OLD_1, memory([[2, INC_2]]), secret);
      const two = settings(2, INC_2, memory([[1, OLD_1]]), secret);
      const results = node_1_dials
        ? exchange(new PeerHandshake(one, 'dialer', 2), new PeerHandshake(two, 'acceptor', null))
        : exchange(new PeerHandshake(two, 'dialer', 1), new PeerHandshake(one, 'acceptor', null));
      const [result_1, result_2] = node_1_dials
        ? [results.dialer, results.acceptor]
        : [results.acceptor, results.dialer];
      assert.equal(result_1.kind, 'done');
      assert.equal(result_2.kind, 'done');
      if (result_1.kind === 'done') assert.deepEqual(result_1.peer_incarnation, INC_2);
      if (result_2.kind === 'done') assert.deepEqual(result_2.peer_incarnation, OLD_1);
    }
  });

  test(`${mode} mode: a first sighting is accepted and handed on to be remembered`, () => {
    const results = exchange(
      new PeerHandshake(settings(1, NEW_1, memory(), secret), 'dialer', 2),
      new PeerHandshake(settings(2, INC_2, memory(), secret), 'acceptor', null),
    );
    assert.equal(results.dialer.kind, 'done');
    assert.equal(results.acceptor.kind, 'done');
    if (results.acceptor.kind === 'done')
      assert.deepEqual(results.acceptor.peer_incarnation, NEW_1);
  });

  test(`${mode} mode: a node back with a new data directory is refused by both sides`, () => {
    // Node 1 lost its directory: a new incarnation, and it has forgotten node 2 as well.
    for (const fresh_node_dials of [true, false]) {
      const fresh = settings(1, NEW_1, memory(), secret);
      const peer = settings(2, INC_2, memory([[1, OLD_1]]), secret);
      const results = fresh_node_dials
        ? exchange(new PeerHandshake(fresh, 'dialer', 2), new PeerHandshake(peer, 'acceptor', null))
        : exchange(
            new PeerHandshake(peer, 'dialer', 1),
            new PeerHandshake(fresh, 'acceptor', null),
          );
      const [fresh_result, peer_result] = fresh_node_dials
        ? [results.dialer, results.acceptor]
        : [results.acceptor, results.dialer];
      assert.match(reasonOf(peer_result), CAME_BACK, `fresh node dials: ${fresh_node_dials}`);
      assert.match(reasonOf(fresh_result), WE_CAME_BACK, `fresh node dials: ${fresh_node_dials}`);
    }
  });

  test(`${mode} mode: with the check off (test fault) the new data directory is accepted`, () => {
    const results = exchange(
      new PeerHandshake(settings(1, NEW_1, memory(), secret, false), 'dialer', 2),
      new PeerHandshake(settings(2, INC_2, memory([[1, OLD_1]]), secret, false), 'acceptor', null),
    );
    assert.equal(results.dialer.kind, 'done');
    assert.equal(results.acceptor.kind, 'done');
  });
}

test('open mode: a refused dialer\u2019s Raft bytes behind its Hello never come out', () => {
  const dialer = new PeerHandshake(settings(1, NEW_1, memory(), null), 'dialer', 2);
  const acceptor = new PeerHandshake(
    settings(2, INC_2, memory([[1, OLD_1]]), null),
    'acceptor',
    null,
  );
  const raft = Buffer.from([1, 0, 0, 0, 16, 0, 0, 0, ...Buffer.alloc(16)]);
  const result = acceptor.push(Buffer.concat([...dialer.takeOutgoing(), raft]));
  assert.equal(result.kind, 'failed');
  // The answer still goes out, so that the dialer learns why and logs it.
  const answer = Buffer.concat(acceptor.takeOutgoing());
  assert.equal(answer.readUInt32LE(0), HandshakeType.Hello);
  assert.match(reasonOf(dialer.push(answer)), WE_CAME_BACK);
});

test('secret mode: the MAC covers the incarnations (a rewritten one fails authentication)', () => {
  const dialer = new PeerHandshake(settings(1, OLD_1, memory([[2, INC_2]]), SECRET), 'dialer', 2);
  const acceptor = new PeerHandshake(
    settings(2, INC_2, memory([[1, OLD_1]]), SECRET),
    'acceptor',
    null,
  );
  acceptor.push(Buffer.concat(dialer.takeOutgoing()));
  const response = Buffer.concat(acceptor.takeOutgoing());
  assert.equal(response.readUInt32LE(0), HandshakeType.AuthResponse);
  // [header 8][node_id 4][fingerprint 32][incarnation 16][peer_incarnation 16]: flip one bit of
  // what the acceptor says it remembers of the dialer.
  response[8 + 4 + 32 + 16] = (response[8 + 4 + 32 + 16] as number) ^ 1;
  const result = dialer.push(response);
  assert.equal(result.kind, 'failed');
  if (result.kind === 'failed') assert.match(result.reason, /wrong MAC/);
});
