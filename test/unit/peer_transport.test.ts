import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import {
  PeerTransport,
  type PeerAddress,
  type PeerStatus,
  type PeerTransportOptions,
} from '../../src/server/peer_transport';
import { encodeMessage, FrameDecoder } from '../../src/wire/codec';
import { MessageType, type AppendEntriesRequest, type RaftMessage } from '../../src/raft/protocol';
import { LIMITS } from '../../src/util/limits';
import { createLogger, SILENT_LOGGER, type Logger } from '../../src/util/log';
import { leakedHandles, waitFor } from '../support/wait';
import { countSocketWrites } from '../support/socket_writes';
import { freePort } from '../support/ports';
import { appendEntriesRequest } from '../support/raft_messages';

const HOST = '127.0.0.1';
const WAIT_MS = 10_000;

interface Received {
  from: number;
  message: RaftMessage;
}

interface Node {
  transport: PeerTransport;
  received: Received[];
}

/** Everything a test opens, closed after it so that a failing test leaves no handles either. */
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
  await waitFor('no sockets, servers or timers left', () => leakedHandles().length === 0);
});

function verboseLogger(): Logger {
  return process.env.NET_TEST_VERBOSE === '1' ? createLogger('test', 'debug') : SILENT_LOGGER;
}

async function startNode(
  self_id: number,
  listen_port: number,
  peers: PeerAddress[],
  overrides: Partial<PeerTransportOptions> = {},
): Promise<Node> {
  const received: Received[] = [];
  const transport = new PeerTransport(
    {
      self_id,
      listen_host: HOST,
      listen_port,
      peers,
      logger: verboseLogger(),
      backoff_base_ms: 10,
      backoff_max_ms: 100,
      ...overrides,
    },
    (from, message) => received.push({ from, message }),
  );
  cleanups.push(() => transport.close());
  await transport.start();
  return { transport, received };
}

function peerStatus(transport: PeerTransport, id: number): PeerStatus {
  const status = transport.status().find((entry) => entry.id === id);
  assert.ok(status !== undefined, `no status for peer ${id}`);
  return status;
}

function voteRequest(candidate_id: number, term = 1): RaftMessage {
  return {
    type: MessageType.RequestVoteRequest,
    term,
    candidate_id,
    last_log_index: 0,
    last_log_term: 0,
  };
}

function voteResponse(term = 1, vote_granted = true): RaftMessage {
  return { type: MessageType.RequestVoteResponse, term, vote_granted };
}

function appendRequest(leader_id: number, data_bytes = 0, seq = 1): AppendEntriesRequest {
  const entries = data_bytes === 0 ? [] : [{ term: 1, data: new Uint8Array(data_bytes) }];
  return appendEntriesRequest({ leader_id, seq, entries });
}

function appendResponse(follower_id: number, ack: number): RaftMessage {
  return {
    type: MessageType.AppendEntriesResponse,
    term: 1,
    follower_id,
    log_index: 0,
    success: true,
    follower_commit: 0,
    ack,
  };
}

/** A raw TCP client on a transport's Raft port that decodes what it receives. */
class RawPeer {
  readonly socket: net.Socket;
  readonly received: RaftMessage[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();

  constructor(port: number) {
    this.socket = net.connect({ host: HOST, port });
    this.socket.on('data', (chunk: Buffer) => this.received.push(...this.decoder.push(chunk)));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
    });
    cleanups.push(async () => {
      if (this.closed) return;
      this.socket.destroy();
      await waitFor('raw peer socket closed', () => this.closed);
    });
  }

  async connected(): Promise<void> {
    if (!this.socket.connecting) return;
    await new Promise<void>((resolve) => this.socket.once('connect', () => resolve()));
  }

  send(message: RaftMessage): void {
    this.socket.write(encodeMessage(message));
  }
}

async function threeNodes(): Promise<[Node, Node, Node]> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const addresses: PeerAddress[] = ports.map((raft_port, index) => ({
    id: index + 1,
    host: HOST,
    raft_port,
  }));
  const nodes: Node[] = [];
  for (const address of addresses)
    nodes.push(await startNode(address.id, address.raft_port, addresses));
  const [a, b, c] = nodes;
  assert.ok(a !== undefined && b !== undefined && c !== undefined);
  await waitFor('every outbound link connected', () =>
    nodes.every((node) =>
      node.transport.status().every((status) => status.outbound === 'connected'),
    ),
  );
  return [a, b, c];
}

