/**
 * A stranger on the Raft port, against real processes. With a cluster secret nothing it sends
 * gets past the handshake: no term change, no entry, no crash, every acknowledged write reads
 * back. In open mode (the seed's protocol) what it can still do is bounded: no frame crashes a
 * node or poisons its disk (every node is restarted after each attack and must serve), the
 * disruption rule keeps vote requests from deposing a live leader, and a poison entry is never
 * stored. Figures (write unavailability under each election attack) are printed as diagnostics.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftStorage } from '../../src/storage';
import { LIMITS } from '../../src/util/limits';
import { pollUntil, TestCluster, withCluster } from './cluster_harness';
import {
  appendFrame,
  INT32_MAX,
  missingWrites,
  raftView,
  sendRaw,
  setCommand,
  timeoutNowFrame,
  voteFrame,
  voteStorm,
  timeoutNowStorm,
  writeDuring,
  type RaftView,
} from './hostile_attacks';

const STORM_MS = 5000;
const STORM_PERIOD_MS = 700;

async function views(cluster: TestCluster): Promise<RaftView[]> {
  const all = await Promise.all(cluster.nodes.map((n) => raftView(cluster, n.index)));
  return all.map((view, i) => {
    assert.ok(view !== null, `node ${i + 1} answers INFO`);
    return view;
  });
}

/** The leader's view once every node agrees on it. */
async function stableLeader(cluster: TestCluster): Promise<RaftView> {
  return pollUntil('all nodes agree on a leader', 15_000, async () => {
    const all = await Promise.all(cluster.nodes.map((n) => raftView(cluster, n.index)));
    const leader = all.find((v) => v?.role === 'leader');
    if (leader === undefined || leader === null) return null;
    const agree = all.every(
      (v) => v !== null && v.term === leader.term && v.leader_id === leader.leader_id,
    );
    return agree ? leader : null;
  });
}

function noCrash(cluster: TestCluster): void {
  for (const node of cluster.nodes) {
    assert.ok(node.process !== null, `node ${node.index + 1} is running (exit ${node.exit_code})`);
  }
}

/** kill -9 every node, start them again; each must come back and the cluster must take writes. */
async function restartAllAndServe(cluster: TestCluster, key: string): Promise<void> {
  await cluster.stopAll();
  cluster.startAll();
  await stableLeader(cluster);
  const client = cluster.client(undefined, { call_timeout_ms: 5000 });
  try {
    await client.set(key, 'after-restart');
    assert.deepEqual(await client.get(key), ['after-restart']);
  } finally {
    await client.close();
  }
  // No crash loop: still up a moment later.
  await new Promise((resolve) => setTimeout(resolve, 500));
  noCrash(cluster);
}

function logOf(cluster: TestCluster, index: number): string {
  return cluster.nodes[index]!.stderr;
}

/** Terms before and after must match on every node. */
async function assertTermsUnchanged(cluster: TestCluster, before: RaftView[], what: string) {
  const after = await views(cluster);
  for (const [i, view] of after.entries())
    assert.equal(view.term, before[i]!.term, `${what}: node ${i + 1} term unchanged`);
}

