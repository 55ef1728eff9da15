/**
 * Reviewer tests for the server glue (kv_node, forwarder, client listener).
 * Each test asserts the behaviour the README promises; a failure demonstrates
 * the bug named in the test title.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { pollUntil, rawExchange, withCluster, type TestCluster } from './cluster_harness';

const TEST_TIMEOUT_MS = 120_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A raw client connection that records everything it receives. */
function openRaw(
  port: number,
): Promise<{ socket: net.Socket; received: () => string; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let closed = false;
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => (closed = true));
    socket.once('error', (error) => reject(error));
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => Buffer.concat(chunks).toString('latin1'),
        closed: () => closed,
      }),
    );
  });
}

async function followerOf(cluster: TestCluster, leader: number): Promise<number> {
  return (leader + 1) % cluster.nodes.length;
}

test('finding 1: a request a follower forwarded to a leader that then hangs (SIGSTOP) gets a reply within request_timeout_ms', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const request_timeout_ms = 2000;
  await withCluster(
    { nodes: 3, extra_config: [`request_timeout_ms ${request_timeout_ms}`] },
    async (cluster) => {
      const leader = await cluster.waitForLeader();
      const follower = await followerOf(cluster, leader);
      const follower_port = cluster.nodes[follower]!.client_port;
      // Warm up: the follower opens its forwarding link to the leader.
      const warm = await rawExchange(follower_port, 'SET warm up\r\n', (b) => b.includes('\r\n'));
      assert.equal(warm.data.toString(), '+OK\r\n');

      const leader_process = cluster.nodes[leader]!.process!;
      leader_process.kill('SIGSTOP');
      try {
        const hung = await openRaw(follower_port);
        const sent_at = Date.now();
        hung.socket.write('SET hang v\r\n'); // the follower still believes in the stopped leader and forwards it

        // The rest of the cluster elects a new leader and serves new connections through the same
        // follower.
        await pollUntil(
          'a write through the follower after failover',
          15_000,
          async () => {
            const r = await rawExchange(
              follower_port,
              'SET after failover\r\n',
              (b) => b.includes('\r\n'),
              3000,
            ).catch(() => null);
            return r !== null && r.data.toString() === '+OK\r\n' ? true : null;
          },
          200,
        );

        // The forwarded request must be answered (OK, an error or a TIMEOUT) within about
        // request_timeout_ms.
        const wait_until = sent_at + 3 * request_timeout_ms + 1000;
        while (Date.now() < wait_until && hung.received() === '' && !hung.closed())
          await sleep(100);
        const waited_ms = Date.now() - sent_at;
        hung.socket.destroy();
        assert.notEqual(
          hung.received(),
          '',
          `no reply to a forwarded SET after ${waited_ms} ms (request_timeout_ms ${request_timeout_ms}); the follower's forward has no deadline and retainOnly keeps the link to the stopped leader because it has a pending request`,
        );
      } finally {
        leader_process.kill('SIGCONT');
      }
    },
  );
});

test('finding 4: commands pipelined after QUIT are not executed (Redis closes after QUIT)', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 1 }, async (cluster) => {
    await cluster.waitForLeader();
    const port = cluster.nodes[0]!.client_port;
    const quit = await rawExchange(port, 'QUIT\r\nSET afterquit yes\r\n', () => false, 5000).catch(
      (e: Error) => ({ data: Buffer.from(e.message), closed: true }),
    );
    assert.ok(
      quit.data.toString().startsWith('+OK\r\n'),
      `QUIT reply: ${JSON.stringify(quit.data.toString())}`,
    );
    await sleep(500);
    const get = await rawExchange(port, 'GET afterquit\r\n', (b) => b.length >= 13);
    assert.equal(
      get.data.toString(),
      '*1\r\n$3\r\nnil\r\n',
      'the SET sent after QUIT was executed although its reply can never be delivered',
    );
  });
});

test('finding 2: a graceful stop (SIGTERM) of the leader does not fail requests that clients sent to a healthy follower', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = await followerOf(cluster, leader);
    const follower_port = cluster.nodes[follower]!.client_port;
    const conn = await openRaw(follower_port);
    let running = true;
    let sent = 0;
    const load = (async () => {
      while (running && !conn.closed()) {
        let batch = '';
        for (let j = 0; j < 20; j++, sent++) batch += `SET f${sent % 1000} v${sent}\r\n`;
        conn.socket.write(batch);
        await sleep(2);
      }
    })();
    await sleep(500);
    await cluster.signal(leader, 'SIGTERM');
    assert.equal(cluster.nodes[leader]!.exit_code, 0, 'the leader exits 0 on SIGTERM');
    await sleep(1500);
    running = false;
    await load;
    await sleep(1000);
    conn.socket.destroy();
    const replies = conn
      .received()
      .split('\r\n')
      .filter((line) => line !== '');
    const shutting_down = replies.filter((line) => line.includes('shutting down'));
    const other_errors = replies.filter(
      (line) => line.startsWith('-') && !line.includes('shutting down'),
    );
    assert.deepEqual(
      shutting_down,
      [],
      `${shutting_down.length} of ${replies.length} replies at the healthy follower were "-ERR shutting down" (relayed from the stopping leader); other errors: ${JSON.stringify(other_errors.slice(0, 3))}`,
    );
  });
});
