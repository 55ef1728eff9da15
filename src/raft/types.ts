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
 * One batch of work from the core. The driver must, in order:
 * 1. persist `hard_state` and `entries` durably (fsync),
 * 2. then send `messages`,
 * 3. apply `committed` in order (may overlap with 1: these are already committed by a quorum),
 * 4. serve each of `reads` once applied >= its index; fail each of `failed_reads`,
 * 5. call `advance(ready)`.
 */
export interface Ready {
  hard_state: HardState | null;
  entries: EntriesToPersist | null;
  messages: Outbound[];
  committed: CommittedEntry[];
  reads: ReadState[];
  /** Read requests that can no longer be confirmed (leadership lost); the client should retry. */
  failed_reads: number[];
  soft_state: SoftState | null;
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
}

export interface RaftConfig {
  id: NodeId;
  /** Every voting member, including this node. */
  voters: NodeId[];
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
  faults?: RaftFaults;
}

/** Persisted state a node restarts from. entries[0] is log index 1. */
export interface RestoredState {
  hard_state: HardState;
  entries: LogEntry[];
}

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | {
      ok: false;
      reason: 'not_leader' | 'uncommitted_full' | 'transferring' | 'too_large';
      leader_id: NodeId;
    };

export type ReadResult =
  | { ok: true }
  | { ok: false; reason: 'not_leader' | 'too_many_reads'; leader_id: NodeId };
