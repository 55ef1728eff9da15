/**
 * Real `kvstoreraftsystem` processes for the chaos run, each on its own
 * loopback address 127.a.b.k (k = 1..n, so node ids follow the index), all
 * on the same ports, with temporary data directories and a log file each.
 * Every exit the nemesis did not ask for is recorded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient } from '../../src/client';
import type { ClientRedirect, TestFault } from '../../src/config/config';

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
      lines.push(`data_dir ${join(dir, `node${index + 1}`)}`, 'log_level info');
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
