import type { Membership } from './membership';
import type { LogEntry, RaftMessage } from './protocol';
import type { Random } from '../util/prng';

export type NodeId = number;
/** 0 means "no node" (no vote cast, no leader known). */
export const NO_NODE: NodeId = 0;

export type Role = 'follower' | 'pre_candidate' | 'candidate' | 'leader';

/** What must be on disk before any message of the same Ready is sent. */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/**
 * Log entries to persist: drop every entry at index >= first_index, then append `entries` starting
 * at first_index.
 */
export interface EntriesToPersist {
  first_index: number;
  entries: LogEntry[];
}

export interface Outbound {
  to: NodeId;
  message: RaftMessage;
}

export interface CommittedEntry {
  index: number;
  entry: LogEntry;
}

/** A read that is linearizable once the state machine has applied up to `index`. */
export interface ReadState {
  request_id: number;
  index: number;
}

export interface SoftState {
  role: Role;
  term: number;
  leader_id: NodeId;
}

/**
 * One batch of work from the core. The core says what the batch needs; the
 * driver (src/driver/ready_driver.ts, shared by the server and the simulator)
 * carries it out in this order:
 * 1. send `messages` at once: they promise nothing that depends on this Ready's
 *    save (a leader's AppendEntries while its own copy is being written, thesis
 *    §10.2.1; anything from a Ready with nothing to sync);
 * 2. persist `hard_state` and `entries`; when `must_sync` is false only the
 *    commit index changed, which may ride on the next save instead of its own
 *    fsync (a node restarted with an older commit index learns it again);
 * 3. once durable, send `messages_after_persist` (votes, append acknowledgements,
 *    a candidate's requests: each promises what was just saved);
 * 4. apply `committed` in order (already durable on a majority: may overlap 2),
 *    serve each of `reads` once applied >= its index, fail each of `failed_reads`;
 * 5. call `advance(ready)`.
 */
export interface Ready {
  hard_state: HardState | null;
  entries: EntriesToPersist | null;
  /** true when entries or the term or vote changed: they must be durable before step 3. */
  must_sync: boolean;
  messages: Outbound[];
  messages_after_persist: Outbound[];
  committed: CommittedEntry[];
  reads: ReadState[];
  /** Read requests that can no longer be confirmed (leadership lost); the client should retry. */
  failed_reads: number[];
  soft_state: SoftState | null;
  /**
   * InstallSnapshot, leader: stream the newest durable snapshot to each of these followers (the
   * server reads the file; the core never holds its bytes).
   */
  snapshot_sends: SnapshotSend[];
  /**
   * InstallSnapshot, follower: a received snapshot, already durable under its final file name, to
   * install: restore the state machine from it and rewrite the log to start after it (keeping the
   * log after it, as the core now holds it) before `hard_state` is saved and
   * `messages_after_persist` sent. Such a Ready carries no entries and nothing committed.
   */
  snapshot: SnapshotPoint | null;
}

export interface SnapshotSend {
  to: NodeId;
  /** The leader's term: the transfer is abandoned when it changes. */
  term: number;
}

export interface RaftLimits {
  /**
   * Largest single proposal (entry data bytes); a message always carries at least one entry, so
   * this bounds frame size.
   */
  entry_bytes_max: number;
  message_entries_bytes_max: number;
  message_entries_max: number;
  inflight_messages_max: number;
  uncommitted_bytes_max: number;
  pending_reads_max: number;
  /**
   * Committed entries handed out in one Ready, so that replaying a long log never blocks the driver
   * for long.
   */
  committed_entries_per_ready_max: number;
  /**
   * Entries handed out for persistence in one Ready (a follower catching up while its fsync is
   * slow would otherwise produce one save larger than a WAL record may be).
   */
  ready_entries_max: number;
  /** Data bytes of those entries; a single larger entry still goes alone. */
  ready_entries_bytes_max: number;
  /**
   * A learner is promoted to voter (auto_promote_learners) once its match index is within this
   * many entries of the leader's last index.
   */
  learner_promotion_lag_entries_max: number;
}