async function int32MaxVote(cluster: TestCluster, expect_closed: boolean): Promise<void> {
  const before = await views(cluster);
  for (const node of cluster.nodes) {
    const candidate = ((node.index + 1) % cluster.nodes.length) + 1;
    const { closed } = await sendRaw(node.raft_port, voteFrame(INT32_MAX, candidate), 1000);
    if (expect_closed) assert.ok(closed, `node ${node.index + 1} closes the connection`);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  noCrash(cluster);
  await assertTermsUnchanged(cluster, before, 'RequestVote with term INT32_MAX');
}

async function poisonEntries(cluster: TestCluster, leader: RaftView): Promise<void> {
  const all = await views(cluster);
  for (const [i, view] of all.entries()) {
    if (view.role === 'leader') continue;
    const poisons = [Uint8Array.from([9, 9, 9]), Uint8Array.from([1, 0xff, 0xff, 0xff, 0xff])];
    for (const data of poisons) {
      const frame = appendFrame({
        term: leader.term,
        leader_id: leader.leader_id,
        prev_log_index: view.last_log_index,
        prev_log_term: view.last_log_term,
        leader_commit: view.last_log_index + 1,
        entries: [{ term: leader.term, data }],
      });
      const { closed } = await sendRaw(cluster.nodes[i]!.raft_port, frame, 1000);
      assert.ok(closed, `node ${i + 1} closes the connection that sent a poison entry`);
    }
  }
  noCrash(cluster);
}

/**
 * A well-formed write (`forged` = yes) forged as `leader` at the next term, sent to every
 * follower; for each, whether it closed the connection within `linger_ms`.
 */
async function forgedAppends(
  cluster: TestCluster,
  leader: RaftView,
  linger_ms: number,
): Promise<boolean[]> {
  const closed: boolean[] = [];
  for (const [i, view] of (await views(cluster)).entries()) {
    if (view.role === 'leader') continue;
    const frame = appendFrame({
      term: view.term + 1,
      leader_id: leader.leader_id,
      prev_log_index: view.last_log_index,
      prev_log_term: view.last_log_term,
      leader_commit: view.last_log_index + 1,
      entries: [{ term: view.term + 1, data: setCommand('forged', 'yes') }],
    });
    closed.push((await sendRaw(cluster.nodes[i]!.raft_port, frame, linger_ms)).closed);
  }
  return closed;
}

test('open mode: hostile Raft frames crash nothing and depose no live leader', {
  timeout: 300_000,
}, async (t: TestContext) => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await stableLeader(cluster);

    await int32MaxVote(cluster, true);
    for (const i of [0, 1, 2])
      assert.match(logOf(cluster, i), /term 2147483647 is outside \[0, raft_term_max/);
    await restartAllAndServe(cluster, 'after-int32max');

    // Vote requests at term+1 naming members, every 0.7 s: the disruption rule ignores them all.
    let before = await views(cluster);
    const votes = await writeDuring(cluster, 'vote-storm', () =>
      voteStorm(cluster, STORM_MS, STORM_PERIOD_MS),
    );
    await assertTermsUnchanged(cluster, before, 'vote storm');
    t.diagnostic(`open mode, vote storm: longest write gap ${votes.max_gap_ms.toFixed(0)} ms`);
    assert.deepEqual(await missingWrites(cluster, votes.acked), []);
    await restartAllAndServe(cluster, 'after-vote-storm');

    // TimeoutNow at a higher term naming the leader: not from the current leader's term, ignored.
    let leader = await stableLeader(cluster);
    before = await views(cluster);
    for (const node of cluster.nodes)
      await sendRaw(node.raft_port, timeoutNowFrame(leader.term + 1, leader.leader_id));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await assertTermsUnchanged(cluster, before, 'TimeoutNow at a higher term');

    // At the leader's own term an unauthenticated TimeoutNow is indistinguishable from the
    // leader's: open mode cannot stop it (the secret can). Measured, and nothing may crash.
    const timeouts = await writeDuring(cluster, 'timeout-storm', () =>
      timeoutNowStorm(cluster, STORM_MS, STORM_PERIOD_MS),
    );
    t.diagnostic(
      `open mode, TimeoutNow storm at the leader's term: longest write gap ` +
        `${timeouts.max_gap_ms.toFixed(0)} ms`,
    );
    noCrash(cluster);
    assert.deepEqual(await missingWrites(cluster, timeouts.acked), []);
    await restartAllAndServe(cluster, 'after-timeout-storm');

    leader = await stableLeader(cluster);
    await poisonEntries(cluster, leader);
    await new Promise((resolve) => setTimeout(resolve, 500));
    noCrash(cluster);
    await restartAllAndServe(cluster, 'after-poison');
    const refused = cluster.nodes.filter((n) => /refused message type 3: entry/.test(n.stderr));
    assert.ok(refused.length >= 2, 'both followers logged the refused poison entry');

    // A well-formed write forged as the leader at the next term: open mode obeys it (only the
    // secret stops it), but nothing may crash and the cluster must come back from a restart.
    leader = await stableLeader(cluster);
    await forgedAppends(cluster, leader, 300);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    noCrash(cluster);
    await restartAllAndServe(cluster, 'after-forged-append');
  });
});

