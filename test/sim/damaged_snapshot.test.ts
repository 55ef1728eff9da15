/**
 * A leader whose newest snapshot file rots on disk after it was written (one byte flipped in the
 * middle): every transfer of that file fails the follower's verification. The leader must notice,
 * stop offering the file and take a fresh snapshot, so a follower behind its first retained entry
 * still catches up on an idle cluster (no new writes would ever trigger a newer snapshot).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Simulation } from './simulation';
import { snapshotSim, startWithNode3Following } from './snapshot_sim';
import { MessageType } from '../../src/raft/protocol';

/** Node 3 cut off while the others compact past it; clients stopped; the leader's file rotted. */
async function damagedLeaderSnapshot(seed: number): Promise<Simulation> {
  const sim = snapshotSim(seed);
  await startWithNode3Following(sim);
  sim.crash(3);
  const compacted = await sim.runUntil(() => {
    const l = sim.leader();
    return l !== null && l.core.first_log_index > sim.node(3).core.last_log_index + 1 + 10;
  }, 20_000);
  assert.ok(compacted, `seed ${seed}: the leader compacted past node 3`);
  sim.stopClients();
  await sim.runFor(2000); // writes in flight and the running snapshot finish: the cluster is idle
  const leader = sim.leader();
  assert.ok(leader, `seed ${seed}: a leader`);
  assert.ok(!leader.driver.snapshotStats().snapshot_in_progress, `seed ${seed}: none running`);
  // Both kept files rot: the transfer already running (to the crashed follower) holds the older.
  const files = leader.disk.paths().filter((p) => p.endsWith('.snap'));
  assert.ok(files.length >= 1, `seed ${seed}: the leader has snapshot files`);
  for (const file of files) {
    const bytes = leader.disk.image(file, 'current');
    assert.ok(bytes !== null && bytes.length > 200, `seed ${seed}: leader's snapshot ${file}`);
    leader.disk.corruptDurable(file, Math.floor(bytes.length / 2));
    assert.ok(!leader.disk.image(file, 'current')?.equals(bytes), `${file} damaged`);
  }
  return sim;
}

test('a leader whose snapshot files rotted retakes one; the follower catches up', async () => {
  for (const seed of [1, 2, 3]) {
    const sim = await damagedLeaderSnapshot(seed);
    const leader = sim.leader();
    assert.ok(leader);
    let starts = 0;
    const transmit = sim.transmit.bind(sim);
    sim.transmit = (from, to, message) => {
      if (message.type === MessageType.InstallSnapshotRequest && message.offset === 0) starts++;
      transmit(from, to, message);
    };
    sim.restart(3);
    const target = leader.core.commit_index;
    const caught_up = await sim.runUntil(
      () => sim.node(3).replica.state.last_applied >= target,
      20_000,
    );
    assert.ok(
      caught_up,
      `seed ${seed}: node 3 applied ${sim.node(3).replica.state.last_applied} of ${target} ` +
        `after ${starts} transfers started`,
    );
    assert.ok((sim.storage_events.get('snapshot_installed') ?? 0) >= 1, `seed ${seed} installed`);
    await sim.runFor(1000);
    sim.checkLogMatching();
  }
});
