/**
 * Starts the systems under test: a 3-node cluster of ./kvstoreraftsystem (fsync is always on) and
 * one redis-server with `appendfsync always`, each with fresh temporary directories on free
 * loopback ports.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_BIN, pollUntil, TestCluster } from '../../test/integration/cluster_harness';
import { freePort } from '../../test/support/ports';
import type { ProcessGroup } from './processes';

export interface StartedCluster {
  cluster: TestCluster;
  children: ChildProcess[];
  leader: number;
  logs: () => string;
}

export interface StartedRedis {
  port: number;
  child: ChildProcess;
  logs: () => string;
}

/** Starts the nodes (`node_flags` go before the program, e.g. --cpu-prof); finds the leader. */
export async function startCluster(
  group: ProcessGroup,
  node_flags: string[],
): Promise<StartedCluster> {
  const cluster = await TestCluster.create({ nodes: 3 });
  group.addDir(cluster.dir);
  const children: ChildProcess[] = [];
  const tails: Array<() => string> = [];
  for (const node of cluster.nodes) {
    const child = spawn(
      process.execPath,
      [...node_flags, NODE_BIN, '--config_path', node.config_path],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    node.process = child;
    children.push(child);
    tails.push(group.add(child, `node ${node.index + 1}`).tail);
  }
  const logs = (): string => tails.map((tail) => tail()).join('\n');
  const all = cluster.nodes.map((node) => node.index);
  const leader = await cluster.waitForLeader(20_000, all);
  return { cluster, children, leader, logs };
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (chunk: Buffer) => done(chunk.toString('latin1').startsWith('+PONG')));
    socket.once('error', () => done(false));
  });
}

export async function startRedis(group: ProcessGroup): Promise<StartedRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'kvraft-bench-redis-'));
  group.addDir(dir);
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir];
  args.push('--appendonly', 'yes', '--appendfsync', 'always', '--save', '');
  args.push('--daemonize', 'no', '--logfile', '');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const { tail } = group.add(child, 'redis-server');
  await pollUntil('redis-server to answer PING', 10_000, async () =>
    (await answersPing(port)) ? true : null,
  );
  return { port, child, logs: tail };
}
