/**
 * Real node processes on loopback: every node serves clients, writes are
 * durable across kill -9, the cluster survives minority failures, garbage
 * on either port only closes that connection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvClient } from '../../src/client';
import {
  NODE_BIN,
  REPO_ROOT,
  pollUntil,
  rawExchange,
  TestCluster,
  withCluster,
} from './cluster_harness';
import { freePortPairs } from '../support/ports';
import * as net from 'node:net';

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

/** Writes keys until `stop` says so; returns the acknowledged ones (key → value). */
async function writeAcknowledged(
  client: KvClient,
  prefix: string,
  count: number,
): Promise<Map<string, string>> {
  const acknowledged = new Map<string, string>();
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const key = `${prefix}${i}`;
      try {
        await client.set(key, `value-${i}`);
        acknowledged.set(key, `value-${i}`);
      } catch {
        // not acknowledged: may or may not be there
      }
    }),
  );
  return acknowledged;
}

async function assertAllPresent(
  client: KvClient,
  acknowledged: Map<string, string>,
): Promise<void> {
  for (const [key, value] of acknowledged)
    assert.deepEqual(await client.get(key), [value], `acknowledged ${key} survived`);
}

test('SET, GET and DEL through every node of a 3-node cluster, seed byte strings exactly', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const set_request = '*4\r\n$3\r\nSET\r\n$7\r\nCS06142\r\n$5\r\nCloud\r\n$9\r\nComputing\r\n';
    for (const node of cluster.nodes) {
      const set = await rawExchange(node.client_port, set_request, (b) => b.includes('\r\n'));
      assert.equal(set.data.toString(), '+OK\r\n');
      const get = await rawExchange(
        node.client_port,
        '*2\r\n$3\r\nGET\r\n$7\r\nCS06142\r\n',
        (b) => b.length >= 30,
      );
      assert.equal(get.data.toString(), '*2\r\n$5\r\nCloud\r\n$9\r\nComputing\r\n');
    }
    const del = await rawExchange(
      cluster.nodes[1]!.client_port,
      '*3\r\n$3\r\nDEL\r\n$7\r\nCS06142\r\n$7\r\nmissing\r\n',
      (b) => b.includes('\r\n'),
    );
    assert.equal(del.data.toString(), ':1\r\n');
    for (const node of cluster.nodes) {
      const get = await rawExchange(
        node.client_port,
        '*2\r\n$3\r\nGET\r\n$7\r\nCS06142\r\n',
        (b) => b.length >= 13,
      );
      assert.equal(get.data.toString(), '*1\r\n$3\r\nnil\r\n');
    }
    const inline = await rawExchange(
      cluster.nodes[2]!.client_port,
      'SET a b\r\nGET a\r\n',
      (b) => b.length >= 5 + 11,
    );
    assert.equal(inline.data.toString(), '+OK\r\n*1\r\n$1\r\nb\r\n');
  });
});

test('pipelining: 2,000 commands in one write are answered in order through a follower', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = (leader + 1) % 3;
    let payload = '';
    let expected = '';
    for (let i = 0; i < 1000; i++) {
      const key = `k${i}`;
      const value = `v${i}`;
      payload += `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`;
      payload += `*2\r\n$3\r\nGET\r\n$${`k${i}`.length}\r\nk${i}\r\n`;
      expected += `+OK\r\n*1\r\n$${`v${i}`.length}\r\nv${i}\r\n`;
    }
    const reply = await rawExchange(
      cluster.nodes[follower]!.client_port,
      payload,
      (b) => b.length >= expected.length,
      30_000,
    );
    assert.equal(reply.data.toString(), expected);
  });
});

test('a one-node cluster serves reads and writes and keeps them across a restart', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 1 }, async (cluster) => {
    await cluster.waitForLeader();
    const client = cluster.client();
    await client.set('solo', 'one', 'two');
    assert.deepEqual(await client.get('solo'), ['one', 'two']);
    assert.equal(await client.del('solo', 'nothing'), 1);
    await client.set('kept', 'yes');
    await client.close();
    await cluster.kill(0);
    cluster.start(0);
    await cluster.waitForLeader();
    const again = cluster.client();
    assert.deepEqual(await again.get('kept'), ['yes']);
    assert.equal(await again.get('solo'), null);
    await again.close();
  });
});

