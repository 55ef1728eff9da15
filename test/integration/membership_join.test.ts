/**
 * Adding nodes to a running cluster on real processes (issue 15): grow 3 → 5 with two nodes
 * started with `join` under client load, both promoted to voters and holding every key, then
 * shrink back to 3 removing a bootstrap follower and the leader, the clients' history
 * linearizable throughout; and the replacement of a node whose data directory was lost, which
 * must come back under a new id, never its old one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HistoryOperation } from '../sim/linearizability';
import { pollUntil, TestCluster } from './cluster_harness';
import {
  addJoiner,
  assertHistory,
  clientLoop,
  listNodes,
  removeNode,
  storedIdentity,
  waitSameState,
  waitVoter,
} from './membership_support';

/** Small, so that the joiners catch up by InstallSnapshot and then the log. */
const EXTRA_CONFIG = ['snapshot_entries 200'];
const PRELOADED_KEYS = 300;

async function preload(cluster: TestCluster, keys: number): Promise<void> {
  const client = cluster.client();
  try {
    for (let i = 0; i < keys; i++) await client.set(`pre${i}`, `v${i}`);
  } finally {
    await client.close();
  }
}

async function readAll(cluster: TestCluster, index: number, keys: number): Promise<void> {
  const client = cluster.client([index]);
  try {
    for (let i = 0; i < keys; i++)
      assert.deepEqual(await client.get(`pre${i}`), [`v${i}`], `pre${i} through node ${index}`);
  } finally {
    await client.close();
  }
}

