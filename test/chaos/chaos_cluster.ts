/**
 * Real `kvstoreraftsystem` processes for the chaos run, each on its own
 * loopback address 127.a.b.k (k = 1..n, so node ids follow the index), all
 * on the same ports, with temporary data directories and a log file each.
 * Every exit the nemesis did not ask for is recorded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient } from '../../src/client';
import type { ClientRedirect, TestFault } from '../../src/config/config';
import { readSyncedLength, SYNCED_SUFFIX } from '../../src/storage/test_disk';
import type { SeededRandom } from '../../src/util/prng';

const NODE_BIN = join(__dirname, '..', '..', '..', 'kvstoreraftsystem');
/** Log lines that mean the node itself went wrong (not a peer or client). */
const INTERNAL_ERROR = /\bERROR\b|AssertionError|Uncaught|FATAL|invariant/;

export interface ChaosNode {
  index: number;
  ip: string;
  client_port: number;
  raft_port: number;
  config_path: string;
  log_path: string;
  data_dir: string;
  /** While this file exists the node's fsyncs are slow (test_fsync_delay_file). */
  slow_disk_path: string;
  process: ChildProcess | null;
  /** Set while the nemesis is stopping it: that exit is expected. */
  exit_expected: boolean;
  paused: boolean;
}

export interface ChaosClusterOptions {
  nodes: number;
  mode: ClientRedirect;
  test_faults: readonly TestFault[];
}

function canListen(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, ip, () => server.close(() => resolve(true)));
  });
}

export class ChaosCluster {
  readonly dir: string;
  readonly nodes: ChaosNode[] = [];
  /** "node 3 exited with code 1" for every exit nobody asked for. */
  readonly unexpected_exits: string[] = [];

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(options: ChaosClusterOptions): Promise<ChaosCluster> {
    const subnet = `127.${100 + (process.pid % 100)}.${Math.floor(Math.random() * 256)}`;
    const ips = Array.from({ length: options.nodes }, (_, k) => `${subnet}.${k + 1}`);
    const client_port = await ChaosCluster.freePort(ips);
    const dir = mkdtempSync(join(tmpdir(), 'kvraft-chaos-'));
    const cluster = new ChaosCluster(dir);
    for (const [index, ip] of ips.entries()) {
      const lines = ['! chaos test node', `follower_info ${ip}:${client_port}`];
      for (const other of ips)
        if (other !== ip) lines.push(`follower_info ${other}:${client_port}`);
      const data_dir = join(dir, `node${index + 1}`);
      const slow_disk_path = join(dir, `node${index + 1}.slow_disk`);
      lines.push(`data_dir ${data_dir}`, 'log_level info');
      // Test-only disk hooks for the slow_disk and power_loss faults (src/storage/test_disk.ts).
      lines.push('test_synced_lengths on', `test_fsync_delay_file ${slow_disk_path}`);
      lines.push(`client_redirect ${options.mode}`, 'request_timeout_ms 2000');
      if (options.test_faults.length > 0)
        lines.push(`test_faults ${options.test_faults.join(',')}`);
      const config_path = join(dir, `node${index + 1}.conf`);
      writeFileSync(config_path, `${lines.join('\n')}\n`);
      cluster.nodes.push({
        index,
        ip,
        client_port,
        raft_port: client_port - 1000,
        config_path,
        log_path: join(dir, `node${index + 1}.log`),
        data_dir,
        slow_disk_path,
        process: null,
        exit_expected: false,
        paused: false,
      });
    }
    return cluster;
  }

