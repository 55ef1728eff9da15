/**
 * The one place a RaftConfig is built: defaults filled in, every field checked.
 * The server, the simulator and the core tests all call buildRaftConfig, so a
 * rule added here holds for all of them.
 */
import { LIMITS } from '../util/limits';
import { RaftConfigError } from '../util/errors';
import type { Random } from '../util/prng';
import { LOG_ENTRY_HEADER_BYTES } from './protocol';
import { NO_NODE, type NodeId, type RaftConfig, type RaftFaults, type RaftLimits } from './types';

/** Defaults as the server runs (the configuration file's defaults for the timing). */
const RAFT_CONFIG_DEFAULTS = {
  election_ticks: 10,
  heartbeat_ticks: 2,
  prevote: true,
  check_quorum: true,
  auto_promote_learners: true,
} as const;

/** The server's limits, from limits.ts. */
const RAFT_LIMITS_DEFAULT: RaftLimits = {
  entry_bytes_max: LIMITS.raft_entry_bytes_max,
  message_entries_bytes_max: LIMITS.raft_message_entries_bytes_max,
  message_entries_max: LIMITS.raft_message_entries_max,
  inflight_messages_max: LIMITS.raft_inflight_messages_max,
  uncommitted_bytes_max: LIMITS.raft_uncommitted_bytes_max,
  pending_reads_max: LIMITS.raft_pending_reads_max,
  committed_entries_per_ready_max: LIMITS.raft_committed_entries_per_ready_max,
  ready_entries_max: LIMITS.raft_ready_entries_max,
  ready_entries_bytes_max: LIMITS.raft_ready_entries_bytes_max,
  learner_promotion_lag_entries_max: LIMITS.learner_promotion_lag_entries_max,
};

export interface RaftConfigOptions {
  /** This node: a positive int32 (ids travel as int32 on the wire; 0 means "no node"). */
  id: NodeId;
  /**
   * The bootstrap voters, this node included; distinct ids, each as `id`. Empty for a node that
   * joins a running cluster.
   */
  voters: readonly NodeId[];
  /** Client addresses of the bootstrap voters (recorded in membership entries). */
  addresses?: ReadonlyMap<NodeId, string>;
  /** The core's only source of randomness (election jitter); seeded for replayable runs. */
  random: Random;
  /**
   * Ticks without hearing a leader before a follower campaigns (the timeout is drawn from
   * [election_ticks, 2*election_ticks)); also the leader's CheckQuorum and transfer period.
   * At least 2. Default 10.
   */
  election_ticks?: number;
  /** Ticks between a leader's heartbeats; at least 1 and below election_ticks. Default 2. */
  heartbeat_ticks?: number;
  /** PreVote (thesis §9.6): a candidate first asks whether it could win. Default true. */
  prevote?: boolean;
  /** CheckQuorum (thesis §6.2): a leader steps down without a live quorum. Default true. */
  check_quorum?: boolean;
  /** The leader promotes a learner to voter once it is caught up. Default true. */
  auto_promote_learners?: boolean;
  /** Overrides of the server's limits (RAFT_LIMITS_DEFAULT); each a positive integer. */
  limits?: Partial<RaftLimits>;
  /** Test-only rule breakers (the simulator proves its checks notice them). */
  faults?: RaftFaults;
}

const INT32_MAX = 0x7fff_ffff;

/** Fills defaults and validates; throws RaftConfigError naming the first bad field. */
export function buildRaftConfig(options: RaftConfigOptions): RaftConfig {
  const config: RaftConfig = {
    id: options.id,
    voters: options.voters.slice(),
    election_ticks: options.election_ticks ?? RAFT_CONFIG_DEFAULTS.election_ticks,
    heartbeat_ticks: options.heartbeat_ticks ?? RAFT_CONFIG_DEFAULTS.heartbeat_ticks,
    random: options.random,
    limits: { ...RAFT_LIMITS_DEFAULT, ...options.limits },
    prevote: options.prevote ?? RAFT_CONFIG_DEFAULTS.prevote,
    check_quorum: options.check_quorum ?? RAFT_CONFIG_DEFAULTS.check_quorum,
    auto_promote_learners:
      options.auto_promote_learners ?? RAFT_CONFIG_DEFAULTS.auto_promote_learners,
  };
  if (options.faults !== undefined) config.faults = options.faults;
  if (options.addresses !== undefined) config.addresses = options.addresses;
  checkMembers(config);
  checkTiming(config);
  checkLimits(config.limits);
  return config;
}

function checkMembers(config: RaftConfig): void {
  if (!isNodeId(config.id)) throw new RaftConfigError('id', `${config.id} is not a node id`);
  const seen = new Set<NodeId>();
  for (const voter of config.voters) {
    if (!isNodeId(voter)) throw new RaftConfigError('voters', `${voter} is not a node id`);
    if (seen.has(voter)) throw new RaftConfigError('voters', `${voter} listed twice`);
    seen.add(voter);
  }
  if (seen.size > 0 && !seen.has(config.id))
    throw new RaftConfigError('voters', `do not include this node (${config.id})`);
}

function isNodeId(id: number): boolean {
  return Number.isInteger(id) && id > NO_NODE && id <= INT32_MAX;
}

function checkTiming(config: RaftConfig): void {
  if (!Number.isInteger(config.election_ticks) || config.election_ticks < 2)
    throw new RaftConfigError('election_ticks', `${config.election_ticks} is not an integer >= 2`);
  if (!Number.isInteger(config.heartbeat_ticks) || config.heartbeat_ticks < 1)
    throw new RaftConfigError(
      'heartbeat_ticks',
      `${config.heartbeat_ticks} is not a positive integer`,
    );
  // A follower must hear a heartbeat before it gives up on the leader.
  if (config.heartbeat_ticks >= config.election_ticks)
    throw new RaftConfigError(
      'heartbeat_ticks',
      `${config.heartbeat_ticks} must be less than election_ticks ${config.election_ticks}`,
    );
}

function checkLimits(limits: RaftLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1)
      throw new RaftConfigError(`limits.${name}`, `${value} is not a positive integer`);
  }
  // A batch never outgrows a message carrying one largest entry, so that message is the largest
  // AppendEntries and the one limits.ts checks against the frame limit.
  if (limits.message_entries_bytes_max > limits.entry_bytes_max + LOG_ENTRY_HEADER_BYTES)
    throw new RaftConfigError(
      'limits.message_entries_bytes_max',
      `${limits.message_entries_bytes_max} exceeds one largest entry with its header ` +
        `(${limits.entry_bytes_max} + ${LOG_ENTRY_HEADER_BYTES})`,
    );
}