test('kill -9 of the leader: a survivor accepts writes within 3 s; no acked write is lost', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    const acknowledged = await writeAcknowledged(client, 'before', 200);
    assert.equal(acknowledged.size, 200);
    await client.close();
    await cluster.kill(leader);
    const killed_at = Date.now();
    const survivors = [0, 1, 2].filter((i) => i !== leader);
    const writer = cluster.client(survivors, { call_timeout_ms: 1000 });
    await pollUntil('a write through a survivor', 3000, async () => {
      await writer.set('after-failover', 'yes');
      return true;
    });
    const failover_ms = Date.now() - killed_at;
    assert.ok(failover_ms <= 3000, `failover took ${failover_ms} ms`);
    await assertAllPresent(writer, acknowledged);
    await writer.close();
  });
});

test('kill two of three and restart them, then all three: every acked write is there', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const client = cluster.client();
    const acknowledged = await writeAcknowledged(client, 'k', 300);
    assert.equal(acknowledged.size, 300);
    await client.close();
    await cluster.kill(0);
    await cluster.kill(1);
    cluster.start(0);
    cluster.start(1);
    await cluster.waitForLeader();
    const after_two = cluster.client();
    await assertAllPresent(after_two, acknowledged);
    const more = await writeAcknowledged(after_two, 'm', 100);
    await after_two.close();
    await cluster.stopAll();
    cluster.startAll();
    await cluster.waitForLeader();
    const after_all = cluster.client();
    await assertAllPresent(after_all, acknowledged);
    await assertAllPresent(after_all, more);
    await after_all.close();
  });
});

test('a 5-node cluster keeps serving with two nodes down', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 5 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const victims = [leader, (leader + 1) % 5];
    for (const victim of victims) await cluster.kill(victim);
    const survivors = [0, 1, 2, 3, 4].filter((i) => !victims.includes(i));
    const client = cluster.client(survivors);
    const acknowledged = await writeAcknowledged(client, 'five', 100);
    assert.equal(acknowledged.size, 100);
    await assertAllPresent(client, acknowledged);
    await client.close();
  });
});

test('with no quorum a request gets a no-leader error in bounded time instead of hanging', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    await cluster.kill(0);
    await cluster.kill(1);
    // Once node 3 notices the leader is gone it waits at most no_leader_timeout_ms (2 s) per
    // request.
    const reply = await pollUntil('a CLUSTERDOWN reply', 15_000, async () => {
      const started = Date.now();
      const r = await rawExchange(
        cluster.nodes[2]!.client_port,
        '*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\ny\r\n',
        (b) => b.includes('\r\n'),
        12_000,
      );
      const text = r.data.toString();
      return text.startsWith('-CLUSTERDOWN') ? { text, waited_ms: Date.now() - started } : null;
    });
    assert.match(reply.text, /^-CLUSTERDOWN no leader/);
    assert.ok(reply.waited_ms < 4000, `answered after ${reply.waited_ms} ms`);
  });
});

test('garbage on the client port and the Raft port closes only that connection', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const node = cluster.nodes[0]!;
    const bad_resp = await rawExchange(node.client_port, '*2\r\n$abc\r\n', () => false);
    assert.ok(bad_resp.closed);
    assert.match(bad_resp.data.toString(), /^-ERR Protocol error/);
    const oversized = await rawExchange(node.client_port, '*1\r\n$999999999999\r\n', () => false);
    assert.ok(oversized.closed);
    for (const garbage of [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from([0x63, 0, 0, 0, 5, 0, 0, 0, 1, 2, 3, 4, 5]),
      Buffer.alloc(64, 0xff),
    ]) {
      const raft = await rawExchange(node.raft_port, garbage, () => false);
      assert.ok(raft.closed, 'the Raft port closed the garbage connection');
    }
    const client = cluster.client([0]);
    await client.set('still', 'serving');
    assert.deepEqual(await client.get('still'), ['serving']);
    await client.close();
    assert.notEqual(node.process, null, 'the node process is alive');
  });
});

