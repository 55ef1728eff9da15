/**
 * Before/after figures for the election attacks, printed as one line each: run with
 * `node dist/test/integration/hostile_measure.js`. Uses only modules the seed build has too, so the
 * compiled file (with hostile_attacks.js) can be dropped into an older build's dist to measure it.
 */
import { TestCluster } from './cluster_harness';
import {
  INT32_MAX,
  raftView,
  sendRaw,
  timeoutNowStorm,
  voteFrame,
  voteStorm,
  writeDuring,
} from './hostile_attacks';

const STORM_MS = 15_000;
const PERIOD_MS = 700;

async function maxTerm(cluster: TestCluster): Promise<number> {
  const views = await Promise.all(cluster.nodes.map((n) => raftView(cluster, n.index)));
  return Math.max(0, ...views.map((v) => v?.term ?? 0));
}

async function storm(name: string, attack: (cluster: TestCluster) => Promise<void>): Promise<void> {
  const cluster = await TestCluster.create({ nodes: 3 });
  try {
    cluster.startAll();
    await cluster.waitForLeader(15_000);
    const term_before = await maxTerm(cluster);
    const record = await writeDuring(cluster, name, () => attack(cluster));
    const term_after = await maxTerm(cluster);
    console.log(
      `${name}: ${STORM_MS / 1000} s, one round per ${PERIOD_MS} ms: ` +
        `term +${term_after - term_before}, ` +
        `longest write gap ${(record.max_gap_ms / 1000).toFixed(2)} s, ` +
        `${record.acked.size} writes acked, ${record.failures} failed`,
    );
  } finally {
    await cluster.destroy();
  }
}

async function int32Max(): Promise<void> {
  const cluster = await TestCluster.create({ nodes: 3 });
  try {
    cluster.startAll();
    const leader = await cluster.waitForLeader(15_000);
    const followers = cluster.nodes.filter((n) => n.index !== leader);
    for (const node of followers) await sendRaw(node.raft_port, voteFrame(INT32_MAX, leader + 1));
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const alive = cluster.nodes.filter((n) => n.process !== null).length;
    await cluster.stopAll();
    cluster.startAll();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const alive_after_restart = cluster.nodes.filter((n) => n.process !== null).length;
    let serves = false;
    try {
      await cluster.waitForLeader(5000);
      const client = cluster.client(undefined, { call_timeout_ms: 3000 });
      try {
        await client.set('int32max', 'ok');
        serves = true;
      } finally {
        await client.close();
      }
    } catch {
      serves = false;
    }
    console.log(
      `INT32_MAX vote to both followers: ${alive}/3 alive after 5 s; ` +
        `after restarting all: ${alive_after_restart}/3 alive after 5 s; cluster serves: ${serves}`,
    );
  } finally {
    await cluster.destroy();
  }
}

async function main(): Promise<void> {
  await int32Max();
  await storm('vote-storm', (cluster) => voteStorm(cluster, STORM_MS, PERIOD_MS));
  await storm('timeoutnow-storm', (cluster) => timeoutNowStorm(cluster, STORM_MS, PERIOD_MS));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
