/**
 * The learner state on real processes (issue 15): a node added with RAFT.NODE ADD while its
 * process is not running is listed as `member=learner` and stays one (it cannot catch up), does
 * not count towards the commit quorum (the three voters with one of them down still commit), and
 * once started with `join` it gets the same id, catches up and is promoted to voter by the leader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pollUntil, type TestCluster, withCluster } from './cluster_harness';
import {
  addJoiner,
  adminCommand,
  listNodes,
  type NodeLine,
  waitSameState,
  waitVoter,
} from './membership_support';

/** Writes `count` keys through node `index`, each acknowledged (so committed) before the next. */
async function writeKeys(
  cluster: TestCluster,
  index: number,
  prefix: string,
  count: number,
): Promise<void> {
  const client = cluster.client([index], { call_timeout_ms: 15_000 });
  let key = '';
  try {
    for (let i = 0; i < count; i++) {
      key = `${prefix}${i}`;
      await client.set(key, `v${i}`);
    }
  } catch (error) {
    throw new Error(`SET ${key} through node ${index}: ${String(error)}`);
  } finally {
    await client.close();
  }
}

async function memberLine(
  cluster: TestCluster,
  leader: number,
  address: string,
): Promise<NodeLine> {
  const nodes = await listNodes(cluster, leader);
  const line = nodes.find((n) => n.address === address);
  assert.ok(line !== undefined, `${address} listed: ${JSON.stringify(nodes)}`);
  return line;
}

test('a learner that cannot catch up stays one and is not counted; started, it becomes a voter', {
  timeout: 150_000,
}, async (t) => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const leader = await cluster.waitForLeader(15_000);
    const learner = await addJoiner(cluster, leader);
    const address = cluster.address(learner);
    const added = await adminCommand(cluster, leader, ['RAFT.NODE', 'ADD', address]);
    assert.match(added, /^OK id=4 cluster=[0-9a-f]{64}$/, 'added as node 4');
    const listed = await memberLine(cluster, leader, address);
    assert.deepEqual(
      { id: listed.id, member: listed.member, match: listed.match },
      { id: 4, member: 'learner', match: '0' },
      'a learner the leader never heard from',
    );

    // Commits (each one a chance for the leader to promote) do not make it a voter: its log
    // is empty, far from the leader's.
    await writeKeys(cluster, leader, 'a', 20);
    assert.equal((await memberLine(cluster, leader, address)).member, 'learner', 'still one');

    // Three voters and a learner: with a voter and the learner down, 2 of the 3 voters commit;
    // were the learner counted, 2 of 4 would not.
    const down = [0, 1, 2].find((i) => i !== leader)!;
    await cluster.kill(down);
    const after_kill = await cluster.waitForLeader(20_000);
    await writeKeys(cluster, after_kill, 'b', 10);
    assert.equal((await memberLine(cluster, after_kill, address)).member, 'learner');

    // Started with `join`, it is given the same id, catches up and is promoted.
    cluster.start(down);
    const join_started = performance.now();
    cluster.start(learner);
    const id = await waitVoter(cluster, address, 60_000);
    t.diagnostic(`learner a voter ${(performance.now() - join_started).toFixed(0)} ms after start`);
    assert.equal(id, 4, 'the id RAFT.NODE ADD gave');
    const voters = await pollUntil('four voters', 20_000, async () => {
      const nodes = await listNodes(cluster, await cluster.waitForLeader(20_000));
      return nodes.filter((n) => n.member === 'voter').length === 4 ? nodes : null;
    });
    assert.equal(voters.length, 4, JSON.stringify(voters));
    await waitSameState(cluster, [0, 1, 2, learner], 30_000);
  });
});
