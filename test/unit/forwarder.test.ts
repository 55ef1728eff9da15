/** LeaderForwarder: a follower relaying client requests to the leader. */
import { test } from 'node:test';
import * as net from 'node:net';
import assert from 'node:assert/strict';
import { ReplyParser } from '../../src/resp/client_codec';
import { type ForwardResult, LeaderForwarder } from '../../src/server/forwarder';
import { LIMITS } from '../../src/util/limits';
import { SILENT_LOGGER } from '../../src/util/log';
import { waitFor } from '../support/wait';

test('a forward to a leader that never answers settles once the leader moves on', {
  timeout: 20_000,
}, async () => {
  const sockets: net.Socket[] = [];
  // Accepts, reads nothing, answers nothing: a leader process that hangs.
  const server = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const forwarder = new LeaderForwarder(SILENT_LOGGER);
  try {
    let settled = false;
    const args = [Buffer.from('SET'), Buffer.from('k'), Buffer.from('v')];
    const forwarded = forwarder.forward('127.0.0.1', port, args, Date.now() + 60_000, 1);
    void forwarded.finally(() => {
      settled = true;
    });
    await waitFor('the leader accepts the link', () => sockets.length === 1);
    forwarder.retainOnly('127.0.0.1:1'); // the leader moved elsewhere
    // Long before the request's own 60 s deadline: within the leader-change grace period.
    await waitFor('the forward settles', () => settled, 3000);
    await forwarded;
  } finally {
    forwarder.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/**
 * A fake leader: answers +OK to the opening RAFT.PROXY, then each `RAFT.FWD stream id command` with
 * a push of its id and `+<command's arg1>`, after SLOW_MS when arg1 is `slow`, as soon as it is
 * done (as a real leader does: one client's slow request holds no other client's reply); counts
 * its connections.
 */
const SLOW_MS = 1_500;

interface FakeLeader {
  port: number;
  connections: () => number;
}

async function fakeLeader(): Promise<FakeLeader & { close: () => Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    const parser = new ReplyParser();
    let hello = true;
    socket.on('data', (chunk: Buffer) => {
      // Requests are arrays of bulk strings, which the reply parser reads too.
      for (const request of parser.push(chunk)) {
        if (hello) {
          hello = false;
          socket.write('+OK\r\n');
          continue;
        }
        const text = (at: number): string => {
          const item = request.type === 'array' ? request.items?.[at] : undefined;
          return item?.type === 'bulk' ? (item.value?.toString() ?? '') : '';
        };
        assert.equal(text(0), 'RAFT.FWD');
        const id = text(2);
        const tag = text(4);
        setTimeout(
          () => {
            if (!socket.destroyed) socket.write(`>2\r\n:${id}\r\n+${tag}\r\n`);
          },
          tag === 'slow' ? SLOW_MS : 0,
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => sockets.length,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Runs `body` with a forwarder and a fake leader, closed after it; `send` forwards `words` from
 * client `client_id` (default 1) with a deadline `deadline_in_ms` from now.
 */
async function withFakeLeader(
  body: (
    send: (words: string[], deadline_in_ms: number, client_id?: number) => Promise<ForwardResult>,
    leader: FakeLeader,
  ) => Promise<void>,
): Promise<void> {
  const leader = await fakeLeader();
  const forwarder = new LeaderForwarder(SILENT_LOGGER);
  try {
    await body(
      (words, deadline_in_ms, client_id = 1) =>
        forwarder.forward(
          '127.0.0.1',
          leader.port,
          words.map((word) => Buffer.from(word)),
          Date.now() + deadline_in_ms,
          client_id,
        ),
      leader,
    );
  } finally {
    forwarder.close();
    await leader.close();
  }
}

test('one request reaching its deadline settles alone; the link keeps serving', async () => {
  await withFakeLeader(async (send, leader) => {
    assert.deepEqual(await send(['GET', 'slow'], 300), { kind: 'unknown' });
    const next = await send(['GET', 'a'], 5_000);
    assert.deepEqual(next, { kind: 'reply', bytes: Buffer.from('+a\r\n') });
    assert.equal(leader.connections(), 1, 'the link was not replaced');
  });
});

test('clients sharing a link are not held behind a slow request', async () => {
  await withFakeLeader(async (send, leader) => {
    const slow = send(['SET', 'slow'], 60_000);
    const started_ms = Date.now();
    // Clients 1 and 1 + forward_links_per_leader_max share a link.
    const other = await send(['GET', 'b'], 5_000, 1 + LIMITS.forward_links_per_leader_max);
    assert.deepEqual(other, { kind: 'reply', bytes: Buffer.from('+b\r\n') });
    assert.ok(Date.now() - started_ms < SLOW_MS, 'not held behind the slow request');
    assert.equal(leader.connections(), 1, 'one link');
    assert.deepEqual(await slow, { kind: 'reply', bytes: Buffer.from('+slow\r\n') });
  });
});