test('redis-cli works against the cluster and follows -MOVED with -c in moved mode', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const redis_cli = ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli'].find((p) => existsSync(p));
  assert.ok(
    redis_cli !== undefined,
    'redis-cli is required (Debian package redis-tools; .ci/run installs it)',
  );
  const run = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) =>
      execFile(redis_cli, args, { timeout: 20_000 }, (error, stdout) =>
        error ? reject(error) : resolve(stdout),
      ),
    );
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const port = String(cluster.nodes[1]!.client_port);
    assert.equal((await run(['-p', port, 'SET', 'CS06142', 'Cloud', 'Computing'])).trim(), 'OK');
    assert.equal(await run(['-p', port, 'GET', 'CS06142']), 'Cloud\nComputing\n');
    assert.equal((await run(['-p', port, 'DEL', 'CS06142'])).trim(), '1');
    assert.equal((await run(['-p', port, 'PING'])).trim(), 'PONG');
  });
  await withCluster({ nodes: 3, extra_config: ['client_redirect moved'] }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.nodes[(leader + 1) % 3]!;
    const moved = await rawExchange(
      follower.client_port,
      '*3\r\n$3\r\nSET\r\n$1\r\nm\r\n$1\r\nv\r\n',
      (b) => b.includes('\r\n'),
    );
    assert.equal(
      moved.data.toString(),
      `-MOVED 0 127.0.0.1:${cluster.nodes[leader]!.client_port}\r\n`,
    );
    assert.equal(
      (await run(['-c', '-p', String(follower.client_port), 'SET', 'm', 'v'])).trim(),
      'OK',
    );
    assert.equal((await run(['-c', '-p', String(follower.client_port), 'GET', 'm'])).trim(), 'v');
  });
});

test('SIGTERM: the leader hands over leadership and exits 0', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    await client.set('graceful', 'yes');
    await client.close();
    await cluster.signal(leader, 'SIGTERM');
    assert.equal(cluster.nodes[leader]!.exit_code, 0);
    assert.match(cluster.nodes[leader]!.stderr, /handing leadership to node/);
    const next = await cluster.waitForLeader(5000);
    assert.notEqual(next, leader);
    const after = cluster.client([0, 1, 2].filter((i) => i !== leader));
    assert.deepEqual(await after.get('graceful'), ['yes']);
    await after.close();
  });
});

test('a request forwarded to a leader that then hangs (SIGSTOP) is answered in time', {
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
        // The follower still believes in the stopped leader and forwards it
        hung.socket.write('SET hang v\r\n');

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

        // The forwarded request must be answered (OK or an error reply such as TRYAGAIN) within
        // about request_timeout_ms.
        const wait_until = sent_at + 3 * request_timeout_ms + 1000;
        while (Date.now() < wait_until && hung.received() === '' && !hung.closed())
          await sleep(100);
        const waited_ms = Date.now() - sent_at;
        hung.socket.destroy();
        assert.notEqual(
          hung.received(),
          '',
          `no reply to a forwarded SET after ${waited_ms} ms (request_timeout_ms ` +
            `${request_timeout_ms}); the follower's forward has no deadline and retainOnly ` +
            `keeps the link to the stopped leader because it has a pending request`,
        );
      } finally {
        leader_process.kill('SIGCONT');
      }
    },
  );
});

test('commands pipelined after QUIT are not executed (Redis closes after QUIT)', {
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
    // Long enough for a SET that was wrongly run to commit on a one-node cluster.
    await sleep(500);
    const get = await rawExchange(port, 'GET afterquit\r\n', (b) => b.length >= 13);
    assert.equal(
      get.data.toString(),
      '*1\r\n$3\r\nnil\r\n',
      'the SET sent after QUIT was executed although its reply can never be delivered',
    );
  });
});

test('SIGTERM of the leader fails none of the requests sent meanwhile to a follower', {
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
      `${shutting_down.length} of ${replies.length} replies at the healthy follower were "-ERR ` +
        `shutting down" (relayed from the stopping leader); other ` +
        `errors: ${JSON.stringify(other_errors.slice(0, 3))}`,
    );
  });
});

test('startup failures print one clear line and exit non-zero', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const run = (args: string[]): Promise<{ code: number; stderr: string }> =>
    new Promise((resolve) =>
      execFile(
        process.execPath,
        [NODE_BIN, ...args],
        { timeout: 20_000 },
        (error, _stdout, stderr) =>
          resolve({
            code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1,
            stderr,
          }),
      ),
    );
  const cluster = await TestCluster.create({ nodes: 1 });
  try {
    const bad = join(cluster.dir, 'bad.conf');
    writeFileSync(bad, 'follower_info 127.0.0.1:8001\nbogus_parameter 1\n');
    const bad_result = await run(['--config_path', bad]);
    assert.notEqual(bad_result.code, 0);
    assert.match(bad_result.stderr, /bad\.conf:2: .*bogus_parameter/);
    const missing = await run(['--config_path', join(cluster.dir, 'nope.conf')]);
    assert.notEqual(missing.code, 0);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
    const usage = await run([]);
    assert.notEqual(usage.code, 0);
    // Port in use.
    const [port] = await freePortPairs(1);
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port!, '127.0.0.1', () => resolve()));
    const conf = join(cluster.dir, 'busy.conf');
    writeFileSync(conf, `follower_info 127.0.0.1:${port}\ndata_dir ${join(cluster.dir, 'busy')}\n`);
    const busy = await run(['--config_path', conf]);
    blocker.close();
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /address already in use/);
    assert.equal(busy.stderr.trim().split('\n').length, 1, busy.stderr);
    // Unwritable data_dir.
    const ro = join(cluster.dir, 'ro.conf');
    writeFileSync(ro, `follower_info 127.0.0.1:${port}\ndata_dir /proc/kvraft-not-writable\n`);
    const ro_result = await run(['--config_path', ro]);
    assert.notEqual(ro_result.code, 0);
    assert.equal(ro_result.stderr.trim().split('\n').length, 1, ro_result.stderr);
  } finally {
    await cluster.destroy();
  }
});