test('three transports: requests go out, responses come back on the inbound link', async () => {
  const [a, b, c] = await threeNodes();

  // Nobody has asked C anything yet, so C has no connection to answer B on: responses never use
  // outbound links.
  assert.equal(c.transport.send(2, voteResponse()), false);
  assert.equal(peerStatus(c.transport, 2).dropped_messages, 1);
  assert.equal(peerStatus(c.transport, 2).inbound_connected, false);

  assert.equal(a.transport.send(2, voteRequest(1, 5)), true);
  assert.equal(a.transport.send(3, voteRequest(1, 5)), true);
  await waitFor(
    'B and C receive the vote request',
    () => b.received.length === 1 && c.received.length === 1,
  );
  assert.deepEqual(b.received[0], { from: 1, message: voteRequest(1, 5) });
  assert.deepEqual(c.received[0], { from: 1, message: voteRequest(1, 5) });
  assert.equal(peerStatus(b.transport, 1).inbound_connected, true);

  assert.equal(b.transport.send(1, voteResponse(5, true)), true);
  assert.equal(c.transport.send(1, voteResponse(5, false)), true);
  await waitFor('A receives both responses', () => a.received.length === 2);
  const by_sender = new Map(a.received.map((entry) => [entry.from, entry.message]));
  assert.deepEqual(by_sender.get(2), voteResponse(5, true));
  assert.deepEqual(by_sender.get(3), voteResponse(5, false));

  // B leads: AppendEntries to C, C acknowledges on B's connection.
  assert.equal(b.transport.send(3, appendRequest(2, 100, 7)), true);
  await waitFor('C receives AppendEntries', () => c.received.length === 2);
  assert.deepEqual(c.received[1], { from: 2, message: appendRequest(2, 100, 7) });
  assert.equal(c.transport.send(2, appendResponse(3, 7)), true);
  await waitFor('B receives the AppendEntries response', () => b.received.length === 2);
  assert.deepEqual(b.received[1], { from: 3, message: appendResponse(3, 7) });
});

test('a response goes back on the newest inbound link the peer sent a request on', async () => {
  const unreachable = await freePort();
  const node = await startNode(1, 0, [{ id: 2, host: HOST, raft_port: unreachable }]);
  const port = node.transport.bound_port;

  const first = new RawPeer(port);
  await first.connected();
  first.send(voteRequest(2, 3));
  await waitFor('request on the first connection delivered', () => node.received.length === 1);
  assert.deepEqual(node.received[0], { from: 2, message: voteRequest(2, 3) });
  assert.equal(node.transport.send(2, voteResponse(3)), true);
  await waitFor('response on the first connection', () => first.received.length === 1);
  assert.deepEqual(first.received[0], voteResponse(3));

  const second = new RawPeer(port);
  await second.connected();
  second.send(appendRequest(2, 0, 11));
  await waitFor('request on the second connection delivered', () => node.received.length === 2);
  assert.equal(node.transport.send(2, appendResponse(1, 11)), true);
  await waitFor('response on the second connection', () => second.received.length === 1);
  assert.deepEqual(second.received[0], appendResponse(1, 11));
  assert.equal(first.received.length, 1);

  // Requests to 2 need our own outbound link, which cannot connect: dropped, never sent on an
  // inbound one.
  assert.equal(node.transport.send(2, voteRequest(1)), false);

  second.socket.destroy();
  await waitFor('second connection gone', () => second.closed);
  await waitFor('route falls back to the first connection', () =>
    node.transport.send(2, appendResponse(1, 12)),
  );
  await waitFor('fallback response on the first connection', () => first.received.length === 2);
  assert.deepEqual(first.received[1], appendResponse(1, 12));

  first.socket.destroy();
  await waitFor('no inbound route left', () => !peerStatus(node.transport, 2).inbound_connected);
  assert.equal(node.transport.send(2, voteResponse(3)), false);
});

