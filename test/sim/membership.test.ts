/**
 * Membership changes in the simulator (issue 15): scripted grow, shrink and leader removal under
 * client load with the history checked, random changes among every fault, and proof that the
 * checks catch a leader that proposes two changes at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkLinearizable } from './linearizability';
import { drawParams, RELIABLE_NETWORK, runSeed } from './seed_run';
import { SafetyViolation, Simulation, type SimNode, type SimParams } from './simulation';
import { learnersOf, type MembershipChange, memberOf, votersOf } from '../../src/raft/membership';
import type { NodeId } from '../../src/raft/types';
import { PROMOTE_LAG_ENTRIES_MAX } from './membership_nemesis';

/** A reliable network and disk, `spare` nodes outside the cluster, clients writing throughout. */
function cluster(seed: number, nodes: number, spare: number, extra: Partial<SimParams> = {}) {
  const params: SimParams = {
    ...drawParams(seed, { nodes, membership: false }),
    ...RELIABLE_NETWORK,
    disk_faults: false,
    spare_nodes: spare,
    membership_changes: true,
    ...extra,
  };
  return new Simulation(params);
}

async function leaderOf(sim: Simulation): Promise<SimNode> {
  assert.ok(await sim.runUntil(() => sim.leader() !== null, 5000), 'a leader within 5 s');
  return sim.leader()!;
}

/**
 * Proposes `change` through whoever leads, retrying what a leader refuses as retryable, until the
 * change has committed on that leader; returns the virtual ms it took.
 */
async function change(sim: Simulation, proposed: MembershipChange): Promise<number> {
  const start = sim.now;
  while (sim.now - start < 10_000) {
    const leader = await leaderOf(sim);
    const result = leader.core.proposeMembershipChange(proposed);
    leader.driver.schedule();
    if (result.ok) {
      const committed = await sim.runUntil(() => leader.core.commit_index >= result.index, 2000);
      if (committed && leader.core.termAt(result.index) === result.term) return sim.now - start;
    } else {
      assert.notEqual(result.reason, 'invalid_change', `${proposed.kind}: ${result.detail}`);
      await sim.runFor(20);
    }
  }
  assert.fail(`${JSON.stringify(proposed)} did not commit within 10 s`);
}

/** Adds `id` as a learner, waits until it is caught up, promotes it. */
async function grow(sim: Simulation, id: NodeId): Promise<void> {
  await change(sim, { kind: 'add_learner', id, address: `sim:${id}` });
  const caught_up = (): boolean => {
    const leader = sim.leader();
    const progress = leader?.core.status().peers.find((p) => p.id === id);
    return (
      leader !== null &&
      progress !== undefined &&
      leader.core.last_log_index - progress.match <= PROMOTE_LAG_ENTRIES_MAX
    );
  };
  assert.ok(await sim.runUntil(caught_up, 5000), `learner ${id} catches up`);
  await change(sim, { kind: 'promote', id });
}

/** One write through whoever leads, retried until it commits or `timeout_ms` passes. */
async function writeSoon(sim: Simulation, key: string, timeout_ms: number): Promise<boolean> {
  const start = sim.now;
  while (sim.now - start < timeout_ms) {
    await sim.runUntil(() => sim.leader() !== null, timeout_ms - (sim.now - start));
    if (await sim.writeThroughLeader(key, 'v', 1000)) return true;
    await sim.runFor(20);
  }
  return false;
}

/** More load on the final configuration, then the clients' history must be linearizable. */
async function finish(sim: Simulation): Promise<void> {
  await sim.runFor(1500);
  sim.stopClients();
  await sim.runUntil(() => sim.clientsIdle(), 2 * sim.params.client_timeout_ms);
  await sim.runFor(sim.params.client_timeout_ms);
  sim.checkLogMatching();
  const result = checkLinearizable(sim.history);
  assert.ok(result.ok, `history not linearizable: ${result.failure?.explanation ?? ''}`);
  assert.ok(sim.history.length > 50, `clients completed ${sim.history.length} operations`);
}

test('grow 3 → 5, shrink 5 → 3 under client load: linearizable, all nodes agree', async () => {
  const sim = cluster(11, 3, 2, { snapshot_entries: 20 });
  sim.startClients();
  await leaderOf(sim);
  await grow(sim, 4);
  await grow(sim, 5);
  assert.deepEqual(votersOf(sim.leader()!.core.current_membership), [1, 2, 3, 4, 5]);
  // Two of five may fail now: the cluster still commits.
  sim.crash(1);
  sim.crash(2);
  assert.ok(await writeSoon(sim, 'with-3-of-5', 5000), 'commits with 3 of 5 up');
  sim.restart(1);
  sim.restart(2);
  await change(sim, { kind: 'remove', id: 1 });
  await change(sim, { kind: 'remove', id: 2 });
  const leader = await leaderOf(sim);
  assert.deepEqual(votersOf(leader.core.current_membership), [3, 4, 5]);
  await finish(sim);
  for (const id of [3, 4, 5])
    assert.deepEqual(votersOf(sim.node(id).core.current_membership), [3, 4, 5], `node ${id}`);
});