test('npm start: elects a leader, says how to connect and stops every node on Ctrl-C', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const [port] = await freePortPairs(3);
  const cluster = await TestCluster.create({ nodes: 1 }); // only for its temporary directory
  try {
    const launcher = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'dist', 'src', 'cluster', 'local_cluster.js'),
        '--port',
        String(port),
        '--data',
        cluster.dir,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    launcher.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    launcher.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) =>
      launcher.on('exit', (code) => resolve(code)),
    );
    await pollUntil('the launcher banner', 20_000, () =>
      /leader: 127\.0\.0\.1:\d+ \(node \d/.test(output) ? true : null,
    );
    assert.match(output, new RegExp(`redis-cli -p ${port}`));
    const client = new KvClient({ nodes: [`127.0.0.1:${port! + 1}`] });
    await client.set('launched', 'yes');
    assert.deepEqual(await client.get('launched'), ['yes']);
    await client.close();
    launcher.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.match(output, /all nodes stopped/);
    await pollUntil('ports released', 5000, async () =>
      (await rawExchange(port!, 'PING\r\n', () => true, 1000).then(
        (r) => r.closed && r.data.length === 0,
      ))
        ? true
        : null,
    );
  } finally {
    await cluster.destroy();
  }
});

test('200 client connections with 50-deep pipelines each get every reply in order', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await cluster.waitForLeader();
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, c) => {
        const port = cluster.nodes[c % 3]!.client_port;
        let payload = '';
        let expected = '';
        for (let i = 0; i < 25; i++) {
          const key = `c${c}k${i}`;
          payload += `SET ${key} v${i}\r\nGET ${key}\r\n`;
          expected += `+OK\r\n*1\r\n$${`v${i}`.length}\r\nv${i}\r\n`;
        }
        const reply = await rawExchange(port, payload, (b) => b.length >= expected.length, 60_000);
        return reply.data.toString() === expected;
      }),
    );
    assert.equal(results.filter((ok) => ok).length, 200);
  });
});

test('recovery: a torn WAL tail is truncated; damage before it stops the node with one line', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 1 }, async (cluster) => {
    await cluster.waitForLeader();
    const client = cluster.client();
    for (let i = 0; i < 50; i++) await client.set(`durable${i}`, `v${i}`);
    await client.close();
    await cluster.kill(0);
    const wal = join(cluster.nodes[0]!.data_dir, 'raft.wal');
    const intact = readFileSync(wal);
    // A crash mid-append leaves a partial record at the end.
    writeFileSync(wal, Buffer.concat([intact, Buffer.from([0x10, 0x20, 0x30, 0, 0, 0, 0])]));
    cluster.start(0);
    await cluster.waitForLeader();
    const after = cluster.client();
    for (let i = 0; i < 50; i++) assert.deepEqual(await after.get(`durable${i}`), [`v${i}`]);
    await after.close();
    assert.match(cluster.nodes[0]!.stderr, /torn/);
    await cluster.kill(0);
    // Flip a byte inside an early record: data that was durable is damaged.
    const damaged = readFileSync(wal);
    damaged[100] = damaged[100]! ^ 0xff;
    writeFileSync(wal, damaged);
    cluster.nodes[0]!.stderr = '';
    cluster.start(0);
    await pollUntil('the node to exit', 10_000, () =>
      cluster.nodes[0]!.exit_code !== null ? true : null,
    );
    assert.notEqual(cluster.nodes[0]!.exit_code, 0);
    const lines = cluster.nodes[0]!.stderr.trim()
      .split('\n')
      .filter((line) => line.startsWith('kvstoreraftsystem:'));
    assert.equal(lines.length, 1, cluster.nodes[0]!.stderr);
    assert.match(lines[0]!, /corrupt|damaged/i);
  });
});