test('misbehaving inbound connections are closed; the transport serves the others', async () => {
  const unreachable = await freePort();
  const node = await startNode(1, 0, [
    { id: 2, host: HOST, raft_port: unreachable },
    { id: 3, host: HOST, raft_port: unreachable },
  ]);
  const port = node.transport.bound_port;
  const good = new RawPeer(port);
  await good.connected();

  const offenders: Array<[string, (peer: RawPeer) => void]> = [
    [
      'garbage bytes',
      (peer) => peer.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')),
    ],
    [
      'an oversized frame header',
      (peer) => peer.socket.write(Buffer.from([3, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f])),
    ],
    ['a response on an inbound connection', (peer) => peer.send(voteResponse())],
    ['an unknown sender id', (peer) => peer.send(voteRequest(9))],
    ['its own id as sender', (peer) => peer.send(voteRequest(1))],
    [
      'a sender id that changes',
      (peer) => {
        peer.send(voteRequest(2));
        peer.send(appendRequest(3));
      },
    ],
  ];
  for (const [what, misbehave] of offenders) {
    const offender = new RawPeer(port);
    await offender.connected();
    misbehave(offender);
    await waitFor(`connection closed after ${what}`, () => offender.closed);

    const before = node.received.length;
    good.send(appendRequest(3, 10, before));
    await waitFor(`good connection still served after ${what}`, () =>
      node.received.some(
        (entry) =>
          entry.message.type === MessageType.AppendEntriesRequest && entry.message.seq === before,
      ),
    );
    assert.equal(good.closed, false);
  }
  // The id-changing connection delivered its first, valid request before it was closed.
  assert.ok(
    node.received.some(
      (entry) => entry.from === 2 && entry.message.type === MessageType.RequestVoteRequest,
    ),
  );
  assert.ok(!node.received.some((entry) => entry.from === 9 || entry.from === 1));
});

test('at the inbound limit the oldest silent connection makes room; busy ones stay', async () => {
  const unreachable = await freePort();
  const node = await startNode(1, 0, [{ id: 2, host: HOST, raft_port: unreachable }]);
  const port = node.transport.bound_port;
  const open: RawPeer[] = [];
  for (let index = 0; index < LIMITS.peer_inbound_connections_max; index++)
    open.push(new RawPeer(port));
  await Promise.all(open.map((peer) => peer.connected()));
  const first = open[0];
  const last = open[open.length - 1];
  assert.ok(first !== undefined && last !== undefined);
  // A request on the newest accepted connection proves the server has accepted all of them; that
  // one is identified.
  last.send(voteRequest(2, 1));
  await waitFor('request on the last allowed connection', () => node.received.length === 1);

  // One more: the oldest connection that never sent a request is closed to make room, and the
  // newcomer is served.
  const newcomer = new RawPeer(port);
  await newcomer.connected();
  await waitFor('the oldest silent connection closed', () => first.closed);
  assert.equal(open.filter((peer) => peer.closed).length, 1);
  assert.ok(!last.closed, 'an identified peer connection is never evicted');
  newcomer.send(voteRequest(2, 2));
  await waitFor('the newcomer is served', () => node.received.length === 2);
  assert.equal(node.transport.send(2, voteResponse(1)), true);
  await waitFor('response on the newest request route', () => newcomer.received.length === 1);
});

test('a peer that is down at start is dialled with backoff until it comes up', async () => {
  const port_b = await freePort();
  const port_a = await freePort();
  const backoff_base_ms = 20;
  const addresses: PeerAddress[] = [
    { id: 1, host: HOST, raft_port: port_a },
    { id: 2, host: HOST, raft_port: port_b },
  ];
  const a = await startNode(1, port_a, addresses, { backoff_base_ms, backoff_max_ms: 80 });
  const started_ms = Date.now();
  assert.equal(a.transport.send(2, voteRequest(1)), false);

  await waitFor('three redials', () => peerStatus(a.transport, 2).reconnects >= 3);
  // Every delay is at least the base, so three redials cannot come sooner (no tight reconnect
  // loop).
  assert.ok(
    Date.now() - started_ms >= 3 * backoff_base_ms,
    `3 redials in ${Date.now() - started_ms} ms`,
  );
  assert.notEqual(peerStatus(a.transport, 2).outbound, 'connected');

  const b = await startNode(2, port_b, addresses);
  await waitFor(
    'A connects to B once B is up',
    () => peerStatus(a.transport, 2).outbound === 'connected',
  );
  await waitFor('B connects to A', () => peerStatus(b.transport, 1).outbound === 'connected');
  assert.equal(a.transport.send(2, voteRequest(1, 2)), true);
  await waitFor('B receives the request', () => b.received.length === 1);
  assert.equal(b.transport.send(1, voteResponse(2)), true);
  await waitFor('A receives the response', () => a.received.length === 1);
  assert.deepEqual(a.received[0], { from: 2, message: voteResponse(2) });
});

