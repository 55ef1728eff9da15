/**
 * One seed → one randomized run: a safety phase under a nemesis (crashes,
 * restarts, pauses, partitions, drops, duplicates, reordering), then a
 * liveness phase (network healed, every node up) in which a leader must
 * appear and a write must commit within LIVENESS_BOUND_MS, then a
 * linearizability check of the clients' history.
 */
import { SeededRandom } from '../../src/util/prng';
import { checkLinearizable } from './linearizability';
import type { StorageEvent } from './sim_node';
import { membershipNemesis } from './membership_nemesis';
import { SafetyViolation, Simulation, type SimFaults, type SimParams } from './simulation';

/** With tick 10 ms and election timeouts of 100–200 ms: generous room for a few split votes. */
export const LIVENESS_BOUND_MS = 4000;

export interface SeedOptions {
  nodes?: number;
  faults?: SimFaults;
  chaos_ms?: number;
  /**
   * 'mixed': every kind of fault; 'crashy': frequent crashes and restarts (durability and Figure
   * 8).
   */
  profile?: 'mixed' | 'crashy' | 'partition';
  /** Force the batch size (1 exposes rules that batching would mask). */
  message_entries_max?: number;
  /** Force the snapshot threshold (0: no snapshots) instead of the seed's draw. */
  snapshot_entries?: number;
  /** Membership changes on or off (runSeed: the seed's draw; drawParams alone: off). */
  membership?: boolean;
  /**
   * Skip the liveness phase (for runs that break a rule on purpose and only look for safety
   * failures).
   */
  liveness?: boolean;
}

export interface SeedResult {
  seed: number;
  ok: boolean;
  violation: string | null;
  operations: number;
  messages: number;
  virtual_ms: number;
  storage_events: Map<StorageEvent, number>;
  /** Membership entries committed during the run. */
  membership_changes: number;
}

/** A network that neither loses, duplicates nor reorders, with short delays and fast fsyncs. */
export const RELIABLE_NETWORK: Partial<SimParams> = {
  drop_rate: 0,
  duplicate_rate: 0,
  delay_min_ms: 0.5,
  delay_max_ms: 3,
  fsync_min_ms: 0.1,
  fsync_max_ms: 1,
  reorder: false,
};

export function drawParams(seed: number, options: SeedOptions = {}): SimParams {
  const rng = new SeededRandom(seed ^ 0x5eed);
  const crashy = (options.profile ?? profileForSeed(seed)) === 'crashy';
  const delay_max_ms = 1 + rng.int(12);
  return {
    seed,
    nodes: options.nodes ?? (rng.float() < 0.7 ? 3 : 5),
    tick_ms: 10,
    election_ticks: 10,
    heartbeat_ticks: 2,
    delay_min_ms: 0.2,
    delay_max_ms,
    drop_rate: rng.float() < 0.3 ? 0 : rng.float() * 0.15,
    duplicate_rate: rng.float() < 0.5 ? 0 : rng.float() * 0.05,
    fsync_min_ms: 0.1,
    fsync_max_ms: rng.float() < 0.2 ? 5 + rng.float() * 25 : 0.2 + rng.float() * 4,
    clients: 2 + rng.int(4),
    keys: 1 + rng.int(4),
    client_timeout_ms: 600,
    prevote: true,
    check_quorum: true,
    faults: options.faults ?? {},
    use_codec: rng.float() < 0.25,
    message_entries_max: options.message_entries_max ?? [1, 2, 8, 64][rng.int(4)]!,
    inflight_messages_max: [1, 4, 16][rng.int(3)]!,
    reorder: rng.float() < 0.3,
    disk_faults: rng.float() < 0.7,
    // The crashy profile is about durability: every crash a power loss that keeps little.
    power_loss_probability: crashy ? 1 : 0.5,
    keep_unsynced_probability: crashy ? 0.2 : 0.5,
    // A generator of its own, so the draws above (and every seed's replay) stay as they were.
    snapshot_entries:
      options.snapshot_entries ?? [0, 5, 20, 60][new SeededRandom(seed ^ 0x54a9).int(4)]!,
    snapshot_chunk_bytes: [64, 200, 1000, 64 * 1024][new SeededRandom(seed ^ 0x1c5).int(4)]!,
    ...membershipParams(seed, options),
  };
}

/**
 * Membership changes with two spare nodes to add, when asked (scripted runs: off). Three in four
 * seeds leave promotions to the leaders (auto-promotion, as the server runs); the rest promote
 * through the nemesis (a generator of its own: other draws stay).
 */
function membershipParams(
  seed: number,
  options: SeedOptions,
): {
  membership_changes: boolean;
  spare_nodes: number;
  auto_promote_learners: boolean;
} {
  const on = options.membership ?? false;
  const auto = new SeededRandom(seed ^ 0xa070).float() < 0.75;
  return { membership_changes: on, spare_nodes: on ? 2 : 0, auto_promote_learners: on && auto };
}

