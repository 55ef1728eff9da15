/**
 * The Raft port's incarnation check on real sockets: a peer's first sighting is durable before any
 * of its Raft frames is read, and a node back with a new data directory is refused by both sides,
 * logged, with no Raft message crossing.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerHandshake, type PeerIncarnationMemory } from '../../src/server/peer_handshake';
import { encodeMessage } from '../../src/wire/codec';
import {
  closeAll,
  handshakeFor,
  members,
  RawSocket,
  SECRET,
  startPeerNode,
  vote,
} from '../support/peer_nodes';
import { waitFor } from '../support/wait';

const OLD_1 = Buffer.alloc(16, 0x11);
const NEW_1 = Buffer.alloc(16, 0x1f);
const INC_2 = Buffer.alloc(16, 0x22);

afterEach(closeAll);

/** A memory whose first sightings become durable only when the test says so. */
class GatedMemory implements PeerIncarnationMemory {
  readonly known = new Map<number, Buffer>();
  readonly remember_calls: number[] = [];
  private readonly pending = new Map<number, Promise<void>>();
  private open_gate: () => void = () => undefined;
  private readonly gate: Promise<void>;
  durable = false;

  constructor(known: Array<[number, Buffer]>, gated: boolean) {
    for (const [id, incarnation] of known) this.known.set(id, incarnation);
    this.gate = gated ? new Promise((resolve) => (this.open_gate = resolve)) : Promise.resolve();
  }

  recall(id: number): Buffer | null {
    return this.known.get(id) ?? null;
  }

  remember(id: number, incarnation: Buffer): 'durable' | Promise<void> {
    this.remember_calls.push(id);
    const known = this.known.get(id);
    if (known !== undefined && !known.equals(incarnation)) return Promise.reject(new Error('no'));
    if (known !== undefined && !this.pending.has(id)) return 'durable';
    this.known.set(id, incarnation);
    const written =
      this.pending.get(id) ??
      this.gate.then(() => {
        this.durable = true;
        this.pending.delete(id);
      });
    this.pending.set(id, written);
    return written;
  }

  openGate(): void {
    this.open_gate();
  }
}

test('a first sighting is durable before a Raft frame of that peer is read', async () => {
  const list = await members(2);
  const memory = new GatedMemory([], true);
  const delivered_before_durable: boolean[] = [];
  const two = await startPeerNode(2, list, handshakeFor(2, list, null, { own: INC_2, memory }), {
    on_message: () => delivered_before_durable.push(!memory.durable),
  });
  // Node 1's Hello and a vote request in one write: the vote arrives with the Hello.
  const hello = new PeerHandshake(
    handshakeFor(1, list, null, { own: NEW_1, memory: new GatedMemory([], false) }),
    'dialer',
    2,
  ).takeOutgoing();
  const raw = new RawSocket(list[1]?.raft_port ?? 0);
  raw.socket.on('data', () => undefined); // node 2's answering Hello
  raw.socket.write(Buffer.concat([...hello, encodeMessage(vote(1))]));
  await waitFor('node 2 saw node 1 for the first time', () => memory.remember_calls.includes(1));
  // Nothing to wait for but time: the vote is in node 2's socket buffer and must stay there.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(two.received.length, 0, 'no Raft message before the sighting is durable');
  memory.openGate();
  await waitFor('the held vote delivered', () => two.received.length === 1);
  assert.deepEqual(two.received[0], { from: 1, message: vote(1) });
  assert.deepEqual(delivered_before_durable, [false]);
  assert.deepEqual(memory.known.get(1), NEW_1);
});

for (const secret of [null, SECRET]) {
  const mode = secret === null ? 'open' : 'secret';
  test(`${mode} mode: a node back with a new data directory is refused by both sides`, async () => {
    const list = await members(2);
    // Node 1 lost its data directory: a new incarnation, no memory of node 2.
    const one = await startPeerNode(
      1,
      list,
      handshakeFor(1, list, secret, { own: NEW_1, memory: new GatedMemory([], false) }),
    );
    const two = await startPeerNode(
      2,
      list,
      handshakeFor(2, list, secret, { own: INC_2, memory: new GatedMemory([[1, OLD_1]], false) }),
    );
    const refused = (log: string[], pattern: RegExp) =>
      log.some((line) => line.startsWith('ERROR') && pattern.test(line));
    await waitFor(
      'both sides logged the refusal, in both directions',
      () =>
        refused(two.log, /inbound .*node 1 came back with a new data directory/) &&
        refused(two.log, /outbound to peer 1 .*node 1 came back with a new data directory/) &&
        refused(one.log, /inbound .*node 2 refuses this node: it remembers node 1 as/) &&
        refused(one.log, /outbound to peer 2 .*node 2 refuses this node: it remembers node 1/),
    );
    one.transport.send(2, vote(1));
    two.transport.send(1, vote(2));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(one.received.length, 0, 'no frame crossed');
    assert.equal(two.received.length, 0, 'no frame crossed');
    const errors = two.log.filter((line) => line.includes('came back'));
    assert.ok(errors.length <= 2, `logged once per direction, not per redial: ${errors.length}`);
  });
}