test('auto-promotion: learners added under load become voters by the leader alone', async () => {
  const sim = cluster(15, 3, 2, { snapshot_entries: 20, auto_promote_learners: true });
  sim.startClients();
  await leaderOf(sim);
  sim.crash(5); // a learner that never catches up must stay one
  await change(sim, { kind: 'add_learner', id: 4, address: 'sim:4' });
  await change(sim, { kind: 'add_learner', id: 5, address: 'sim:5' });
  const promoted = (): boolean => {
    const membership = sim.leader()?.core.current_membership;
    return membership !== undefined && votersOf(membership).includes(4);
  };
  assert.ok(await sim.runUntil(promoted, 5000), 'learner 4 promoted without a promote call');
  await sim.runFor(1000);
  const leader = await leaderOf(sim);
  assert.deepEqual(votersOf(leader.core.current_membership), [1, 2, 3, 4]);
  assert.deepEqual(learnersOf(leader.core.current_membership), [5], 'the dead learner waits');
  sim.restart(5);
  const all = (): boolean =>
    votersOf(sim.leader()?.core.current_membership ?? { members: [], next_id: 1 }).length === 5;
  assert.ok(await sim.runUntil(all, 5000), 'learner 5 promoted once back and caught up');
  await finish(sim);
});

test('removing the leader under load: it hands over; the removed node never disturbs', async () => {
  const sim = cluster(12, 3, 0);
  sim.startClients();
  const old = await leaderOf(sim);
  await change(sim, { kind: 'remove', id: old.id });
  assert.ok(
    await sim.runUntil(() => sim.leader() !== null && sim.leader()!.id !== old.id, 3000),
    'a remaining voter leads',
  );
  const successor = sim.leader()!;
  const term = successor.core.current_term;
  await sim.runFor(3000);
  assert.equal(sim.leader()?.id, successor.id, 'no election since');
  assert.equal(successor.core.current_term, term);
  assert.equal(memberOf(successor.core.current_membership, old.id), undefined);
  await finish(sim);
});

test('replace a failed voter: add a learner, promote it, remove the dead one', async () => {
  const sim = cluster(13, 3, 1);
  sim.startClients();
  const leader = await leaderOf(sim);
  const victim = ([1, 2, 3] as NodeId[]).find((id) => id !== leader.id)!;
  sim.crash(victim); // the failed machine
  await grow(sim, 4);
  await change(sim, { kind: 'remove', id: victim });
  const now = await leaderOf(sim);
  assert.deepEqual(
    votersOf(now.core.current_membership),
    ([1, 2, 3, 4] as NodeId[]).filter((id) => id !== victim),
  );
  assert.deepEqual(learnersOf(now.core.current_membership), []);
  await finish(sim);
});

test('random membership changes among all faults: 60 seeds of 3 and 5 nodes', async () => {
  const failures: string[] = [];
  let changes = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const nodes = seed % 3 === 0 ? 5 : 3;
    const result = await runSeed(seed, { nodes, membership: true });
    changes += result.membership_changes;
    if (!result.ok)
      failures.push(
        `seed ${seed}: ${result.violation}\n` +
          `  replay: npm run sim -- --seed ${seed} --nodes ${nodes} --membership on`,
      );
  }
  assert.deepEqual(failures, [], failures.join('\n'));
  assert.ok(changes >= 150, `${changes} membership changes committed (expected 150+)`);
});

test('switch concurrent_membership_changes: caught in random seeds within 20', async () => {
  let found: string | null = null;
  for (let seed = 1; seed <= 20 && found === null; seed++) {
    const result = await runSeed(seed, {
      membership: true,
      faults: { concurrent_membership_changes: true },
      liveness: false,
    });
    if (!result.ok) found = `seed ${seed}: ${result.violation}`;
  }
  assert.ok(found !== null, 'a violation within 20 seeds');
  assert.match(found, /SafetyViolation/);
});

/**
 * An isolated leader removes both other voters at once: alone in its configuration it commits by
 * itself, while the other two, still in the old one, elect a leader and commit too.
 */
async function isolatedLeaderRemovesTwo(allow_two_at_once: boolean): Promise<string | null> {
  const sim = cluster(14, 3, 0, { faults: { concurrent_membership_changes: allow_two_at_once } });
  sim.membership.check_one_change_at_a_time = false; // let the Figure 3 checks find the damage
  try {
    const leader = await leaderOf(sim);
    await sim.writeThroughLeader('before', 'v', 2000);
    sim.isolate(leader.id);
    const [a, b] = ([1, 2, 3] as NodeId[]).filter((id) => id !== leader.id);
    assert.ok(leader.core.proposeMembershipChange({ kind: 'remove', id: a! }).ok);
    const second = leader.core.proposeMembershipChange({ kind: 'remove', id: b! });
    assert.equal(second.ok, allow_two_at_once);
    if (!second.ok) assert.equal(second.reason, 'change_in_progress');
    leader.replica.write({ op: 'del', keys: [Buffer.from('before')] }, () => undefined);
    leader.driver.schedule();
    await sim.runFor(1500);
    assert.ok(await writeSoon(sim, 'after', 3000), 'the majority side commits');
    await sim.runFor(500);
    sim.checkLogMatching();
    return null;
  } catch (error) {
    if (error instanceof SafetyViolation) return error.message;
    throw error;
  }
}

test('one change at a time: scripted, safe; switched off, two leaders commit apart', async () => {
  assert.equal(await isolatedLeaderRemovesTwo(false), null);
  const violation = await isolatedLeaderRemovesTwo(true);
  assert.ok(violation !== null, 'the simulator catches it');
  console.log(`caught: ${violation}`);
  assert.match(violation, /State Machine Safety|Leader Completeness|Log Matching/);
});