test('with a cluster secret: a stranger changes nothing at all', {
  timeout: 300_000,
}, async (t: TestContext) => {
  const secret_dir = mkdtempSync(join(tmpdir(), 'kvraft-secret-'));
  const secret_file = join(secret_dir, 'secret');
  writeFileSync(secret_file, 'an integration-test cluster secret\n');
  try {
    await withCluster(
      { nodes: 3, extra_config: [`cluster_secret_file ${secret_file}`] },
      async (cluster) => {
        const leader = await stableLeader(cluster);
        const info = await cluster.info(0);
        assert.equal(info?.peer_auth, 'secret');
        const before = await views(cluster);
        const record = await writeDuring(cluster, 'secret', async () => {
          await int32MaxVote(cluster, true);
          await voteStorm(cluster, STORM_MS, STORM_PERIOD_MS);
          await timeoutNowStorm(cluster, STORM_MS, STORM_PERIOD_MS);
          await poisonEntries(cluster, leader);
          // A well-formed write, forged as the leader at the next term, to every follower.
          const closed = await forgedAppends(cluster, leader, 1000);
          assert.ok(closed.length >= 2 && closed.every((c) => c), `closed: ${closed}`);
        });
        t.diagnostic(
          `secret mode, all attacks: longest write gap ${record.max_gap_ms.toFixed(0)} ms, ` +
            `${record.acked.size} writes acknowledged`,
        );
        noCrash(cluster);
        await assertTermsUnchanged(cluster, before, 'every attack with a secret');
        assert.deepEqual(await missingWrites(cluster, record.acked), []);
        const client = cluster.client();
        try {
          assert.equal(await client.get('forged'), null, 'the forged entry was never stored');
        } finally {
          await client.close();
        }
        for (const i of [0, 1, 2])
          assert.match(logOf(cluster, i), /handshake failed: sent frame type 1 before completing/);
      },
    );
  } finally {
    rmSync(secret_dir, { recursive: true, force: true });
  }
});

test('config mismatch: a node whose file lists only two members is refused, logged, never leads', {
  timeout: 120_000,
}, async () => {
  const cluster = await TestCluster.create({ nodes: 3 });
  try {
    // Node 3's file names only itself and node 1.
    const node3 = cluster.nodes[2]!;
    const text = readFileSync(node3.config_path, 'utf8');
    const node2_line = `follower_info 127.0.0.1:${cluster.nodes[1]!.client_port}\n`;
    assert.ok(text.includes(node2_line));
    writeFileSync(node3.config_path, text.replace(node2_line, ''));
    cluster.startAll();
    await pollUntil('mismatch logged by node 3 and by node 1', 15_000, () =>
      /ERROR .*cluster config mismatch/.test(logOf(cluster, 2)) &&
      /ERROR .*cluster config mismatch/.test(logOf(cluster, 0))
        ? true
        : null,
    );
    const line = logOf(cluster, 0)
      .split('\n')
      .find((l) => l.includes('cluster config mismatch'));
    assert.ok(line !== undefined && /our members \[.*\].*theirs \[.*\]/.test(line));
    await cluster.waitForLeader(15_000, [0, 1]);
    // For a few election timeouts, node 3 never leads (it has no quorum it can reach).
    const until_ms = Date.now() + 3000;
    while (Date.now() < until_ms) {
      const view = await raftView(cluster, 2);
      assert.notEqual(view?.role, 'leader', 'node 3 never becomes a second leader');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const client = cluster.client([0, 1]);
    try {
      await client.set('k', 'v');
      assert.deepEqual(await client.get('k'), ['v']);
    } finally {
      await client.close();
    }
  } catch (error) {
    if (error instanceof Error) error.message += `\n${cluster.logs()}`;
    throw error;
  } finally {
    await cluster.destroy();
  }
});

test('nodes that recovered a term above raft_term_max from disk start and rejoin', {
  timeout: 120_000,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    await stableLeader(cluster);
    const record = await writeDuring(cluster, 'pre-poison', async () => undefined, 500);
    assert.ok(record.acked.size > 0);
    await cluster.stopAll();
    // What one RequestVote with term INT32_MAX left on a majority's disks with an older build.
    for (const index of [0, 1]) {
      const { storage, restored } = await RaftStorage.open(cluster.nodes[index]!.data_dir);
      await storage.save({ term: INT32_MAX, vote: 3, commit: restored.hard_state.commit }, null);
      await storage.close();
    }
    cluster.startAll();
    await stableLeader(cluster);
    for (const index of [0, 1])
      assert.match(logOf(cluster, index), /recovered term 2147483647 exceeds raft_term_max/);
    assert.deepEqual(await missingWrites(cluster, record.acked), []);
    for (const view of await views(cluster)) assert.ok(view.term < LIMITS.raft_term_max);
    await restartAllAndServe(cluster, 'after-poisoned-disk');
  });
});

test('SIGTERM of the leader hands over to the named node in the next term (TransferVoteRequest)', {
  timeout: 120_000,
}, async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await stableLeader(cluster);
    const leader_index = leader.leader_id - 1;
    await cluster.signal(leader_index, 'SIGTERM');
    const named = /handing leadership to node (\d+)/.exec(logOf(cluster, leader_index));
    assert.ok(named !== null, 'the leader named its successor');
    const successor = Number(named[1]);
    const view = await pollUntil('the successor leads', 10_000, async () => {
      const v = await raftView(cluster, successor - 1);
      return v?.role === 'leader' ? v : null;
    });
    assert.equal(view.term, leader.term + 1, 'one campaign, no failed election in between');
  });
});
