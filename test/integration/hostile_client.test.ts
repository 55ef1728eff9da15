/**
 * Memory attacks from issue 9 on real processes: each must leave every node
 * below 1 GiB RSS (sampled from /proc/<pid>/status) and serving, with no
 * election caused by a stalled leader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { pollUntil, type TestCluster, withCluster } from './cluster_harness';

const TEST_TIMEOUT_MS = 240_000;
/**
 * The goal is 1 GiB; the budgets (256 MiB input, 256 MiB replies, 192 MiB frames) keep
 * each attack far below it, and main before the budgets peaked at 653 MiB to 4.6 GiB, so this
 * tighter bound is what catches a regression.
 */
const RSS_BOUND_BYTES = 512 * 1024 * 1024;
const MIB = 1024 * 1024;

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  assert.ok(match !== null, `VmRSS of ${pid}`);
  return Number(match[1]) * 1024;
}

/** Samples every node's RSS until stopped; returns the highest seen per node. */
function sampleRss(cluster: TestCluster): { stop: () => number[] } {
  const peaks = cluster.nodes.map(() => 0);
  const sample = (): void => {
    for (const node of cluster.nodes) {
      const pid = node.process?.pid;
      if (pid === undefined) continue;
      try {
        peaks[node.index] = Math.max(peaks[node.index]!, rssBytes(pid));
      } catch {
        // the process just exited; the test's liveness checks report that
      }
    }
  };
  sample();
  const timer = setInterval(sample, 50);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peaks;
    },
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

/** Writes `total_bytes` of filler after `header`, honouring backpressure; stops if closed. */
async function sendFiller(socket: net.Socket, header: Buffer, total_bytes: number): Promise<void> {
  const chunk = Buffer.alloc(MIB, 0x61);
  if (!socket.write(header)) await waitDrain(socket);
  for (let sent = 0; sent < total_bytes && !socket.destroyed; sent += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, total_bytes - sent));
    if (!socket.write(part)) await waitDrain(socket);
  }
}

