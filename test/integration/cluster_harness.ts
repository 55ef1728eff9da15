/**
 * Real processes on free loopback ports with temporary data directories.
 * Every wait polls with a deadline; every process is killed at the end.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient } from '../../src/client';
import { freePortPairs } from '../support/ports';

export const REPO_ROOT = join(__dirname, '..', '..', '..');
export const NODE_BIN = join(REPO_ROOT, 'kvstoreraftsystem');

export interface ClusterNode {
  index: number;
  client_port: number;
  raft_port: number;
  config_path: string;
  data_dir: string;
  process: ChildProcess | null;
  stderr: string;
  exit_code: number | null;
}

export interface ClusterOptions {
  nodes: number;
  extra_config?: string[];
  /** Default 'info'; null leaves log_level out of the file (the node's default). */
  log_level?: string | null;
  /** Config lines for one node (by index), after extra_config. */
  node_config?: (index: number) => string[];
}

export async function pollUntil<T>(
  what: string,
  timeout_ms: number,
  probe: () => Promise<T | null> | T | null,
  interval_ms = 25,
): Promise<T> {
  const deadline = Date.now() + timeout_ms;
  let last_error: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== null) return value;
    } catch (error) {
      last_error = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeout_ms} ms waiting for ` +
          `${what}${last_error instanceof Error ? ` (last error: ${last_error.message})` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval_ms));
  }
}

export class TestCluster {
  readonly dir: string;
  readonly nodes: ClusterNode[] = [];

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(options: ClusterOptions): Promise<TestCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'kvraft-it-'));
    const cluster = new TestCluster(dir);
    const ports = await freePortPairs(options.nodes);
    for (let i = 0; i < options.nodes; i++) {
      const own = ports[i]!;
      const lines = ['! integration test node', `follower_info 127.0.0.1:${own}`];
      for (const other of ports) if (other !== own) lines.push(`follower_info 127.0.0.1:${other}`);
      const data_dir = join(dir, `node${i + 1}`);
      const log_level = options.log_level === undefined ? 'info' : options.log_level;
      lines.push(`data_dir ${data_dir}`, ...(log_level === null ? [] : [`log_level ${log_level}`]));
      lines.push(...(options.extra_config ?? []), ...(options.node_config?.(i) ?? []));
      const config_path = join(dir, `node${i + 1}.conf`);
      writeFileSync(config_path, `${lines.join('\n')}\n`);
      cluster.nodes.push({
        index: i,
        client_port: own,
        raft_port: own - 1000,
        config_path,
        data_dir,
        process: null,
        stderr: '',
        exit_code: null,
      });
    }
    return cluster;
  }

  startAll(): void {
    for (const node of this.nodes) this.start(node.index);
  }

  start(index: number): void {
    const node = this.nodes[index]!;
    if (node.process !== null) throw new Error(`node ${index} already running`);
    const child = spawn(process.execPath, [NODE_BIN, '--config_path', node.config_path], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    node.process = child;
    node.exit_code = null;
    child.stderr!.on('data', (chunk: Buffer) => {
      node.stderr += chunk.toString();
      if (node.stderr.length > 1_000_000) node.stderr = node.stderr.slice(-500_000);
    });
    child.on('exit', (code, signal) => {
      node.exit_code = code ?? (signal !== null ? 128 : -1);
      if (node.process === child) node.process = null;
    });
  }

  /** kill -9: no chance to flush anything. */
  kill(index: number): Promise<void> {
    return this.signal(index, 'SIGKILL');
  }

  async signal(index: number, signal: NodeJS.Signals): Promise<void> {
    const node = this.nodes[index]!;
    const child = node.process;
    if (child === null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    node.process = null;
  }

  address(index: number): string {
    return `127.0.0.1:${this.nodes[index]!.client_port}`;
  }

  addresses(indexes?: number[]): string[] {
    return (indexes ?? this.nodes.map((n) => n.index)).map((i) => this.address(i));
  }

  client(indexes?: number[], options: { call_timeout_ms?: number } = {}): KvClient {
    return new KvClient({
      nodes: this.addresses(indexes),
      call_timeout_ms: options.call_timeout_ms ?? 8000,
    });
  }

  /** One INFO field of node `index`; throws if the node does not answer or lacks the field. */
  async infoField(index: number, field: string): Promise<string> {
    const value = (await this.info(index))?.[field];
    if (value === undefined) throw new Error(`node ${index}: no INFO field ${field}`);
    return value;
  }

  async infoNumber(index: number, field: string): Promise<number> {
    return Number(await this.infoField(index, field));
  }

  /** Polls until `follower` has applied everything `leader` has committed. */
  async waitCaughtUp(leader: number, follower: number, timeout_ms: number): Promise<void> {
    await pollUntil(`node ${follower} caught up`, timeout_ms, async () => {
      const commit = await this.infoNumber(leader, 'commit_index');
      const applied = await this.infoNumber(follower, 'last_applied');
      return applied >= commit ? true : null;
    });
  }

  /** INFO raft of one node, parsed; null when the node does not answer. */
  async info(index: number): Promise<Record<string, string> | null> {
    const client = new KvClient({ nodes: [this.address(index)], call_timeout_ms: 1000 });
    try {
      return await client.info();
    } catch {
      return null;
    } finally {
      await client.close();
    }
  }

  /** The index of the node every running node agrees is leader. */
  async waitForLeader(timeout_ms = 10_000, among?: number[]): Promise<number> {
    const candidates = among ?? this.nodes.filter((n) => n.process !== null).map((n) => n.index);
    return pollUntil('a leader', timeout_ms, async () => {
      for (const index of candidates) {
        const info = await this.info(index);
        if (info?.role === 'leader') return index;
      }
      return null;
    });
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.index)));
  }

  async destroy(): Promise<void> {
    await this.stopAll();
    rmSync(this.dir, { recursive: true, force: true });
  }

  logs(): string {
    return this.nodes
      .map((n) => `--- node ${n.index + 1} (port ${n.client_port})\n${n.stderr.slice(-4000)}`)
      .join('\n');
  }
}

