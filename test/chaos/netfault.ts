/**
 * Real network partitions between processes on one host: every node binds
 * its own loopback address (127.a.b.k), and packets are dropped by iptables
 * rules in a chain of our own, KVCHAOS-<pid>, jumped to from INPUT on `lo`.
 * Dropping on INPUT (not OUTPUT) makes a cut silent, as on a real network:
 * the sender's packets leave and vanish, nobody gets a quick error.
 *
 * Needs root and the iptables binary; without them `NetFaults.open` throws a
 * message saying so (a chaos test must fail, not skip). Every rule lives in
 * the one chain, so `close` (also run at exit and on SIGINT/SIGTERM by the
 * runner) removes them all, and `sweepLeftovers` removes the chains of
 * earlier runs whose process is gone.
 */
import { execFileSync } from 'node:child_process';

const CHAIN_PREFIX = 'KVCHAOS-';
/** Clients (and forwarders between nodes) connect from this address. */
export const CLIENT_SOURCE_IP = '127.0.0.1';

function iptables(args: string[]): string {
  return execFileSync('iptables', ['-w', '5', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function tryIptables(args: string[]): boolean {
  try {
    iptables(args);
    return true;
  } catch {
    return false;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function removeChain(chain: string): void {
  while (tryIptables(['-D', 'INPUT', '-i', 'lo', '-j', chain])) {
    // a jump added twice is removed twice
  }
  tryIptables(['-F', chain]);
  tryIptables(['-X', chain]);
}

export class NetFaults {
  readonly chain: string;
  private closed = false;
  /** Rules currently in the chain, as iptables arguments after `-A chain`. */
  private rules: string[][] = [];

  private constructor(chain: string) {
    this.chain = chain;
  }

  /** Checks the privileges, sweeps leftovers and creates this process's chain. */
  static open(): NetFaults {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) {
      throw new Error(
        'chaos needs root to cut the network with iptables (run as root, e.g. in CI via .ci/run)',
      );
    }
    try {
      iptables(['-S', 'INPUT']);
    } catch (error) {
      throw new Error(
        `chaos needs a working iptables (apt-get install iptables): ${(error as Error).message}`,
      );
    }
    NetFaults.sweepLeftovers();
    const faults = new NetFaults(`${CHAIN_PREFIX}${process.pid}`);
    removeChain(faults.chain);
    iptables(['-N', faults.chain]);
    iptables(['-I', 'INPUT', '-i', 'lo', '-j', faults.chain]);
    return faults;
  }

  /** Removes the chains of earlier runs whose process no longer exists; returns their names. */
  static sweepLeftovers(): string[] {
    const removed: string[] = [];
    const listing = iptables(['-S']);
    for (const match of listing.matchAll(/^-N (KVCHAOS-(\d+))$/gm)) {
      const chain = match[1] as string;
      const pid = Number(match[2]);
      if (pid === process.pid || processAlive(pid)) continue;
      removeChain(chain);
      removed.push(chain);
    }
    return removed;
  }

  /** Drops every packet from `from_ip` to `to_ip` (one way: replies still flow). */
  dropOneWay(from_ip: string, to_ip: string): void {
    this.add(['-s', from_ip, '-d', to_ip, '-j', 'DROP']);
  }

  /** Cuts the two addresses from each other. */
  cut(a_ip: string, b_ip: string): void {
    this.dropOneWay(a_ip, b_ip);
    this.dropOneWay(b_ip, a_ip);
  }

  /** Clients (and forwarding nodes, which also dial from 127.0.0.1) cannot reach this port. */
  cutClients(node_ip: string, client_port: number): void {
    this.add(['-s', CLIENT_SOURCE_IP, '-d', node_ip, '-p', 'tcp', '--dport', `${client_port}`]);
    this.add(['-s', node_ip, '-d', CLIENT_SOURCE_IP, '-p', 'tcp', '--sport', `${client_port}`]);
  }

  get rule_count(): number {
    return this.rules.length;
  }

  /** Removes every rule: the network is whole again. */
  heal(): void {
    if (this.closed || this.rules.length === 0) return;
    iptables(['-F', this.chain]);
    this.rules = [];
  }

  /** Removes the chain and its jump; idempotent and synchronous (safe in an exit handler). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    removeChain(this.chain);
  }

  private add(match: string[]): void {
    const rule = match.includes('-j') ? match : [...match, '-j', 'DROP'];
    iptables(['-A', this.chain, ...rule]);
    this.rules.push(rule);
  }
}
