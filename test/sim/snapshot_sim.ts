/**
 * The simulation the InstallSnapshot tests start from: three nodes on a reliable network and a
 * sound disk, snapshots every 10 entries sent in 64-byte chunks, three clients on 40 keys; and
 * the step that makes node 3 a follower, the one they leave behind.
 */
import assert from 'node:assert/strict';
import { drawParams, RELIABLE_NETWORK } from './seed_run';
import { Simulation, type SimParams } from './simulation';

export function snapshotSim(seed: number, overrides: Partial<SimParams> = {}): Simulation {
  return new Simulation({
    ...drawParams(seed, { nodes: 3 }),
    ...RELIABLE_NETWORK,
    disk_faults: false,
    snapshot_entries: 10,
    snapshot_chunk_bytes: 64,
    clients: 3,
    keys: 40,
    ...overrides,
  });
}

/** Starts the clients and waits for a leader other than node 3 (crashing node 3 if it leads). */
export async function startWithNode3Following(sim: Simulation): Promise<void> {
  sim.startClients();
  await sim.runUntil(() => sim.leader() !== null, 4000);
  assert.ok(sim.leader(), `a leader (seed ${sim.params.seed})`);
  if (sim.leader()?.id !== 3) return;
  sim.crash(3); // node 3 must be the follower left behind
  sim.restart(3);
  await sim.runUntil(() => sim.leader() !== null && sim.leader()?.id !== 3, 4000);
}
