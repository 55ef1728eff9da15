/**
 * Helpers for the membership tests on real processes: a client loop that records a history for
 * the linearizability checker, admin commands, and nodes started with `join`.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvClient } from '../../src/client';
import { checkLinearizable, type HistoryOperation, type KvInput } from '../sim/linearizability';
import { callKv } from '../support/kv_history';
import { freePortPairs } from '../support/ports';
import { pollUntil, type TestCluster } from './cluster_harness';

const KEYS = 4;

/** Writes and reads a few keys until `running()` turns false, recording every known outcome. */
export async function clientLoop(
  addresses: string[],
  client_id: number,
  history: HistoryOperation[],
  now: () => number,
  running: () => boolean,
): Promise<void> {
  const client = new KvClient({ nodes: addresses, call_timeout_ms: 3000 });
  let counter = 0;
  try {
    while (running()) {
      const key = `k${counter % KEYS}`;
      const input: KvInput =
        counter % 3 === 0
          ? { kind: 'get', key }
          : { kind: 'set', key, value: `c${client_id}-${++counter}` };
      if (input.kind === 'get') counter++;
      const call_time = now();
      const outcome = await callKv(client, input);
      if (outcome.kind !== 'failed') {
        const { output } = outcome;
        const return_time = output.kind === 'unknown' ? Infinity : now();
        history.push({ client_id, input, output, call_time, return_time });
      }
    }
  } finally {
    await client.close();
  }
}

/**
 * The clients' history is linearizable and holds more than 50 operations with a known outcome;
 * `diagnostic` gets the counts.
 */
export function assertHistory(
  history: HistoryOperation[],
  diagnostic: (line: string) => void,
): void {
  const result = checkLinearizable(history);
  assert.ok(result.ok, `history not linearizable: ${result.failure?.explanation ?? ''}`);
  const known = history.filter((op) => op.output.kind !== 'unknown').length;
  diagnostic(`${history.length} operations, ${known} with a known outcome`);
  assert.ok(known > 50, `${known} completed operations`);
}

/** One admin command to node `index`; the reply as text (`-` first for an error). */
export async function adminCommand(
  cluster: TestCluster,
  index: number,
  args: string[],
): Promise<string> {
  const admin = new KvClient({ nodes: [cluster.address(index)], call_timeout_ms: 8000 });
  try {
    const reply = await admin.command(args);
    if (reply.type === 'simple') return reply.value;
    if (reply.type === 'error') return `-${reply.message}`;
    if (reply.type === 'bulk') return reply.value === null ? '' : reply.value.toString('utf8');
    return JSON.stringify(reply);
  } finally {
    await admin.close();
  }
}

/** RAFT.NODE REMOVE through the leader; returns the ms it took. */
export async function removeNode(
  cluster: TestCluster,
  leader: number,
  id: number,
): Promise<number> {
  const started = performance.now();
  const reply = await adminCommand(cluster, leader, ['RAFT.NODE', 'REMOVE', String(id)]);
  assert.equal(reply, 'OK', `RAFT.NODE REMOVE ${id}`);
  return performance.now() - started;
}

export interface NodeLine {
  id: number;
  address: string;
  member: string;
  /** The leader's match index for it (`?` on a follower). */
  match: string;
}

/** RAFT.NODES of node `index`, parsed. */
export async function listNodes(cluster: TestCluster, index: number): Promise<NodeLine[]> {
  const text = await adminCommand(cluster, index, ['RAFT.NODES']);
  return text
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const field = (name: string): string => new RegExp(`${name}=(\\S+)`).exec(line)?.[1] ?? '';
      return {
        id: Number(field('id')),
        address: field('address'),
        member: field('member'),
        match: field('match'),
      };
    });
}

/** Polls the leader until `address` is a voter; returns its id. */
export async function waitVoter(
  cluster: TestCluster,
  address: string,
  timeout_ms: number,
): Promise<number> {
  return pollUntil(
    `${address} a voter`,
    timeout_ms,
    async () => {
      const leader = await cluster.waitForLeader(timeout_ms);
      const line = (await listNodes(cluster, leader)).find((n) => n.address === address);
      return line?.member === 'voter' ? line.id : null;
    },
    100,
  );
}

/**
 * A new node (index returned) whose config names only itself and `join`s the cluster through
 * node `via`; `client_port` reuses an address (a replacement), otherwise a free one is taken.
 * Not started.
 */
export async function addJoiner(
  cluster: TestCluster,
  via: number,
  options: { client_port?: number; extra_config?: string[] } = {},
): Promise<number> {
  const client_port = options.client_port ?? (await freePortPairs(1))[0]!;
  const index = cluster.nodes.length;
  const data_dir = join(cluster.dir, `joiner${index + 1}`);
  rmSync(data_dir, { recursive: true, force: true });
  const config_path = join(cluster.dir, `joiner${index + 1}.conf`);
  const lines = [
    '! a node that joins a running cluster',
    `follower_info 127.0.0.1:${client_port}`,
    `data_dir ${data_dir}`,
    'log_level info',
    `join ${cluster.address(via)}`,
    ...(options.extra_config ?? []),
  ];
  writeFileSync(config_path, `${lines.join('\n')}\n`);
  cluster.nodes.push({
    index,
    client_port,
    raft_port: client_port - 1000,
    config_path,
    data_dir,
    process: null,
    stderr: '',
    exit_code: null,
  });
  return index;
}

/** The node_id file of node `index`: its id and cluster line. */
export function storedIdentity(
  cluster: TestCluster,
  index: number,
): { id: number; cluster: string } {
  const text = readFileSync(join(cluster.nodes[index]!.data_dir, 'node_id'), 'latin1');
  const id = /^node_id (\d+)$/m.exec(text)?.[1];
  const fingerprint = /^cluster ([0-9a-f]{64})$/m.exec(text)?.[1];
  assert.ok(id !== undefined && fingerprint !== undefined, `node_id file: ${JSON.stringify(text)}`);
  return { id: Number(id), cluster: fingerprint };
}

/** Polls until the nodes hold the same state (INFO digest) at the same applied index. */
export async function waitSameState(
  cluster: TestCluster,
  indexes: number[],
  timeout_ms: number,
): Promise<string> {
  return pollUntil(
    `nodes ${indexes.join(',')} converged`,
    timeout_ms,
    async () => {
      const digests = await Promise.all(
        indexes.map((i) => adminCommand(cluster, i, ['INFO', 'digest'])),
      );
      const first = digests[0]!;
      return first.includes('state_digest:') && digests.every((d) => d === first) ? first : null;
    },
    100,
  );
}