/**
 * Test-only switches that break one Raft rule each, so the simulator can
 * prove its checks notice. Never set in production code.
 */
export interface RaftFaults {
  /** Commit by counting replicas of entries from earlier terms (Figure 8 bug). */
  commit_old_term_entries?: boolean;
  /** Grant votes without the candidate-log-is-up-to-date check. */
  vote_without_log_check?: boolean;
  /** Serve ReadIndex reads without confirming leadership by a heartbeat round. */
  read_without_heartbeat?: boolean;
  /** Leader counts its own entries as replicated before they are persisted. */
  ack_before_persist?: boolean;
  /** Propose a membership change while the previous one is not yet committed. */
  concurrent_membership_changes?: boolean;
  /** Propose a membership change before an entry of the leader's term committed (the errata). */
  membership_change_before_term_commit?: boolean;
  /** Install a received snapshot even at or below the commit index (applied goes back). */
  install_stale_snapshot?: boolean;
}

export interface RaftConfig {
  id: NodeId;
  /**
   * The bootstrap configuration's voters (the config files), including this node; empty for a
   * node that joins a running cluster (it learns the membership from the leader). Once the log or
   * a snapshot holds a membership, that is authoritative (see membership.ts).
   */
  voters: NodeId[];
  /** Client addresses of the bootstrap voters, recorded in the first membership entry. */
  addresses?: ReadonlyMap<NodeId, string>;
  /**
   * Ticks without hearing a leader before a follower campaigns; the real timeout is drawn from
   * [election_ticks, 2*election_ticks).
   */
  election_ticks: number;
  heartbeat_ticks: number;
  random: Random;
  limits: RaftLimits;
  prevote: boolean;
  check_quorum: boolean;
  /** The leader promotes each learner once it is caught up (see RaftCore.maybePromoteLearner). */
  auto_promote_learners: boolean;
  faults?: RaftFaults;
}

/** The last log position a snapshot covers. */
export interface SnapshotPoint {
  index: number;
  term: number;
}

/** What a snapshot records besides the state machine: its point and the membership. */
export interface SnapshotMeta extends SnapshotPoint {
  voters: NodeId[];
  /** The configuration at `index` (voters and learners with addresses); absent in old files. */
  membership?: Membership;
}

/**
 * Persisted state a node restarts from. `snapshot` is where the log starts: entries[0] is index
 * snapshot.index + 1 (1 without one), and a snapshot covers everything up to it. The state
 * machine restarts at `applied_index` (a snapshot's index, at or after snapshot.index; default
 * snapshot.index, or 0): it must already hold that state.
 */
export interface RestoredState {
  hard_state: HardState;
  entries: LogEntry[];
  snapshot?: SnapshotPoint;
  applied_index?: number;
  /**
   * The configuration at applied_index (a snapshot's); without it the configuration is the
   * bootstrap one plus the membership entries in `entries`.
   */
  membership?: Membership;
}

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | {
      ok: false;
      reason: 'not_leader' | 'uncommitted_full' | 'transferring' | 'too_large';
      leader_id: NodeId;
    };

export type MembershipProposeResult =
  | { ok: true; index: number; term: number }
  | {
      ok: false;
      /**
       * Retryable: not_leader, transferring, change_in_progress (the previous change has not
       * committed), no_commit_in_term (a new leader has not yet committed an entry of its term).
       * invalid_change: the change itself is refused (detail says why).
       */
      reason:
        | 'not_leader'
        | 'transferring'
        | 'change_in_progress'
        | 'no_commit_in_term'
        | 'invalid_change';
      detail: string;
      leader_id: NodeId;
    };

export type ReadResult =
  | { ok: true }
  | { ok: false; reason: 'not_leader' | 'too_many_reads'; leader_id: NodeId };