test('grow 3 → 5 with join under client load, then shrink to 3 removing the leader', {
  timeout: 120_000,
}, async (t) => {
  const cluster = await TestCluster.create({ nodes: 3, extra_config: EXTRA_CONFIG });
  const history: HistoryOperation[] = [];
  const started = performance.now();
  const now = (): number => performance.now() - started;
  let running = true;
  const clients: Promise<void>[] = [];
  try {
    cluster.startAll();
    const leader = await cluster.waitForLeader(15_000);
    await preload(cluster, PRELOADED_KEYS);
    for (const id of [0, 1, 2])
      clients.push(clientLoop(cluster.addresses([0, 1, 2]), id, history, now, () => running));
    await new Promise((resolve) => setTimeout(resolve, 500));

    // One joins through a follower (it must follow the leader hint), one through the leader.
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    const a = await addJoiner(cluster, follower, { extra_config: EXTRA_CONFIG });
    const b = await addJoiner(cluster, leader, { extra_config: EXTRA_CONFIG });
    const join_started = performance.now();
    cluster.start(a);
    cluster.start(b);
    const id_a = await waitVoter(cluster, cluster.address(a), 40_000);
    const id_b = await waitVoter(cluster, cluster.address(b), 40_000);
    t.diagnostic(`both joiners voters after ${(performance.now() - join_started).toFixed(0)} ms`);
    assert.deepEqual([id_a, id_b].sort(), [4, 5], 'new ids after the bootstrap ones');
    const bootstrap_identity = storedIdentity(cluster, 0);
    for (const [index, id] of [
      [a, id_a],
      [b, id_b],
    ] as const) {
      assert.deepEqual(storedIdentity(cluster, index), { id, cluster: bootstrap_identity.cluster });
    }
    const five = await listNodes(cluster, await cluster.waitForLeader(5000));
    assert.equal(five.filter((n) => n.member === 'voter').length, 5, JSON.stringify(five));

    // Shrink: a bootstrap follower, then the leader itself.
    const current = await cluster.waitForLeader(5000);
    const other = [0, 1, 2].find((i) => i !== current)!;
    const remove_other_ms = await removeNode(cluster, current, storedIdentity(cluster, other).id);
    const remove_leader_ms = await removeNode(
      cluster,
      current,
      storedIdentity(cluster, current).id,
    );
    t.diagnostic(
      `remove follower ${remove_other_ms.toFixed(0)} ms, leader ${remove_leader_ms.toFixed(0)} ms`,
    );
    const keep = [0, 1, 2, a, b].filter((i) => i !== current && i !== other);
    // A successor that has not yet committed the removals still replicates to the removed
    // nodes (listed as `leaving`) until an entry of its term commits: poll until they are gone.
    const keep_ids = keep.map((i) => storedIdentity(cluster, i).id).sort();
    let three: Awaited<ReturnType<typeof listNodes>> = [];
    await pollUntil('the successor lists only the three kept nodes', 10_000, async () => {
      three = await listNodes(cluster, await cluster.waitForLeader(10_000, keep));
      const ids = three.map((n) => n.id).sort();
      return JSON.stringify(ids) === JSON.stringify(keep_ids) ? true : null;
    }).catch((error: unknown) => {
      throw new Error(`${String(error)}: ${JSON.stringify(three)}`);
    });
    assert.ok(
      three.every((n) => n.member === 'voter'),
      JSON.stringify(three),
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    running = false;
    await Promise.all(clients);

    assertHistory(history, (line) => t.diagnostic(line));
    // Every key on the new nodes: the same state as the rest, and readable through them.
    await waitSameState(cluster, keep, 15_000);
    await readAll(cluster, a, PRELOADED_KEYS);
    await readAll(cluster, b, PRELOADED_KEYS);
  } catch (error) {
    running = false;
    await Promise.allSettled(clients);
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${cluster.logs()}`);
  } finally {
    running = false;
    await cluster.destroy();
  }
});

test('a node whose data directory was lost comes back under a new id, never its old one', {
  timeout: 90_000,
}, async (t) => {
  const cluster = await TestCluster.create({ nodes: 3, extra_config: EXTRA_CONFIG });
  try {
    cluster.startAll();
    const leader = await cluster.waitForLeader(15_000);
    await preload(cluster, 100);
    const lost = [0, 1, 2].find((i) => i !== leader)!;
    const lost_id = storedIdentity(cluster, lost).id;
    await cluster.kill(lost);
    rmSync(cluster.nodes[lost]!.data_dir, { recursive: true, force: true });

    // The same address, a fresh data directory, `join`: while the old id is still a member it
    // must not be handed back (the node forgot its vote and log).
    const fresh = await addJoiner(cluster, leader, {
      client_port: cluster.nodes[lost]!.client_port,
      extra_config: EXTRA_CONFIG,
    });
    cluster.start(fresh);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const before = await listNodes(cluster, leader);
    assert.equal(
      before.find((n) => n.id === lost_id)?.member,
      'voter',
      'the old id stays as it was',
    );
    assert.equal(before.length, 3, JSON.stringify(before));
    assert.ok(!existsSync(join(cluster.nodes[fresh]!.data_dir, 'node_id')), 'no identity given');

    await removeNode(cluster, leader, lost_id);
    // The joiner keeps retrying (or gave up: then the operator starts it again).
    if (cluster.nodes[fresh]!.process === null) cluster.start(fresh);
    const new_id = await waitVoter(cluster, cluster.address(fresh), 40_000);
    t.diagnostic(`replacement joined as node ${new_id}`);
    assert.notEqual(new_id, lost_id, 'an id is never reused');
    assert.equal(new_id, 4);
    assert.equal(storedIdentity(cluster, fresh).id, new_id);
    await pollUntil('a write after the replacement', 10_000, async () => {
      const client = cluster.client([fresh]);
      try {
        await client.set('after', 'replace');
        return true;
      } finally {
        await client.close();
      }
    });
    const members = [0, 1, 2, fresh].filter((i) => i !== lost);
    await waitSameState(cluster, members, 15_000);

    // A joined node restarted with its data directory just starts: no second ADD.
    const joins = (): number => cluster.nodes[fresh]!.stderr.split('joining the cluster').length;
    const joins_before = joins();
    await cluster.kill(fresh);
    cluster.start(fresh);
    await pollUntil('the joined node back', 10_000, async () => {
      const info = await cluster.info(fresh);
      return info?.node_id === String(new_id) ? true : null;
    });
    assert.equal(joins(), joins_before, 'no second join');
    // A node_id file from before the cluster line: the line is computed and added at start.
    const upgraded = [0, 1, 2].find((i) => i !== lost && i !== leader)!;
    const identity = storedIdentity(cluster, upgraded);
    await cluster.kill(upgraded);
    writeFileSync(join(cluster.nodes[upgraded]!.data_dir, 'node_id'), `node_id ${identity.id}\n`);
    cluster.start(upgraded);
    await pollUntil('the upgraded node back', 10_000, async () => {
      const info = await cluster.info(upgraded);
      return info?.node_id === String(identity.id) ? true : null;
    });
    assert.deepEqual(storedIdentity(cluster, upgraded), identity);
    const client = cluster.client(members);
    try {
      await client.set('after', 'restarts');
    } finally {
      await client.close();
    }
    await waitSameState(cluster, members, 15_000);
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${cluster.logs()}`);
  } finally {
    await cluster.destroy();
  }
});
