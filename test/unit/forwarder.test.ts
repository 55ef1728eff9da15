/** LeaderForwarder: a follower relaying client requests to the leader. */
import { test } from 'node:test';
import * as net from 'node:net';
import { LeaderForwarder } from '../../src/server/forwarder';
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
    const forwarded = forwarder.forward('127.0.0.1', port, args, Date.now() + 60_000);
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