/**
 * Runs `body` against a started cluster; on failure appends the nodes' logs to the error; always
 * cleans up.
 */
export async function withCluster(
  options: ClusterOptions,
  body: (cluster: TestCluster) => Promise<void>,
): Promise<void> {
  const cluster = await TestCluster.create(options);
  try {
    cluster.startAll();
    await body(cluster);
  } catch (error) {
    if (error instanceof Error) error.message += `\n${cluster.logs()}`;
    throw error;
  } finally {
    await cluster.destroy();
  }
}

/**
 * Kills the leader (node `leader`), waits for a new one among the others, and reads every
 * `expected` key back through them: what a majority acknowledged survives losing the node that
 * acknowledged it (and a follower that caught up serves it).
 */
export async function assertServedWithoutLeader(
  cluster: TestCluster,
  leader: number,
  expected: Iterable<[key: string, value: string]>,
): Promise<void> {
  await cluster.kill(leader);
  const survivors = cluster.nodes.map((n) => n.index).filter((i) => i !== leader);
  await cluster.waitForLeader(15_000, survivors);
  const reader = cluster.client(survivors);
  try {
    for (const [key, value] of expected) assert.deepEqual(await reader.get(key), [value], key);
  } finally {
    await reader.close();
  }
}

/** Sends raw bytes and collects what comes back until `until` matches or the socket closes. */
export function rawExchange(
  port: number,
  payload: Buffer | string,
  until: (received: Buffer) => boolean,
  timeout_ms = 5000,
): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(
        new Error(
          `raw exchange on ${port} timed out; received ` +
            `${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`,
        ),
      );
    }, timeout_ms);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (until(Buffer.concat(chunks))) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}
