/**
 * InstallSnapshot in the simulator: each node the server's core, driver, snapshot transfer and
 * storage on a faulty disk. A follower cut off while the others compact catches up by snapshot,
 * then log; a follower killed mid-install and a leader lost mid-transfer still converge; and a
 * replayed old transfer is harmless, unless the follower's commit-index check is switched off
 * (then the simulator sees the applied index go back).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Simulation, SimFaults } from './simulation';
import { snapshotSim, startWithNode3Following } from './snapshot_sim';
import { MessageType, type RaftMessage } from '../../src/raft/protocol';
import type { NodeId } from '../../src/raft/types';

interface Tap {
  /** Messages the simulator was asked to carry, in order. */
  sent: Array<{ from: NodeId; to: NodeId; message: RaftMessage }>;
}

/** Records every message (and lets `hook` act on it first). */
function tap(
  sim: Simulation,
  hook: (from: NodeId, to: NodeId, m: RaftMessage) => void = () => undefined,
): Tap {
  const record: Tap = { sent: [] };
  const transmit = sim.transmit.bind(sim);
  sim.transmit = (from, to, message) => {
    record.sent.push({ from, to, message });
    hook(from, to, message);
    transmit(from, to, message);
  };
  return record;
}

/** Node 3 is cut off while the others write and compact past it; then the network heals. */
async function leaveBehind(sim: Simulation): Promise<void> {
  await startWithNode3Following(sim);
  sim.isolate(3);
  await sim.runUntil(() => {
    const l = sim.leader();
    return l !== null && l.core.first_log_index > sim.node(3).core.last_log_index + 1;
  }, 20_000);
  const l = sim.leader();
  assert.ok(l && l.core.first_log_index > sim.node(3).core.last_log_index + 1, 'compacted past 3');
  sim.heal();
}

/** Every node up has applied the leader's commit index (as it was when called). */
async function converge(sim: Simulation, timeout_ms = 20_000): Promise<void> {
  sim.heal();
  for (const node of sim.nodes) if (!node.alive) sim.restart(node.id);
  const leaderCommit = (): number => sim.leader()?.core.commit_index ?? Infinity;
  const target = await (async () => {
    await sim.runUntil(() => sim.leader() !== null, 4000);
    return leaderCommit();
  })();
  const done = await sim.runUntil(
    () => sim.nodes.every((n) => n.alive && n.replica.state.last_applied >= target),
    timeout_ms,
  );
  assert.ok(
    done,
    `all nodes applied ${target} (seed ${sim.params.seed}): ` +
      sim.nodes.map((n) => `${n.id}:${n.alive ? n.replica.state.last_applied : 'down'}`).join(' '),
  );
  sim.stopClients();
  await sim.runFor(1000);
  sim.checkLogMatching();
}

test('a follower behind the first retained entry catches up by snapshot, then log', async () => {
  for (const seed of [1, 2, 3]) {
    const sim = snapshotSim(seed);
    const record = tap(sim);
    await leaveBehind(sim);
    await converge(sim);
    assert.ok((sim.storage_events.get('snapshot_installed') ?? 0) >= 1, `seed ${seed} installed`);
    const chunks = record.sent.filter(
      (e) => e.message.type === MessageType.InstallSnapshotRequest,
    ).length;
    assert.ok(chunks > 1, `seed ${seed}: a multi-chunk transfer (${chunks} chunks)`);
    // No loop between snapshot and log (hashicorp/raft #212): one transfer per catch-up.
    const starts = record.sent.filter(
      (e) => e.message.type === MessageType.InstallSnapshotRequest && e.message.offset === 0,
    );
    assert.ok(starts.length <= 3, `seed ${seed}: ${starts.length} transfers started`);
  }
});

test('installs under loss, duplication and reordering converge', async () => {
  for (const seed of [11, 12, 13]) {
    const sim = snapshotSim(seed, { drop_rate: 0.1, duplicate_rate: 0.05, reorder: true });
    await leaveBehind(sim);
    await converge(sim, 40_000);
    assert.ok((sim.storage_events.get('snapshot_installed') ?? 0) >= 1, `seed ${seed} installed`);
  }
});

test('a follower killed mid-install restarts with its old or new state, converges', async () => {
  for (const seed of [21, 22, 23, 24]) {
    const sim = snapshotSim(seed, { power_loss_probability: seed % 2 });
    let killed = false;
    tap(sim, (from, _to, message) => {
      if (killed || from !== 3 || message.type !== MessageType.InstallSnapshotResponse) return;
      if (message.next_offset <= 0) return;
      killed = true;
      sim.schedule(0, () => sim.crash(3));
      sim.schedule(300, () => sim.restart(3));
    });
    await leaveBehind(sim);
    await sim.runUntil(() => killed, 10_000);
    assert.ok(killed, `seed ${seed}: node 3 was killed mid-transfer`);
    await converge(sim, 40_000);
  }
});

test('a leader lost mid-transfer: the next leader brings the follower up', async () => {
  for (const seed of [31, 32, 33]) {
    const sim = snapshotSim(seed);
    let leader_lost: NodeId | null = null;
    tap(sim, (from, to, message) => {
      if (leader_lost !== null || to !== 3) return;
      if (message.type !== MessageType.InstallSnapshotRequest || message.offset === 0) return;
      leader_lost = from;
      sim.schedule(0, () => sim.crash(from));
    });
    await leaveBehind(sim);
    await sim.runUntil(() => leader_lost !== null, 10_000);
    assert.ok(leader_lost !== null, `seed ${seed}: the leader died mid-transfer`);
    await sim.runFor(2000); // the survivors elect a leader and serve node 3 without the old one
    await converge(sim, 40_000);
  }
});

/**
 * After node 3 installed a snapshot and applied past it, the whole old transfer is delivered to it
 * again. Returns the violation, or null.
 */
async function replayOldTransfer(seed: number, faults: SimFaults): Promise<string | null> {
  const sim = snapshotSim(seed, { faults });
  const record = tap(sim);
  try {
    await leaveBehind(sim);
    await sim.runUntil(() => (sim.storage_events.get('snapshot_installed') ?? 0) >= 1, 20_000);
    const chunks = record.sent.filter(
      (e) => e.to === 3 && e.message.type === MessageType.InstallSnapshotRequest,
    );
    const installed_at = sim.node(3).replica.state.last_applied;
    await sim.runUntil(() => sim.node(3).replica.state.last_applied > installed_at + 5, 20_000);
    for (const { from, to, message } of chunks) sim.transmit(from, to, message);
    await sim.runFor(2000);
    return null;
  } catch (error) {
    if (error instanceof Error && error.name === 'SafetyViolation') return error.message;
    throw error;
  }
}

test('a replayed old transfer is ignored; switch install_stale_snapshot is caught', async () => {
  assert.equal(await replayOldTransfer(41, {}), null);
  const violation = await replayOldTransfer(41, { install_stale_snapshot: true });
  assert.ok(violation !== null, 'installing a snapshot below the commit index must be caught');
  assert.match(violation, /applied index went back/);
});