/** Half the random seeds change the membership (a generator of its own: other draws stay). */
function drawMembership(seed: number): boolean {
  return new SeededRandom(seed ^ 0x3e3b).float() < 0.5;
}

export async function runSeed(seed: number, options: SeedOptions = {}): Promise<SeedResult> {
  const params = drawParams(seed, {
    ...options,
    membership: options.membership ?? drawMembership(seed),
  });
  const sim = new Simulation(params);
  let violation: string | null = null;
  try {
    sim.startClients();
    await chaosPhase(sim, seed, options);
    if (options.liveness !== false) await livenessPhase(sim, seed);
    else await sim.runFor(1000);
    sim.stopClients();
    await sim.runUntil(() => sim.clientsIdle(), 2 * params.client_timeout_ms);
    await sim.runFor(params.client_timeout_ms);
    sim.checkLogMatching();
    const check = checkLinearizable(sim.history);
    if (!check.ok && !check.timed_out) {
      throw new LinearizabilityFailure(
        `history not linearizable: key ${check.failure?.key}: ${check.failure?.explanation ?? ''}`,
      );
    }
  } catch (error) {
    violation = describeViolation(error);
  }
  return {
    seed,
    ok: violation === null,
    violation,
    operations: sim.history.length,
    messages: sim.messages_delivered,
    virtual_ms: sim.now,
    storage_events: sim.storage_events,
    membership_changes: sim.membership.changes_committed,
  };
}

/** A check's failure as one line; anything else is a bug in the simulator itself: rethrown. */
function describeViolation(error: unknown): string {
  if (
    error instanceof SafetyViolation ||
    error instanceof LivenessFailure ||
    error instanceof LinearizabilityFailure
  ) {
    return `${error.name}: ${error.message}`;
  }
  if (error instanceof Error && error.name === 'AssertionFailure') {
    return `AssertionFailure: ${error.message}`;
  }
  throw error;
}

/** Faults of the seed's profile for chaos_ms; then every fault healed, every node restarted. */
async function chaosPhase(sim: Simulation, seed: number, options: SeedOptions): Promise<void> {
  const nemesis_rng = new SeededRandom(seed ^ 0xbad);
  const chaos_ms = options.chaos_ms ?? 3000;
  const profile = options.profile ?? profileForSeed(seed);
  const end = sim.now + chaos_ms;
  const crashy = profile === 'crashy';
  const chaos = { on: true };
  if (crashy) strikeAtBadMoments(sim, nemesis_rng, chaos);
  if (sim.params.membership_changes === true) changeMembershipMeanwhile(sim, seed, options, chaos);
  while (sim.now < end) {
    await sim.runFor(crashy ? 10 + nemesis_rng.int(150) : 50 + nemesis_rng.int(400));
    if (crashy) crashNemesis(sim, nemesis_rng);
    else if (profile === 'partition') partitionNemesis(sim, nemesis_rng);
    else nemesis(sim, nemesis_rng);
  }
  sim.on_leader_elected = null;
  sim.on_leader_commit = null;
  chaos.on = false;
  sim.heal();
  sim.setUnreliable(0, 0);
  for (const node of sim.nodes) {
    node.healDisk();
    sim.restart(node.id);
  }
}

/** A membership step every 20-220 ms while the chaos lasts, on a generator of its own. */
function changeMembershipMeanwhile(
  sim: Simulation,
  seed: number,
  options: SeedOptions,
  chaos: { on: boolean },
): void {
  const rng = new SeededRandom(seed ^ 0x3e3b);
  const changes_at_once = options.faults?.concurrent_membership_changes === true ? 2 : 1;
  const step = (): void => {
    if (!chaos.on) return;
    membershipNemesis(sim, rng, changes_at_once);
    sim.schedule(20 + rng.int(200), step);
  };
  sim.schedule(20 + rng.int(200), step);
}

/**
 * Figure 8: leaders that die moments after election, having replicated only part of their log.
 * Like MIT's Figure8 test, each new leader also gets a proposal of its own at once; and leaders
 * die just after their commit index moved, before followers learn of it.
 */
function strikeAtBadMoments(sim: Simulation, rng: SeededRandom, chaos: { on: boolean }): void {
  let fig8_counter = 0;
  sim.on_leader_elected = (id) => {
    sim.schedule(0, () => {
      const node = sim.node(id);
      if (node.alive && node.core.current_role === 'leader') {
        node.replica.write(
          { op: 'set', key: Buffer.from('fig8'), words: [Buffer.from(`f${++fig8_counter}`)] },
          () => undefined,
        );
      }
    });
    if (rng.float() < 0.5) sim.schedule(rng.float() * 15, () => chaos.on && sim.crash(id));
  };
  sim.on_leader_commit = (id) => {
    if (rng.float() < 0.2) sim.schedule(rng.float() * 2, () => chaos.on && sim.crash(id));
  };
}

