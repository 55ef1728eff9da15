/**
 * `node dist/bench/membership_change.js [--keys N] [--snapshot-entries M]`: how long membership
 * changes take on a 5-node cluster holding N keys (default 100,000) and what clients see
 * meanwhile. `--snapshot-entries` below N makes the nodes compact, so the added node catches up
 * by InstallSnapshot rather than from the log.
 *
 * Loads N keys (pipelined SETs), then starts two clients that write one after another through
 * the three nodes that stay, adds a sixth node as an operator would (RAFT.NODE ADD, timed until
 * +OK; then the node started with `join`, timed until the leader promoted it to voter), removes
 * a follower, then the leader (RAFT.NODE REMOVE, each timed until +OK), then waits for the new
 * leader. Prints each change's duration, the new leader's election time, and the clients'
 * latencies (median, max) and failed calls per phase.
 * Figures go in notes, never in tests.
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../src/client';
import { TestCluster } from '../test/integration/cluster_harness';
import { addJoiner, adminCommand, waitVoter } from '../test/integration/membership_support';

interface Phase {
  name: string;
  latencies_ms: number[];
  failures: number;
}

/** `--name N`: a positive integer, or `fallback` when the flag is absent. */
function parseCount(argv: string[], name: string, fallback: number | null): number | null {
  const at = argv.indexOf(name);
  if (at === -1) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} needs a positive integer`);
  return value;
}

async function load(cluster: TestCluster, keys: number): Promise<number> {
  const client = cluster.client(undefined, { call_timeout_ms: 60_000 });
  const started = performance.now();
  try {
    const batch = 2000;
    for (let from = 0; from < keys; from += batch) {
      const calls: Promise<void>[] = [];
      for (let i = from; i < Math.min(keys, from + batch); i++)
        calls.push(client.set(`key:${i}`, `value-${i}-${'x'.repeat(32)}`));
      await Promise.all(calls);
    }
  } finally {
    await client.close();
  }
  return performance.now() - started;
}

async function writer(addresses: string[], phase: () => Phase, running: () => boolean) {
  const client = new KvClient({ nodes: addresses, call_timeout_ms: 2000 });
  let counter = 0;
  try {
    while (running()) {
      const started = performance.now();
      try {
        await client.set(`load:${counter % 100}`, `v${counter++}`);
        phase().latencies_ms.push(performance.now() - started);
      } catch {
        phase().failures++;
      }
    }
  } finally {
    await client.close();
  }
}

/** RAFT.NODE ADD by the operator, then the node started with `join`; prints both durations. */
async function add(cluster: TestCluster, leader: number, extra_config: string[]): Promise<void> {
  const joiner = await addJoiner(cluster, leader, { extra_config });
  const address = cluster.address(joiner);
  const started = performance.now();
  const reply = await adminCommand(cluster, leader, ['RAFT.NODE', 'ADD', address]);
  if (!reply.startsWith('OK id=')) throw new Error(`RAFT.NODE ADD ${address}: ${reply}`);
  const ok_ms = performance.now() - started;
  console.log(`add ${address}: +${reply} after ${ok_ms.toFixed(1)} ms`);
  const node_started = performance.now();
  cluster.start(joiner);
  await waitVoter(cluster, address, 600_000);
  console.log(
    `  promoted to voter ${(performance.now() - node_started).toFixed(0)} ms after the node ` +
      `started (${(performance.now() - started).toFixed(0)} ms after the ADD)`,
  );
  // How it caught up (snapshot or log), in its own words.
  for (const line of cluster.nodes[joiner]!.stderr.split('\n'))
    if (/joined the cluster|snapshot/.test(line)) console.log(`  ${line}`);
}

async function remove(cluster: TestCluster, leader: number, id: string): Promise<number> {
  const admin = new KvClient({ nodes: [cluster.address(leader)], call_timeout_ms: 10_000 });
  const started = performance.now();
  try {
    const reply = await admin.command(['RAFT.NODE', 'REMOVE', id]);
    if (reply.type !== 'simple')
      throw new Error(`RAFT.NODE REMOVE ${id}: ${JSON.stringify(reply)}`);
  } finally {
    await admin.close();
  }
  return performance.now() - started;
}

function summary(phase: Phase): string {
  const sorted = [...phase.latencies_ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const max = sorted[sorted.length - 1] ?? 0;
  return (
    `${phase.name}: ${sorted.length} writes, median ${median.toFixed(1)} ms, ` +
    `max ${max.toFixed(1)} ms, ${phase.failures} failed calls`
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const keys = parseCount(argv, '--keys', 100_000) ?? 100_000;
  // Below the key count, the leader compacts its log and the new node catches up by snapshot.
  const snapshot_entries = parseCount(argv, '--snapshot-entries', null);
  const extra_config = snapshot_entries === null ? [] : [`snapshot_entries ${snapshot_entries}`];
  const cluster = await TestCluster.create({ nodes: 5, log_level: 'warn', extra_config });
  try {
    cluster.startAll();
    const leader = await cluster.waitForLeader(15_000);
    console.log(`loaded ${keys} keys in ${(await load(cluster, keys)).toFixed(0)} ms`);
    const infos = await Promise.all(cluster.nodes.map((n) => cluster.info(n.index)));
    const idOf = (index: number): string => infos[index]?.node_id ?? '?';
    const follower = cluster.nodes.find((n) => n.index !== leader)!.index;
    const keep = cluster.nodes.map((n) => n.index).filter((i) => i !== leader && i !== follower);
    const phases: Phase[] = [];
    const begin = (name: string): void => {
      phases.push({ name, latencies_ms: [], failures: 0 });
    };
    const current = (): Phase => phases[phases.length - 1]!;
    let running = true;
    begin('before');
    const writers = [0, 1].map(() => writer(cluster.addresses(keep), current, () => running));
    // Long enough for the snapshots the load triggered to finish: 'before' is the steady state.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    begin('add node');
    await add(cluster, leader, extra_config);
    begin('remove follower');
    const follower_ms = await remove(cluster, leader, idOf(follower));
    console.log(`remove follower ${idOf(follower)}: ${follower_ms.toFixed(1)} ms`);
    begin('remove leader');
    const started = performance.now();
    const leader_ms = await remove(cluster, leader, idOf(leader));
    console.log(`remove leader ${idOf(leader)}: ${leader_ms.toFixed(1)} ms`);
    const successor = await cluster.waitForLeader(10_000, keep);
    console.log(
      `new leader ${idOf(successor)} after ${(performance.now() - started).toFixed(0)} ms`,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    begin('after');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    running = false;
    await Promise.all(writers);
    for (const phase of phases) console.log(summary(phase));
  } finally {
    await cluster.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
