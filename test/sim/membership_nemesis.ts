/**
 * Membership changes in the simulator: a nemesis that adds spare nodes as learners, promotes them
 * once caught up, removes learners and voters (the leader too), so that together they also
 * replace nodes; and the invariants the changes must keep, checked on top of the simulator's
 * Figure 3 checks (which hold whatever the configuration):
 * - Single-server steps: consecutive configurations in the committed log differ by at most one
 *   voter (otherwise two disjoint majorities could exist, thesis §4.1).
 * - One change at a time: no log ever holds two membership entries past the cluster's commit
 *   index (a leader proposes a change only once the previous one committed).
 * - Each node uses the latest configuration in its log, committed or not (§4.1).
 */
import type { RaftCore } from '../../src/raft/core';
import {
  bootstrapMembership,
  decodeMembership,
  encodeMembership,
  isMembershipEntry,
  learnersOf,
  type Membership,
  type MembershipChange,
  memberOf,
  voterDifference,
  votersOf,
} from '../../src/raft/membership';
import type { LogEntry } from '../../src/raft/protocol';
import type { NodeId } from '../../src/raft/types';
import type { SeededRandom } from '../../src/util/prng';
import { SafetyViolation } from './sim_node';
import type { Simulation } from './simulation';

/** A learner is promoted only within this many entries of the leader's log (issue 15's bound). */
export const PROMOTE_LAG_ENTRIES_MAX = 20;
/** The nemesis removes a voter only while at least this many would remain. */
const VOTERS_MIN = 2;
const VOTERS_MAX = 5;

export class MembershipChecker {
  private committed: Membership;
  /** Membership entries seen committed (for the run's summary: changes must really happen). */
  changes_committed = 0;
  /** Proposals the nemesis made, and how many the leader refused, by reason. */
  readonly proposals = new Map<string, number>();
  /**
   * Check the one-change-at-a-time rule itself; a test turns it off to show that the Figure 3
   * checks catch what breaking the rule leads to.
   */
  check_one_change_at_a_time = true;

  constructor(initial_voters: number) {
    this.committed = bootstrapMembership(Array.from({ length: initial_voters }, (_, i) => i + 1));
  }

  /** The cluster's committed log grew by `entry` at `index`. */
  onCommitted(index: number, entry: LogEntry): void {
    if (!isMembershipEntry(entry.data)) return;
    const next = decodeMembership(entry.data);
    if (voterDifference(this.committed, next) > 1) {
      throw new SafetyViolation(
        `Single-server change: the configuration committed at ${index} changes ` +
          `${voterDifference(this.committed, next)} voters at once ` +
          `(${votersOf(this.committed)} → ${votersOf(next)})`,
      );
    }
    this.committed = next;
    this.changes_committed++;
  }

  /** One node's log against its configuration; `cluster_commit` is the cluster's commit index. */
  checkNode(id: NodeId, core: RaftCore, cluster_commit: number): void {
    const log = core.logEntries();
    const first = core.first_log_index;
    let latest: LogEntry | null = null;
    let latest_index = 0;
    let uncommitted = 0;
    for (let i = log.length - 1; i >= 0; i--) {
      const entry = log[i]!;
      if (!isMembershipEntry(entry.data)) continue;
      if (latest === null) {
        latest = entry;
        latest_index = first + i;
      }
      if (first + i > cluster_commit) uncommitted++;
    }
    if (uncommitted > 1 && this.check_one_change_at_a_time) {
      throw new SafetyViolation(
        `One change at a time: node ${id}'s log holds ${uncommitted} membership entries past ` +
          `the cluster's commit index ${cluster_commit}`,
      );
    }
    if (latest === null) return; // its configuration comes from a snapshot or the bootstrap
    const in_use = Buffer.from(encodeMembership(core.current_membership));
    if (core.membership_index < latest_index || !in_use.equals(Buffer.from(latest.data))) {
      throw new SafetyViolation(
        `node ${id} uses the configuration of index ${core.membership_index}, ` +
          `not the latest in its log (${latest_index})`,
      );
    }
  }

  count(outcome: string): void {
    this.proposals.set(outcome, (this.proposals.get(outcome) ?? 0) + 1);
  }
}

/**
 * One membership step through the current leader. `changes_at_once` > 1 proposes several back to
 * back (the leader refuses all but the first unless a test fault lets them through).
 */
export function membershipNemesis(sim: Simulation, rng: SeededRandom, changes_at_once = 1): void {
  const leader = sim.leader();
  if (leader === null) return;
  for (let i = 0; i < changes_at_once; i++) {
    const change = chooseChange(sim, leader.core, rng);
    if (change === null) return;
    const result = leader.core.proposeMembershipChange(change);
    sim.membership.count(result.ok ? `${change.kind}` : `refused_${result.reason}`);
  }
  leader.driver.schedule();
}

function chooseChange(sim: Simulation, core: RaftCore, rng: SeededRandom): MembershipChange | null {
  const membership = core.current_membership;
  const voters = votersOf(membership);
  const learners = learnersOf(membership);
  const outside = sim.nodes.map((n) => n.id).filter((id) => memberOf(membership, id) === undefined);
  const roll = rng.float();
  if (learners.length > 0 && roll < 0.45) {
    const id = learners[rng.int(learners.length)]!;
    // With auto-promotion the leader promotes learners itself: the nemesis only removes some.
    if (sim.params.auto_promote_learners === true)
      return rng.float() < 0.15 ? { kind: 'remove', id } : null;
    const progress = core.status().peers.find((p) => p.id === id);
    const caught_up =
      progress !== undefined && core.last_log_index - progress.match <= PROMOTE_LAG_ENTRIES_MAX;
    if (caught_up && voters.length < VOTERS_MAX) return { kind: 'promote', id };
    return rng.float() < 0.3 ? { kind: 'remove', id } : null;
  }
  if (roll < 0.7 && outside.length > 0) {
    const id = outside[rng.int(outside.length)]!;
    return { kind: 'add_learner', id, address: `sim:${id}` };
  }
  if (voters.length <= VOTERS_MIN) return null;
  // The leader itself now and then: it must hand over once its removal commits.
  const id = rng.float() < 0.3 ? core.id : voters[rng.int(voters.length)]!;
  return { kind: 'remove', id };
}