/** Healed and all up: a leader, the backlog committed, and a fresh write, within stated bounds. */
async function livenessPhase(sim: Simulation, seed: number): Promise<void> {
  const bound = LIVENESS_BOUND_MS;
  if (!(await sim.runUntil(() => sim.leader() !== null, bound)))
    throw new LivenessFailure(`no leader within ${bound} ms after healing`);
  // Everything already in the leader's log commits (clients keep writing: the log keeps growing).
  const backlog = sim.leader()!.core.last_log_index;
  const drained = await sim.runUntil(() => {
    const leader = sim.leader();
    return leader !== null && leader.core.commit_index >= backlog;
  }, bound);
  if (!drained)
    throw new LivenessFailure(
      `the leader's log did not fully commit within ${bound} ms after healing`,
    );
  const start = sim.now;
  if (await sim.writeThroughLeader('liveness', `probe-${seed}`, bound)) return;
  // The first leader may be deposed once by a node whose log was ahead, or refuse writes while it
  // hands over leadership (its removal committed): retry as a client would, same bound.
  for (let attempt = 2; sim.now - start < bound; attempt++) {
    const left = bound - (sim.now - start);
    await sim.runUntil(() => sim.leader() !== null, left);
    const rest = Math.max(bound - (sim.now - start), 1);
    if (await sim.writeThroughLeader('liveness', `probe${attempt}-${seed}`, rest)) return;
    await sim.runFor(sim.params.tick_ms);
  }
  throw new LivenessFailure(`a write did not commit within ${bound} ms after healing`);
}

/** The seed alone picks the fault profile, so a seed replays exactly with no other flag. */
export function profileForSeed(seed: number): 'mixed' | 'crashy' | 'partition' {
  const roll = new SeededRandom(seed ^ 0x9f0f).float();
  return roll < 0.5 ? 'mixed' : roll < 0.75 ? 'crashy' : 'partition';
}

function nemesis(sim: Simulation, rng: SeededRandom): void {
  const n = sim.nodes.length;
  const pick = (): number => 1 + rng.int(n);
  const roll = rng.float();
  if (roll < 0.15) {
    sim.crash(pick());
  } else if (roll < 0.3) {
    for (const node of sim.nodes) if (!node.alive && rng.float() < 0.7) sim.restart(node.id);
  } else if (roll < 0.4) {
    const leader = sim.leader();
    if (leader !== null) sim.crash(leader.id);
  } else if (roll < 0.5) {
    sim.isolate(pick());
  } else if (roll < 0.58) {
    const leader = sim.leader();
    if (leader !== null) sim.isolate(leader.id);
  } else if (roll < 0.66) {
    const group: number[] = [];
    for (let id = 1; id <= n; id++) if (rng.float() < 0.5) group.push(id);
    sim.split(group);
  } else if (roll < 0.72) {
    sim.blockOneWay(pick(), pick());
  } else if (roll < 0.76) {
    sim.pause(pick(), 50 + rng.int(600));
  } else if (roll < 0.82) {
    const leader = sim.leader();
    if (leader !== null) sim.pause(leader.id, 200 + rng.int(800));
  } else if (roll < 0.84 && sim.params.disk_faults) {
    const down = sim.nodes.filter((node) => node.state === 'down');
    const victim = down[rng.int(Math.max(down.length, 1))];
    if (victim !== undefined) sim.corruptAtRest(victim.id);
  } else {
    sim.heal();
  }
}

/**
 * Cut off or pause the leader again and again: a deposed leader that still believes it leads must
 * not serve reads.
 */
function partitionNemesis(sim: Simulation, rng: SeededRandom): void {
  const roll = rng.float();
  const leader = sim.leader();
  if (roll < 0.4) {
    if (leader !== null) sim.isolate(leader.id);
  } else if (roll < 0.7) {
    if (leader !== null) sim.pause(leader.id, 150 + rng.int(400));
  } else {
    sim.heal();
  }
}

/**
 * Crash leaders and followers often and bring them back quickly: stresses persistence and Figure 8.
 */
function crashNemesis(sim: Simulation, rng: SeededRandom): void {
  const roll = rng.float();
  if (roll < 0.35) {
    const leader = sim.leader();
    if (leader !== null) sim.crash(leader.id);
  } else if (roll < 0.55) {
    sim.crash(1 + rng.int(sim.nodes.length));
  } else {
    for (const node of sim.nodes) if (!node.alive && rng.float() < 0.6) sim.restart(node.id);
  }
}

export class LivenessFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LivenessFailure';
  }
}

export class LinearizabilityFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinearizabilityFailure';
  }
}
