/**
 * What a stranger on the network can send to a node's Raft port, as raw seed-format frames, plus
 * a writer that measures how long writes were unavailable meanwhile. Kept free of modules newer
 * than the seed's wire codec and client, so that the same attacks can be run against an older
 * build (see hostile_measure.ts) for before/after figures.
 */
import * as net from 'node:net';
import { encodeCommand } from '../../src/kv/command_codec';
import { encodeMessage } from '../../src/wire/codec';
import { MessageType } from '../../src/raft/protocol';
import type { TestCluster } from './cluster_harness';

export const INT32_MAX = 0x7fff_ffff;

/**
 * Writes raw bytes to a port; resolves once the peer closed the connection or `linger_ms` passed.
 */
export function sendRaw(
  port: number,
  bytes: Buffer,
  linger_ms = 300,
): Promise<{ closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ closed });
    };
    const timer = setTimeout(() => finish(false), linger_ms);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', () => undefined);
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

/** Encodes the frame with a plain Buffer write, so that terms the codec refuses can be sent too. */
export function voteFrame(term: number, candidate_id: number, last_index = 1_000_000): Buffer {
  const frame = encodeMessage({
    type: MessageType.RequestVoteRequest,
    term: 1,
    candidate_id,
    last_log_index: last_index,
    last_log_term: 1,
  });
  frame.writeInt32LE(term, 8);
  frame.writeInt32LE(Math.min(term, INT32_MAX), 20); // a log as new as it gets
  return frame;
}

export function timeoutNowFrame(term: number, leader_id: number): Buffer {
  return encodeMessage({ type: MessageType.TimeoutNow, term, leader_id });
}

export function appendFrame(options: {
  term: number;
  leader_id: number;
  prev_log_index: number;
  prev_log_term: number;
  leader_commit: number;
  entries: { term: number; data: Uint8Array }[];
}): Buffer {
  return encodeMessage({ type: MessageType.AppendEntriesRequest, seq: 1, ...options });
}

export function setCommand(key: string, value: string): Uint8Array {
  return encodeCommand({ op: 'set', key: Buffer.from(key), words: [Buffer.from(value)] });
}

export interface RaftView {
  term: number;
  role: string;
  leader_id: number;
  last_log_index: number;
  last_log_term: number;
  commit_index: number;
}

export async function raftView(cluster: TestCluster, index: number): Promise<RaftView | null> {
  const info = await cluster.info(index);
  if (info === null) return null;
  return {
    term: Number(info.term),
    role: info.role ?? '',
    leader_id: Number(info.leader_id),
    last_log_index: Number(info.last_log_index),
    last_log_term: Number(info.last_log_term),
    commit_index: Number(info.commit_index),
  };
}

export interface WriteRecord {
  /** Keys whose SET was acknowledged, with the value written. */
  acked: Map<string, string>;
  /** Longest time between two acknowledged writes (or from start / to end), in ms. */
  max_gap_ms: number;
  failures: number;
}

/**
 * Writes `prefix-i` keys one after another through every node while `attack` runs, and for
 * `settle_ms` after it; records the longest stretch without an acknowledged write.
 */
export async function writeDuring(
  cluster: TestCluster,
  prefix: string,
  attack: () => Promise<void>,
  settle_ms = 1000,
): Promise<WriteRecord> {
  const client = cluster.client(undefined, { call_timeout_ms: 1000 });
  const record: WriteRecord = { acked: new Map(), max_gap_ms: 0, failures: 0 };
  let running = true;
  let last_ack_ms = performance.now();
  const writer = (async () => {
    for (let i = 0; running; i++) {
      const key = `${prefix}-${i}`;
      try {
        await client.set(key, `v${i}`);
        const now_ms = performance.now();
        record.max_gap_ms = Math.max(record.max_gap_ms, now_ms - last_ack_ms);
        last_ack_ms = now_ms;
        record.acked.set(key, `v${i}`);
      } catch {
        record.failures++;
      }
    }
  })();
  try {
    await attack();
    await new Promise((resolve) => setTimeout(resolve, settle_ms));
  } finally {
    running = false;
    await writer;
    record.max_gap_ms = Math.max(record.max_gap_ms, performance.now() - last_ack_ms);
    await client.close();
  }
  return record;
}

/** Every acknowledged write reads back (through the leader, linearizably). */
export async function missingWrites(
  cluster: TestCluster,
  acked: Map<string, string>,
): Promise<string[]> {
  const client = cluster.client(undefined, { call_timeout_ms: 5000 });
  const missing: string[] = [];
  try {
    for (const [key, value] of acked) {
      const words = await client.get(key);
      if (words === null || words.join(' ') !== value) missing.push(key);
    }
  } finally {
    await client.close();
  }
  return missing;
}

/**
 * Runs `round` with every node's view (null: no answer) every `period_ms` until `duration_ms`
 * passed: a storm of frames the round sends.
 */
async function storm(
  cluster: TestCluster,
  duration_ms: number,
  period_ms: number,
  round: (views: (RaftView | null)[]) => Promise<unknown>,
): Promise<void> {
  const until_ms = performance.now() + duration_ms;
  while (performance.now() < until_ms) {
    await round(await Promise.all(cluster.nodes.map((n) => raftView(cluster, n.index))));
    await new Promise((resolve) => setTimeout(resolve, period_ms));
  }
}

/** The election attack of the issue: every `period_ms`, a vote request at term+1 to each node. */
export function voteStorm(
  cluster: TestCluster,
  duration_ms: number,
  period_ms: number,
): Promise<void> {
  return storm(cluster, duration_ms, period_ms, (views) => {
    const term = Math.max(0, ...views.map((v) => v?.term ?? 0));
    return Promise.all(
      cluster.nodes.map((node, i) => {
        const candidate = ((i + 1) % cluster.nodes.length) + 1; // a member other than the target
        return sendRaw(node.raft_port, voteFrame(term + 1, candidate), 50);
      }),
    );
  });
}

/** TimeoutNow naming the current leader, at its term, to every follower, every `period_ms`. */
export function timeoutNowStorm(
  cluster: TestCluster,
  duration_ms: number,
  period_ms: number,
): Promise<void> {
  return storm(cluster, duration_ms, period_ms, async (views) => {
    const leader = views.find((v) => v?.role === 'leader');
    if (leader === undefined || leader === null) return;
    await Promise.all(
      cluster.nodes.map((node, i) =>
        views[i]?.role === 'follower'
          ? sendRaw(node.raft_port, timeoutNowFrame(leader.term, leader.leader_id), 50)
          : Promise.resolve(),
      ),
    );
  });
}
