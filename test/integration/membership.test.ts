/**
 * Membership changes on real processes under client load (issue 15): shrink 5 → 3 with
 * RAFT.NODE REMOVE, the leader being one of the removed; the clients' history must be
 * linearizable and the removed nodes must not disturb the remaining cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvClient } from '../../src/client';
import type { HistoryOperation } from '../sim/linearizability';
import { pollUntil, TestCluster } from './cluster_harness';
import { assertHistory, clientLoop, removeNode } from './membership_support';

test('shrink 5 → 3 under client load, removing a follower and then the leader', {
  timeout: 120_000,
}, async (t) => {
  const cluster = await TestCluster.create({ nodes: 5 });
  const history: HistoryOperation[] = [];
  const started = performance.now();
  const now = (): number => performance.now() - started;
  let running = true;
  try {
    cluster.startAll();
    const leader = await cluster.waitForLeader(15_000);
    const ids = await Promise.all(cluster.nodes.map(async (n) => (await cluster.info(n.index))!));
    const idOf = (index: number): number => Number(ids[index]!.node_id);
    const follower = cluster.nodes.find((n) => n.index !== leader)!.index;
    const keep = cluster.nodes.map((n) => n.index).filter((i) => i !== leader && i !== follower);
    const clients = [0, 1, 2].map((id) =>
      clientLoop(cluster.addresses(keep), id, history, now, () => running),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const follower_ms = await removeNode(cluster, leader, idOf(follower));
    const leader_ms = await removeNode(cluster, leader, idOf(leader));
    t.diagnostic(
      `remove follower: ${follower_ms.toFixed(0)} ms, leader: ${leader_ms.toFixed(0)} ms`,
    );
    const successor = await cluster.waitForLeader(10_000, keep);
    const successor_info = (await cluster.info(successor))!;
    const admin = new KvClient({ nodes: [cluster.address(successor)] });
    const nodes_reply = await admin.command(['RAFT.NODES']);
    await admin.close();
    const listing = nodes_reply.type === 'bulk' ? String(nodes_reply.value) : '';
    t.diagnostic(`RAFT.NODES on the new leader:\n${listing}`);
    assert.equal(listing.trim().split('\n').length, 3, listing);
    assert.ok(!listing.includes('leaving'), listing);
    // The removed nodes keep running and must not disturb the cluster with elections.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const later = (await cluster.info(successor))!;
    assert.equal(later.role, 'leader');
    assert.equal(later.term, successor_info.term, 'no election after the removals');
    running = false;
    await Promise.all(clients);
    assertHistory(history, (line) => t.diagnostic(line));
    await pollUntil('a write after the shrink', 5000, async () => {
      const client = cluster.client(keep);
      try {
        await client.set('after', 'shrink');
        return true;
      } finally {
        await client.close();
      }
    });
  } catch (error) {
    running = false;
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${cluster.logs()}`);
  } finally {
    running = false;
    await cluster.destroy();
  }
});