test('a peer that comes back with a request is dialled at once, not after backoff', async () => {
  const port_b = await freePort();
  const port_a = await freePort();
  const addresses: PeerAddress[] = [
    { id: 1, host: HOST, raft_port: port_a },
    { id: 2, host: HOST, raft_port: port_b },
  ];
  // A backs off for 30 s after its first failed dial: only the inbound request can bring the link
  // up in time.
  const a = await startNode(1, port_a, addresses, {
    backoff_base_ms: 30_000,
    backoff_max_ms: 30_000,
  });
  await waitFor('the first dial failed', () => peerStatus(a.transport, 2).outbound === 'backoff');
  const b = await startNode(2, port_b, addresses);
  await waitFor('B connects to A', () => peerStatus(b.transport, 1).outbound === 'connected');
  assert.equal(b.transport.send(1, voteRequest(2)), true);
  await waitFor(
    'A dials B as soon as B speaks',
    () => peerStatus(a.transport, 2).outbound === 'connected',
    5000,
  );
});

test('killing a peer transport and restarting it reconnects', async () => {
  const ports = [await freePort(), await freePort()];
  const addresses: PeerAddress[] = ports.map((raft_port, index) => ({
    id: index + 1,
    host: HOST,
    raft_port,
  }));
  const [port_a, port_b] = ports;
  assert.ok(port_a !== undefined && port_b !== undefined);
  const a = await startNode(1, port_a, addresses);
  const b = await startNode(2, port_b, addresses);
  await waitFor(
    'connected',
    () =>
      peerStatus(a.transport, 2).outbound === 'connected' &&
      peerStatus(b.transport, 1).outbound === 'connected',
  );
  a.transport.send(2, appendRequest(1, 0, 1));
  await waitFor('B receives', () => b.received.length === 1);

  await b.transport.close();
  await waitFor('A notices B is down', () => peerStatus(a.transport, 2).outbound !== 'connected');
  await waitFor(
    'A loses the route for answers to B',
    () => !peerStatus(a.transport, 2).inbound_connected,
  );
  assert.equal(a.transport.send(2, appendRequest(1, 0, 2)), false);

  const b_again = await startNode(2, port_b, addresses);
  await waitFor(
    'A reconnects to the restarted B',
    () => peerStatus(a.transport, 2).outbound === 'connected',
  );
  await waitFor(
    'restarted B connects to A',
    () => peerStatus(b_again.transport, 1).outbound === 'connected',
  );
  assert.ok(peerStatus(a.transport, 2).reconnects >= 1);
  assert.equal(a.transport.send(2, appendRequest(1, 0, 3)), true);
  await waitFor('restarted B receives', () => b_again.received.length === 1);
  assert.equal(b_again.transport.send(1, appendResponse(2, 3)), true);
  assert.equal(b_again.transport.send(1, voteRequest(2, 4)), true);
  await waitFor('A receives the response and the request', () => a.received.length === 2);
  assert.deepEqual(
    a.received.map((entry) => entry.from),
    [2, 2],
  );
});

test('a peer that never reads: sends fail, queue stays bounded, others unaffected', async () => {
  const stalled_sockets: net.Socket[] = [];
  // Accepts and never reads, so TCP flow control eventually stops our writes.
  const stalled = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => undefined);
    stalled_sockets.push(socket);
  });
  await new Promise<void>((resolve) => stalled.listen(0, HOST, resolve));
  cleanups.push(async () => {
    for (const socket of stalled_sockets) socket.destroy();
    await new Promise<void>((resolve) => stalled.close(() => resolve()));
  });
  const stalled_address = stalled.address();
  assert.ok(stalled_address !== null && typeof stalled_address === 'object');

  const port_a = await freePort();
  const port_c = await freePort();
  const addresses: PeerAddress[] = [
    { id: 1, host: HOST, raft_port: port_a },
    { id: 2, host: HOST, raft_port: stalled_address.port },
    { id: 3, host: HOST, raft_port: port_c },
  ];
  const queue_bytes_max = 1024 * 1024;
  const a = await startNode(1, port_a, addresses, { queue_bytes_max });
  const c = await startNode(3, port_c, addresses);
  await waitFor('A connected to both', () =>
    a.transport.status().every((status) => status.outbound === 'connected'),
  );

  let sent = 0;
  let max_queued_bytes = 0;
  const deadline = Date.now() + WAIT_MS;
  while (a.transport.send(2, appendRequest(1, 64 * 1024, sent + 1))) {
    sent++;
    max_queued_bytes = Math.max(max_queued_bytes, peerStatus(a.transport, 2).queued_bytes);
    // Let the bytes reach the kernel between bursts, as a real event loop would.
    if (sent % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.ok(
      Date.now() < deadline,
      `send() to a peer that never reads still succeeds after ${sent} messages`,
    );
  }
  const status = peerStatus(a.transport, 2);
  assert.ok(status.dropped_messages >= 1);
  assert.ok(max_queued_bytes <= queue_bytes_max, `queued ${max_queued_bytes} > ${queue_bytes_max}`);
  assert.ok(
    status.queued_bytes <= queue_bytes_max,
    `queued ${status.queued_bytes} > ${queue_bytes_max}`,
  );
  assert.equal(status.outbound, 'connected');

  // The stalled peer does not hold up the healthy one.
  for (let seq = 1; seq <= 100; seq++)
    assert.equal(a.transport.send(3, appendRequest(1, 1024, seq)), true);
  await waitFor('C receives all 100 messages', () => c.received.length === 100);
  assert.ok(peerStatus(a.transport, 2).queued_bytes <= queue_bytes_max);
});

