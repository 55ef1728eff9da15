/**
 * Snapshots and compaction with real processes (snapshot_entries set small): the data directory
 * stays bounded under many overwrites, nodes restart from their snapshots, a node killed with
 * kill -9 again and again while it snapshots restarts with every acknowledged write, and a
 * follower that was down catches up (by log: the leader keeps what its followers still need).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { KvClient } from '../../src/client';
import { assertServedWithoutLeader, pollUntil, withCluster } from './cluster_harness';

const TEST_TIMEOUT_MS = 180_000;
const SNAPSHOT_CONFIG = ['snapshot_entries 400'];

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir)) total += fs.statSync(path.join(dir, name)).size;
  return total;
}

/** `count` SETs, `concurrency` at a time, over `keys` keys; returns each key's last acked value. */
async function overwrite(
  client: KvClient,
  count: number,
  keys: number,
  concurrency = 64,
): Promise<Map<string, string>> {
  const acknowledged = new Map<string, string>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const key = `key${i % keys}`;
      await client.set(key, `value-${i}`);
      // Writers of one key never overlap (i % keys differ within a window of `keys`), so the
      // acknowledged value with the highest i is the key's final value.
      const previous = acknowledged.get(key);
      if (previous === undefined || Number(previous.slice(6)) < i)
        acknowledged.set(key, `value-${i}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return acknowledged;
}

async function assertServed(client: KvClient, expected: Map<string, string>): Promise<void> {
  for (const [key, value] of expected) assert.deepEqual(await client.get(key), [value], key);
}

test('many overwrites of few keys keep the leader data directory under 1 MiB', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3, extra_config: SNAPSHOT_CONFIG }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const client = cluster.client([leader]);
    const expected = await overwrite(client, 20_000, 100);
    await client.close();
    // Only a leader compacts its log (until InstallSnapshot exists); every node snapshots.
    const first = await pollUntil('the leader compacted', 20_000, async () => {
      const value = await cluster.infoNumber(leader, 'log_first_index');
      return value > 10_000 ? value : null;
    });
    const bytes = dirBytes(cluster.nodes[leader]!.data_dir);
    // Uncompacted, 20,000 writes of ~40 bytes each make a WAL of about 1.4 MB.
    assert.ok(bytes < 1024 * 1024, `leader: log starts at ${first}, data directory ${bytes} bytes`);
    for (const node of cluster.nodes) {
      await pollUntil(`node ${node.index} snapshotted`, 20_000, async () =>
        (await cluster.infoNumber(node.index, 'snapshot_index')) > 10_000 ? true : null,
      );
    }
    for (const node of cluster.nodes) await cluster.kill(node.index);
    cluster.startAll();
    await cluster.waitForLeader();
    for (const node of cluster.nodes) {
      assert.match(node.stderr, /loaded snapshot .*snapshot-\d+-\d+\.snap/, `node ${node.index}`);
    }
    const again = cluster.client();
    await assertServed(again, expected);
    await again.close();
  });
});

test('kill -9 of a follower while it snapshots, again and again: no acked write lost', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3, extra_config: ['snapshot_entries 50'] }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = (leader + 1) % 3;
    const client = cluster.client([leader]);
    const expected = new Map<string, string>();
    for (let round = 0; round < 6; round++) {
      const writing = overwrite(client, 1500, 300, 16);
      await new Promise((resolve) => setTimeout(resolve, 50 + 40 * round));
      await cluster.kill(follower); // mid-load: often while a snapshot is being written
      for (const [key, value] of await writing) expected.set(key, value);
      cluster.start(follower);
    }
    await client.close();
    const leader_keys = await cluster.infoNumber(leader, 'keys');
    await cluster.waitCaughtUp(leader, follower, 30_000);
    assert.equal(await cluster.infoNumber(follower, 'keys'), leader_keys);
    await assertServedWithoutLeader(cluster, leader, expected);
  });
});

test('a follower stopped during 5,000 writes catches up after its restart and serves them', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3, extra_config: SNAPSHOT_CONFIG }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = (leader + 1) % 3;
    await cluster.kill(follower);
    const client = cluster.client([leader]);
    const expected = await overwrite(client, 5000, 5000);
    await client.close();
    cluster.start(follower);
    const started = Date.now();
    await cluster.waitCaughtUp(leader, follower, 60_000);
    const catch_up_ms = Date.now() - started;
    assert.equal(await cluster.infoNumber(follower, 'keys'), 5000);
    await assertServedWithoutLeader(cluster, leader, expected);
    console.log(`follower caught up on 5,000 writes in ${catch_up_ms} ms`);
  });
});