function waitDrain(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

function command(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

async function termOf(cluster: TestCluster, index: number): Promise<number> {
  const info = await pollUntil('INFO raft', 10_000, () => cluster.info(index));
  return Number(info.term);
}

/** Every node answers, a write through each node reads back, and no node exited. */
async function assertServing(cluster: TestCluster, label: string): Promise<void> {
  for (const node of cluster.nodes) {
    assert.equal(node.exit_code, null, `${label}: node ${node.index + 1} exited`);
    const client = cluster.client([node.index], { call_timeout_ms: 20_000 });
    try {
      await client.set(`after-${label}-${node.index}`, 'ok');
      assert.deepEqual(await client.get(`after-${label}-${node.index}`), ['ok']);
    } finally {
      await client.close();
    }
  }
}

function report(label: string, before: number[], peaks: number[]): void {
  const mib = (bytes: number): string => `${(bytes / MIB).toFixed(0)} MiB`;
  process.stdout.write(
    `# ${label}: RSS before ${before.map(mib).join(' / ')}, peak ${peaks.map(mib).join(' / ')}\n`,
  );
  for (const [index, peak] of peaks.entries()) {
    assert.ok(peak < RSS_BOUND_BYTES, `${label}: node ${index + 1} peaked at ${mib(peak)}`);
  }
}

function currentRss(cluster: TestCluster): number[] {
  return cluster.nodes.map((n) => (n.process?.pid === undefined ? 0 : rssBytes(n.process.pid)));
}

test('ten connections each sending 100 MB of one bulk string', { timeout: TEST_TIMEOUT_MS }, () =>
  withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const port = cluster.nodes[leader]!.client_port;
    const before = currentRss(cluster);
    const sampler = sampleRss(cluster);
    const value_bytes = 100_000_000;
    const header = Buffer.from(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${value_bytes}\r\n`);
    const sockets = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
    await Promise.all(sockets.map((socket) => sendFiller(socket, header, value_bytes - 1)));
    const peaks = sampler.stop();
    for (const socket of sockets) socket.destroy();
    report('10 x 100 MB bulk', before, peaks);
    await assertServing(cluster, 'bulk');
  }),
);

test('a pipeline of 3,000 unread GETs of a 1 MiB value', { timeout: TEST_TIMEOUT_MS }, () =>
  withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const client = cluster.client([leader]);
    await client.set('big', 'v'.repeat(MIB));
    await client.close();
    // Replies are charged from the value each node holds: let every node apply the write first
    // (a value written within the last heartbeat is a known gap, see README).
    const commit = Number(
      (await pollUntil('INFO', 10_000, () => cluster.info(leader))).commit_index,
    );
    for (const node of cluster.nodes) {
      await pollUntil(`node ${node.index + 1} applies the value`, 10_000, async () => {
        const info = await cluster.info(node.index);
        return info !== null && Number(info.last_applied) >= commit ? true : null;
      });
    }
    const term_before = await termOf(cluster, leader);
    const before = currentRss(cluster);
    const sampler = sampleRss(cluster);
    const pipeline = Buffer.concat(Array.from({ length: 3000 }, () => command('GET', 'big')));
    // One non-reading client on every node: the leader serves its own, followers forward theirs.
    const sockets = await Promise.all(cluster.nodes.map((n) => connect(n.client_port)));
    for (const socket of sockets) {
      socket.pause();
      socket.write(pipeline);
    }
    // Long enough for every node to run what it will of the pipeline, and for elections to show.
    const until = Date.now() + 8_000;
    await pollUntil('the attack window', 10_000, () => (Date.now() >= until ? true : null), 200);
    const peaks = sampler.stop();
    for (const socket of sockets) socket.destroy();
    report('3,000 unread GETs of 1 MiB', before, peaks);
    assert.equal(await termOf(cluster, leader), term_before, 'no election during the attack');
    await assertServing(cluster, 'gets');
  }),
);

test(
  'ten Raft connections each holding 59 MB of an unfinished frame',
  { timeout: TEST_TIMEOUT_MS },
  () =>
    withCluster({ nodes: 3 }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const follower = (leader + 1) % cluster.nodes.length;
      const port = cluster.nodes[follower]!.raft_port;
      const before = currentRss(cluster);
      const sampler = sampleRss(cluster);
      const payload_bytes = 60 * MIB;
      const header = Buffer.alloc(8);
      header.writeUInt32LE(3, 0); // AppendEntriesRequest
      header.writeUInt32LE(payload_bytes, 4);
      const sockets = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
      await Promise.all(sockets.map((socket) => sendFiller(socket, header, 59 * MIB)));
      // Give the node time to take in what is still in the kernel buffers.
      const until = Date.now() + 2_000;
      await pollUntil('the attack window', 5_000, () => (Date.now() >= until ? true : null), 200);
      const peaks = sampler.stop();
      for (const socket of sockets) socket.destroy();
      report('10 x 59 MB unfinished Raft frames', before, peaks);
      await assertServing(cluster, 'frames');
    }),
);

test(
  'pipelined SETs through a follower keep their order across a leader pause',
  { timeout: TEST_TIMEOUT_MS },
  () =>
    withCluster({ nodes: 3 }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const follower = (leader + 1) % cluster.nodes.length;
      const socket = await connect(cluster.nodes[follower]!.client_port);
      let received = '';
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
      });
      const replies = (): string[] => received.split('\r\n').filter((line) => line !== '');
      const batch = (from: number, to: number): Buffer =>
        Buffer.concat(
          Array.from({ length: to - from + 1 }, (_, i) => command('SET', 'k', String(from + i))),
        );
      socket.write(batch(1, 1000));
      const pid = cluster.nodes[leader]!.process!.pid!;
      process.kill(pid, 'SIGSTOP');
      socket.write(batch(1001, 2000));
      const resume_at = Date.now() + 700; // past the election timeout (500 ms by default)
      await pollUntil('the pause', 5_000, () => (Date.now() >= resume_at ? true : null), 50);
      process.kill(pid, 'SIGCONT');
      socket.write(batch(2001, 3000));
      await pollUntil('3,000 replies', 60_000, () => (replies().length >= 3000 ? true : null), 50);
      socket.destroy();
      const all = replies();
      const client = cluster.client([follower]);
      let value: string[] | null;
      try {
        value = await client.get('k');
      } finally {
        await client.close();
      }
      // Redis order: the value is the last SET that ran. Every SET after the last acknowledged one
      // failed or has an unknown outcome; the value is one of those or the acknowledged one.
      const last_ok = all.lastIndexOf('+OK') + 1;
      const final = Number(value?.[0] ?? 0);
      process.stdout.write(`# last acknowledged SET ${last_ok}, final value ${final}\n`);
      assert.ok(final >= last_ok, `final value ${final} is older than acknowledged SET ${last_ok}`);
      if (final > last_ok) assert.match(all[final - 1] ?? '', /^-TIMEOUT outcome unknown/);
    }),
);