test('sends in one event-loop turn leave in one socket write', async () => {
  const chunks: Buffer[] = [];
  const sink = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    cleanups.push(async () => {
      socket.destroy();
    });
  });
  await new Promise<void>((resolve) => sink.listen(0, HOST, resolve));
  cleanups.push(() => new Promise<void>((resolve) => sink.close(() => resolve())));
  const sink_address = sink.address();
  assert.ok(sink_address !== null && typeof sink_address === 'object');
  const a = await startNode(1, 0, [{ id: 2, host: HOST, raft_port: sink_address.port }]);
  await waitFor('connected', () => peerStatus(a.transport, 2).outbound === 'connected');

  const messages = 50;
  const { write_calls, writev_calls } = await countSocketWrites(async () => {
    for (let seq = 1; seq <= messages; seq++)
      assert.equal(a.transport.send(2, appendRequest(1, 0, seq)), true);
    await new Promise((resolve) => setImmediate(resolve));
  });
  assert.equal(
    write_calls + writev_calls,
    1,
    `${write_calls} writes and ${writev_calls} writevs for ${messages} sends`,
  );

  const expected_bytes = messages * encodeMessage(appendRequest(1, 0, 1)).length;
  await waitFor(
    'all bytes arrive',
    () => chunks.reduce((sum, chunk) => sum + chunk.length, 0) === expected_bytes,
  );
  const decoded = new FrameDecoder().push(Buffer.concat(chunks));
  assert.deepEqual(
    decoded.map((message) =>
      message.type === MessageType.AppendEntriesRequest ? message.seq : -1,
    ),
    Array.from({ length: messages }, (_, index) => index + 1),
  );
});

test('start rejects with the listen error when the port is taken', async () => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, HOST, resolve));
  cleanups.push(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const address = holder.address();
  assert.ok(address !== null && typeof address === 'object');
  const transport = new PeerTransport(
    { self_id: 1, listen_host: HOST, listen_port: address.port, peers: [], logger: SILENT_LOGGER },
    () => undefined,
  );
  cleanups.push(() => transport.close());
  await assert.rejects(
    transport.start(),
    (error: NodeJS.ErrnoException) => error.code === 'EADDRINUSE',
  );
});

test('close() stops dialling and leaves no sockets, servers or timers', async () => {
  const unreachable = await freePort();
  const [a, b] = await threeNodes();
  const lonely = await startNode(4, 0, [{ id: 5, host: HOST, raft_port: unreachable }], {
    backoff_base_ms: 60_000,
    backoff_max_ms: 60_000,
  });
  await waitFor(
    'lonely node is backing off',
    () => peerStatus(lonely.transport, 5).outbound === 'backoff',
  );
  a.transport.send(2, voteRequest(1));
  await waitFor('B receives', () => b.received.length === 1);
  // afterEach closes every transport and then requires that no TCP handle or timer is left.
  await lonely.transport.close();
  await lonely.transport.close();
  assert.equal(lonely.transport.send(5, voteRequest(4)), false);
});

test('close() while start() is still listening closes the listener too', async () => {
  const unreachable = await freePort();
  const transport = new PeerTransport(
    {
      self_id: 1,
      listen_host: HOST,
      listen_port: 0,
      peers: [{ id: 2, host: HOST, raft_port: unreachable }],
      logger: SILENT_LOGGER,
    },
    () => undefined,
  );
  const starting = transport.start();
  await transport.close();
  await starting;
  assert.equal(transport.status()[0]?.reconnects, 0);
  assert.equal(transport.status()[0]?.outbound, 'backoff');
  // afterEach requires that no listener, socket or timer is left.
});
