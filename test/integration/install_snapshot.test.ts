/**
 * InstallSnapshot with real processes (snapshot_entries small, so every node compacts): a follower
 * that missed 20,000 writes catches up by snapshot and serves every key; a follower killed with
 * kill -9 again and again while it receives or installs a snapshot restarts and converges with no
 * acknowledged write lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { KvClient } from '../../src/client';
import {
  assertServedWithoutLeader,
  pollUntil,
  type TestCluster,
  withCluster,
} from './cluster_harness';

const TEST_TIMEOUT_MS = 240_000;
const SNAPSHOT_CONFIG = ['snapshot_entries 1000'];
const ROUNDS = 6;
const ROUND_WRITES = 2_500;

const writtenValue = (i: number): string => `value-${i}-${'x'.repeat(40)}`;

/** `count` SETs of distinct keys, `concurrency` at a time; every one acknowledged. */
async function writeKeys(client: KvClient, prefix: string, count: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await client.set(`${prefix}${i}`, writtenValue(i));
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
}

const CATCH_UP_TIMEOUT_MS = 90_000;

/** The keys and values writeKeys(client, prefix, count) wrote. */
function* writtenKeys(prefix: string, count: number): Generator<[string, string]> {
  for (let i = 0; i < count; i += 1) yield [`${prefix}${i}`, writtenValue(i)];
}

test('a follower that missed 20,000 writes catches up by snapshot and serves every key', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await withCluster({ nodes: 3, extra_config: SNAPSHOT_CONFIG }, async (cluster) => {
    const leader = await cluster.waitForLeader();
    const follower = (leader + 1) % 3;
    await cluster.kill(follower);
    const client = cluster.client([leader]);
    await writeKeys(client, 'k', 20_000);
    await client.close();
    await pollUntil('the leader compacted past the follower', 30_000, async () =>
      (await cluster.infoNumber(leader, 'log_first_index')) > 1000 ? true : null,
    );
    const started = Date.now();
    cluster.start(follower);
    await cluster.waitCaughtUp(leader, follower, CATCH_UP_TIMEOUT_MS);
    const catch_up_ms = Date.now() - started;
    assert.ok((await cluster.infoNumber(follower, 'snapshots_installed')) >= 1);
    assert.ok((await cluster.infoNumber(leader, 'snapshots_sent')) >= 1);
    assert.match(cluster.nodes[follower]!.stderr, /installed a snapshot from the leader/);
    assert.equal(await cluster.infoField(follower, 'keys'), '20000');
    // The follower compacts too: its log starts after the installed snapshot.
    assert.ok((await cluster.infoNumber(follower, 'log_first_index')) > 1000);
    await assertServedWithoutLeader(cluster, leader, writtenKeys('k', 20_000));
    console.log(`follower caught up on 20,000 writes by snapshot in ${catch_up_ms} ms`);
  });
});

test('kill -9 of a follower while it receives or installs a snapshot: recovers, no write lost', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // A transfer of a few MB takes tens of ms on a quiet machine: too short to catch. While the
  // follower restarts, every fsync waits 200-400 ms (the test-only slow disk), so its partial
  // file lives long enough to kill it mid-transfer or mid-install.
  const slow_dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvraft-slow-'));
  const slow_file = path.join(slow_dir, 'fsync_delay');
  const config = [...SNAPSHOT_CONFIG, `test_fsync_delay_file ${slow_file}`];
  try {
    await withCluster({ nodes: 3, extra_config: config }, async (cluster) => {
      const leader = await cluster.waitForLeader();
      const follower = (leader + 1) % 3;
      await cluster.kill(follower);
      const client = cluster.client([leader]);
      await writeKeys(client, 'm', 30_000);
      const dir = cluster.nodes[follower]!.data_dir;
      const hits = await killDuringTransfers(cluster, follower, dir, slow_file, client);
      await client.close();
      assert.ok(hits > 0, 'at least one kill hit a transfer in progress');
      cluster.start(follower);
      await cluster.waitCaughtUp(leader, follower, CATCH_UP_TIMEOUT_MS);
      assert.equal(cluster.nodes[follower]!.exit_code, null, 'the follower is still running');
      const keys = String(30_000 + ROUNDS * ROUND_WRITES);
      assert.equal(await cluster.infoField(follower, 'keys'), keys);
      assert.ok(!fs.readdirSync(dir).some((n) => n.endsWith('.recv')), 'no partial file left');
      await assertServedWithoutLeader(cluster, leader, writtenKeys('m', 30_000));
      console.log(`kills during a transfer: ${hits} of ${ROUNDS}`);
    });
  } finally {
    fs.rmSync(slow_dir, { recursive: true, force: true });
  }
});

/** Restarts `follower` ROUNDS times, killing it once a partial snapshot file shows up. */
async function killDuringTransfers(
  cluster: TestCluster,
  follower: number,
  dir: string,
  slow_file: string,
  client: KvClient,
): Promise<number> {
  const partial = (): boolean => fs.readdirSync(dir).some((n) => n.endsWith('.recv'));
  let hits = 0;
  for (let round = 0; round < ROUNDS; round++) {
    fs.writeFileSync(slow_file, '200 400');
    cluster.start(follower);
    await pollUntil('a transfer to the follower', 20_000, () => (partial() ? true : null), 5).catch(
      () => undefined,
    );
    if (partial()) hits++;
    await cluster.kill(follower);
    fs.rmSync(slow_file, { force: true });
    // The leader moves on past two snapshot intervals, so it compacts past the follower again
    // and the next restart needs a transfer too (with fewer, it catches up by log).
    await writeKeys(client, `r${round}-`, ROUND_WRITES);
  }
  return hits;
}
