/**
 * What an operator reads when a peer misbehaves: a reset link is reported once
 * as `read ECONNRESET` (not `ECONNRESET read ECONNRESET`), and a peer that
 * keeps resetting every connection does not flood the log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { PeerTransport } from '../../src/server/peer_transport';
import { createLogger } from '../../src/util/log';
import { waitFor } from '../support/wait';

const HOST = '127.0.0.1';

function listening(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, HOST, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    }),
  );
}

test('a peer resetting every connection: one clear line, repeats suppressed', async () => {
  let resets = 0;
  // "Peer 2" accepts each dial and, once the dialler has seen it connect, resets it.
  const peer = net.createServer((socket) => {
    socket.on('error', () => undefined);
    setTimeout(() => {
      resets++;
      socket.resetAndDestroy();
    }, 20);
  });
  const peer_port = await listening(peer);
  const lines: string[] = [];
  const logger = createLogger('node1', 'info', (line) => lines.push(line));
  const transport = new PeerTransport(
    {
      self_id: 1,
      listen_host: HOST,
      listen_port: 0,
      peers: [{ id: 2, host: HOST, raft_port: peer_port }],
      logger,
      backoff_base_ms: 5,
      backoff_max_ms: 20,
    },
    () => undefined,
  );
  try {
    await transport.start();
    await waitFor('several resets', () => resets >= 5);
    await waitFor('a down line', () => lines.some((line) => line.includes('peer 2 down')));
    const down = lines.filter((line) => line.includes('peer 2 down'));
    assert.equal(down.length, 1, down.join(''));
    assert.match(down[0]!, /: read ECONNRESET\n$/);
    assert.doesNotMatch(down[0]!, /ECONNRESET read ECONNRESET/);
    assert.ok(!lines.some((line) => line.includes('queue full')), lines.join(''));
  } finally {
    await transport.close();
    await new Promise<void>((resolve) => peer.close(() => resolve()));
  }
});