  private static async freePort(ips: string[]): Promise<number> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = 20_000 + Math.floor(Math.random() * 35_000);
      let free = true;
      for (const ip of ips) {
        if (!(await canListen(ip, port)) || !(await canListen(ip, port - 1000))) free = false;
      }
      if (free) return port;
    }
    throw new Error('no free port pair on the chaos addresses');
  }

  start(index: number): void {
    const node = this.nodes[index]!;
    if (node.process !== null) return;
    const log_fd = openSync(node.log_path, 'a');
    const child = spawn(process.execPath, [NODE_BIN, '--config_path', node.config_path], {
      stdio: ['ignore', log_fd, log_fd],
    });
    closeSync(log_fd);
    node.process = child;
    node.exit_expected = false;
    node.paused = false;
    child.on('exit', (code, signal) => {
      if (node.process === child) node.process = null;
      if (!node.exit_expected)
        this.unexpected_exits.push(`node ${index + 1} exited (code ${code}, signal ${signal})`);
    });
  }

  /** kill -9 (or a graceful SIGTERM) and wait for the exit. */
  async stop(index: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const node = this.nodes[index]!;
    const child = node.process;
    if (child === null) return;
    node.exit_expected = true;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    if (node.paused) child.kill('SIGCONT');
    node.paused = false;
    await exited;
  }

  /** Every fsync of the node waits [min, max] ms from now on; null: a fast disk again. */
  setSlowDisk(index: number, range_ms: [number, number] | null): void {
    const node = this.nodes[index]!;
    if (range_ms === null) rmSync(node.slow_disk_path, { force: true });
    else writeFileSync(node.slow_disk_path, `${range_ms[0]} ${range_ms[1]}\n`);
  }

  /**
   * After the node was killed: what a power loss may leave of its files. Each file is cut back to
   * what its last fdatasync made durable, and sometimes keeps a torn prefix of the rest (written
   * but not synced bytes may partly reach the disk). Returns the bytes dropped.
   */
  losePower(index: number, rng: SeededRandom): number {
    const node = this.nodes[index]!;
    assert.equal(node.process, null, 'power loss of a running node');
    let dropped = 0;
    let names: string[] = [];
    try {
      names = readdirSync(node.data_dir);
    } catch {
      return 0; // never started
    }
    for (const name of names) {
      if (!name.endsWith(SYNCED_SUFFIX)) continue;
      const file = join(node.data_dir, name.slice(0, -SYNCED_SUFFIX.length));
      const synced = readSyncedLength(file);
      let size: number;
      try {
        size = statSync(file).size;
      } catch {
        continue;
      }
      if (synced === null || size <= synced) continue;
      const kept = rng.float() < 0.5 ? synced : synced + rng.int(size - synced);
      truncateSync(file, kept);
      dropped += size - kept;
    }
    return dropped;
  }

  pause(index: number): void {
    const node = this.nodes[index]!;
    if (node.process === null || node.paused) return;
    node.process.kill('SIGSTOP');
    node.paused = true;
  }

  resume(index: number): void {
    const node = this.nodes[index]!;
    if (node.process !== null && node.paused) node.process.kill('SIGCONT');
    node.paused = false;
  }

  running(index: number): boolean {
    const node = this.nodes[index]!;
    return node.process !== null && !node.paused;
  }

  address(index: number): string {
    const node = this.nodes[index]!;
    return `${node.ip}:${node.client_port}`;
  }

  /** INFO of one node (its own answer, never forwarded); null when it does not answer. */
  async info(index: number, section = 'raft'): Promise<Record<string, string> | null> {
    const client = new KvClient({ nodes: [this.address(index)], call_timeout_ms: 500 });
    try {
      const reply = await client.command(['INFO', section]);
      if (reply.type !== 'bulk' || reply.value === null) return null;
      const fields: Record<string, string> = {};
      for (const line of reply.value.toString('utf8').split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
      }
      return fields;
    } catch {
      return null;
    } finally {
      await client.close();
    }
  }

  /** The running node that says it leads (the highest term if several do), or null. */
  async leader(): Promise<number | null> {
    const infos = await Promise.all(
      this.nodes.map((n) => (this.running(n.index) ? this.info(n.index) : null)),
    );
    let best: number | null = null;
    let best_term = -1;
    for (const [index, info] of infos.entries()) {
      const term = Number(info?.term ?? info?.current_term ?? -1);
      if (info?.role === 'leader' && term > best_term) {
        best = index;
        best_term = term;
      }
    }
    return best;
  }

  /** Lines of the node logs that show an internal error. */
  internalErrors(): string[] {
    const found: string[] = [];
    for (const node of this.nodes) {
      let text = '';
      try {
        text = readFileSync(node.log_path, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n'))
        if (INTERNAL_ERROR.test(line)) found.push(`node ${node.index + 1}: ${line}`);
    }
    return found;
  }

  logTail(index: number, lines = 30): string {
    try {
      return readFileSync(this.nodes[index]!.log_path, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Synchronous, for exit handlers: SIGKILL every process we started, remove the files. */
  killAllSync(): void {
    for (const node of this.nodes) {
      node.exit_expected = true;
      try {
        node.process?.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async destroy(keep_dir: boolean): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.stop(n.index, 'SIGKILL')));
    if (!keep_dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
