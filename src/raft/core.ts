import { InstallSnapshotStatus, MessageType } from './protocol';
import type {
  AppendEntriesRequest,
  AppendEntriesResponse,
  InstallSnapshotRequest,
  InstallSnapshotResponse,
  LogEntry,
  RaftMessage,
  RequestVoteRequest,
  RequestVoteResponse,
  TimeoutNow,
} from './protocol';
import { assert } from '../util/assert';
import { LIMITS } from '../util/limits';
import { RaftLog } from './log';
import {
  applyChange,
  bootstrapMembership,
  encodeMembership,
  hasQuorum,
  isMembershipEntry,
  learnersOf,
  isVoter,
  type Membership,
  type MembershipChange,
  MembershipLog,
  quorumMatch,
  sortDescending,
  votersOf,
} from './membership';
import { Progress } from './progress';
import {
  NO_NODE,
  type HardState,
  type MembershipProposeResult,
  type NodeId,
  type Outbound,
  type ProposeResult,
  type RaftConfig,
  type ReadResult,
  type ReadState,
  type Ready,
  type RestoredState,
  type Role,
  type SnapshotPoint,
  type SnapshotSend,
  type SoftState,
} from './types';

interface PendingRead {
  request_id: number;
  /** Commit index when the read arrived; the read is served once applied reaches it. */
  index: number;
  /** The heartbeat round that proves leadership for this read; null until that round is sent. */
  seq: number | null;
}

export interface PeerProgressStatus {
  id: NodeId;
  /** false: a learner (or a member being removed) the leader replicates to without counting. */
  voter: boolean;
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  /** snapshot state: the snapshot index the transfer started with (0 otherwise). */
  pending_snapshot: number;
  inflight_messages: number;
  recent_active: boolean;
}

export interface RaftStatus {
  id: NodeId;
  role: Role;
  term: number;
  vote: NodeId;
  leader_id: NodeId;
  commit_index: number;
  last_log_index: number;
  last_log_term: number;
  /** Last index covered by the local snapshot (0: none); entries after it are kept. */
  snapshot_index: number;
  snapshot_term: number;
  applied_index: number;
  stable_index: number;
  uncommitted_bytes: number;
  pending_reads: number;
  transfer_target: NodeId;
  peers: PeerProgressStatus[];
}

/**
 * Raft (Ongaro & Ousterhout 2014; Ongaro's thesis ch. 3, 4, 6, 9) as a pure
 * state machine: no clock, timers, sockets, disk or randomness of its own.
 * The driver calls tick(), step(), propose(), readIndex(), then takes one
 * Ready at a time, carries it out in the order documented on `Ready`, and
 * calls advance(). Every "persist before you send" rule rests on that order.
 */
export class RaftCore {
  readonly id: NodeId;
  private readonly config: RaftConfig;
  /** Every member but this node: of the current configuration and of the committed one. */
  private peers: NodeId[] = [];
  private readonly log: RaftLog;
  /** The configurations in the log; the latest is in effect (membership.ts). */
  private readonly membership: MembershipLog;

  private term: number;
  private vote: NodeId;
  private role: Role = 'follower';
  private leader_id: NodeId = NO_NODE;

  private election_elapsed = 0;
  private heartbeat_elapsed = 0;
  private randomized_election_ticks = 0;

  private votes = new Map<NodeId, boolean>();
  private readonly progress = new Map<NodeId, Progress>();
  private seq = 0;

  private reads_awaiting_commit: number[] = [];
  private pending_reads: PendingRead[] = [];
  private read_round_needed = false;
  private ready_reads: ReadState[] = [];
  private failed_reads: number[] = [];

  private transfer_target: NodeId = NO_NODE;
  private transfer_elapsed = 0;

  private messages: Outbound[] = [];
  /**
   * Responses that wait for the rest of the unstable log to be handed out and saved (a Ready
   * hands out at most ready_entries_max entries), from term `held_term`.
   */
  private held_messages: Outbound[] = [];
  private held_term = 0;
  private persisted_hard_state: HardState;
  private last_soft_state: SoftState;
  private ready_outstanding: Ready | null = null;

  /** The newest snapshot the driver reported durable (>= the log's compaction point). */
  private durable_snapshot: SnapshotPoint;
  /** Leader: followers the server should start streaming a snapshot to. */
  private snapshot_sends: SnapshotSend[] = [];
  /** Follower: a received snapshot accepted for install, not yet handed out in a Ready. */
  private pending_install: SnapshotPoint | null = null;

  constructor(config: RaftConfig, restored: RestoredState) {
    assert(
      config.heartbeat_ticks > 0 && config.heartbeat_ticks < config.election_ticks,
      'heartbeat_ticks < election_ticks',
    );
    this.id = config.id;
    this.config = config;
    this.log = new RaftLog(
      restored.entries,
      restored.hard_state.commit,
      restored.snapshot,
      restored.applied_index,
    );
    this.membership = this.restoreMembership(config, restored);
    this.refreshPeers();
    this.term = restored.hard_state.term;
    this.vote = restored.hard_state.vote;
    this.persisted_hard_state = { ...restored.hard_state, commit: this.log.committed };
    this.durable_snapshot = { index: this.log.snapshot_index, term: this.log.snapshot_term };
    this.resetElectionTimer();
    this.last_soft_state = this.softState();
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
  }

  step(from: NodeId, message: RaftMessage): void {
    // Messages are handled whatever our configuration says (thesis §4.1): a new member hears from
    // a leader before it learns it is a member. The transport authenticates peers.
    if (from === this.id || from <= NO_NODE) return;
    // The decoder refuses these; a term past the limit must never become ours whatever the source.
    if (message.term > LIMITS.raft_term_max) return;
    if (message.term > this.term) {
      if (!this.acceptHigherTerm(from, message)) return;
    } else if (message.term < this.term) {
      this.handleStaleTerm(from, message);
      return;
    }
    switch (message.type) {
      case MessageType.PreVoteRequest:
      case MessageType.RequestVoteRequest:
      case MessageType.TransferVoteRequest:
        this.handleVoteRequest(from, message);
        return;
      case MessageType.PreVoteResponse:
      case MessageType.RequestVoteResponse:
        this.handleVoteResponse(from, message);
        return;
      case MessageType.AppendEntriesRequest:
        this.handleAppendEntries(from, message);
        return;
      case MessageType.AppendEntriesResponse:
        this.handleAppendResponse(from, message);
        return;
      case MessageType.TimeoutNow:
        this.handleTimeoutNow(from, message);
        return;
      case MessageType.InstallSnapshotRequest:
        this.handleSnapshotChunk(from, message);
        return;
      case MessageType.InstallSnapshotResponse:
        this.handleSnapshotResponse(from, message);
        return;
    }
  }

  propose(data: Uint8Array): ProposeResult {
    if (this.role !== 'leader')
      return { ok: false, reason: 'not_leader', leader_id: this.leader_id };
    if (this.transfer_target !== NO_NODE)
      return { ok: false, reason: 'transferring', leader_id: this.leader_id };
    if (data.length > this.config.limits.entry_bytes_max)
      return { ok: false, reason: 'too_large', leader_id: this.id };
    assert(!isMembershipEntry(data), 'membership changes go through proposeMembershipChange');
    const uncommitted = this.log.uncommitted_bytes;
    if (uncommitted > 0 && uncommitted + data.length > this.config.limits.uncommitted_bytes_max) {
      return { ok: false, reason: 'uncommitted_full', leader_id: this.id };
    }
    const index = this.log.append({ term: this.term, data });
    return { ok: true, index, term: this.term };
  }

  /**
   * A single-server membership change (thesis §4.1), in effect here as soon as it is appended.
   * Refused while the previous change is uncommitted or before an entry of this leader's term has
   * committed (the errata): both are retryable.
   */
  proposeMembershipChange(change: MembershipChange): MembershipProposeResult {
    const refuse = (
      reason: Extract<MembershipProposeResult, { ok: false }>['reason'],
      detail: string,
    ): MembershipProposeResult => ({ ok: false, reason, detail, leader_id: this.leader_id });
    if (this.role !== 'leader') return refuse('not_leader', 'not the leader');
    if (this.transfer_target !== NO_NODE) return refuse('transferring', 'leadership transfer');
    const faults = this.config.faults;
    if (
      this.log.term(this.log.committed) !== this.term &&
      faults?.membership_change_before_term_commit !== true
    )
      return refuse('no_commit_in_term', 'no entry of this leader term has committed yet');
    if (
      this.membership.current_index > this.log.committed &&
      faults?.concurrent_membership_changes !== true
    )
      return refuse('change_in_progress', 'the previous membership change has not committed');
    const next = applyChange(this.membership.current, change);
    if (!next.ok) return refuse('invalid_change', next.reason);
    const index = this.appendEntry({ term: this.term, data: encodeMembership(next.membership) });
    return { ok: true, index, term: this.term };
  }

  /**
   * ReadIndex (thesis §6.4): the read is linearizable once this node has
   * confirmed it was still leader after the read arrived (a heartbeat round
   * answered by a majority) and has applied up to the commit index it saw.
   */
  readIndex(request_id: number): ReadResult {
    if (this.role !== 'leader')
      return { ok: false, reason: 'not_leader', leader_id: this.leader_id };
    if (
      this.reads_awaiting_commit.length + this.pending_reads.length >=
      this.config.limits.pending_reads_max
    ) {
      return { ok: false, reason: 'too_many_reads', leader_id: this.id };
    }
    // Until an entry of this term commits, our commit index may lag the true one (§6.4 step 1).
    if (this.log.term(this.log.committed) !== this.term)
      this.reads_awaiting_commit.push(request_id);
    else this.registerRead(request_id);
    return { ok: true };
  }

  /** Leadership transfer (thesis §3.10): catch the target up, then tell it to campaign at once. */
  transferLeadership(target: NodeId): boolean {
    if (this.role !== 'leader' || target === this.id || !this.isVoterNow(target)) return false;
    this.transfer_target = target;
    this.transfer_elapsed = 0;
    this.maybeSendTimeoutNow(target);
    return true;
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    if (this.ready_outstanding !== null) return false;
    return (
      this.messages.length > 0 ||
      this.log.hasUnstable() ||
      this.hardStateChanged() ||
      this.log.applied < this.log.committed ||
      this.ready_reads.length > 0 ||
      this.failed_reads.length > 0 ||
      this.read_round_needed ||
      this.softStateChanged() ||
      this.snapshot_sends.length > 0 ||
      this.pending_install !== null ||
      (this.role === 'leader' && this.peers.some((id) => this.canSendAppend(id)))
    );
  }

  /** The next batch of work, or null. Only one Ready may be outstanding: call advance() first. */
  ready(): Ready | null {
    assert(
      this.ready_outstanding === null,
      'ready() called before advance() of the previous Ready',
    );
    if (this.role === 'leader') {
      if (this.read_round_needed) this.sendReadRound();
      for (const id of this.peers) this.sendAppends(id);
    }
    if (!this.hasReady()) return null;
    const limits = this.config.limits;
    // A snapshot install goes alone: the log after it is rewritten from what was handed out
    // before, and nothing is applied until the state machine holds the snapshot.
    const install = this.pending_install;
    this.pending_install = null;
    const entries =
      install === null
        ? this.log.takeUnstable(limits.ready_entries_max, limits.ready_entries_bytes_max)
        : null;
    const previous = this.persisted_hard_state;
    const hard_state = this.hardStateChanged() ? this.currentHardState() : null;
    const term_or_vote_changed =
      hard_state !== null &&
      (hard_state.term !== previous.term || hard_state.vote !== previous.vote);
    const must_sync = entries !== null || term_or_vote_changed || install !== null;
    // A leader's term and vote are durable since its campaign: what it sends now promises nothing
    // about its own unsaved entries, which it counts only after advance() (thesis §10.2.1).
    const send_now = !must_sync || (this.role === 'leader' && !term_or_vote_changed);
    const after_persist = this.afterPersist(send_now, must_sync, install !== null);
    const soft = this.softStateChanged() ? this.softState() : null;
    if (soft !== null) this.last_soft_state = soft;
    const ready: Ready = {
      hard_state,
      entries,
      must_sync,
      messages: send_now ? this.messages : [],
      messages_after_persist: after_persist,
      committed:
        install === null ? this.log.takeCommitted(limits.committed_entries_per_ready_max) : [],
      reads: this.ready_reads,
      failed_reads: this.failed_reads,
      soft_state: soft,
      snapshot_sends: this.snapshot_sends,
      snapshot: install,
    };
    if (hard_state !== null) this.persisted_hard_state = hard_state;
    this.messages = [];
    this.ready_reads = [];
    this.failed_reads = [];
    this.snapshot_sends = [];
    this.ready_outstanding = ready;
    return ready;
  }

  /**
   * The messages to send once this Ready is durable. A response may acknowledge entries past the
   * part of the unstable log this Ready hands out: it is held until the Ready that hands out the
   * rest, else a follower would count towards a commit with entries it has not saved. Held
   * responses of an older term, or from before a snapshot install, are dropped (a lost message).
   */
  private afterPersist(send_now: boolean, must_sync: boolean, installing: boolean): Outbound[] {
    if (installing || this.held_term !== this.term) this.held_messages = [];
    this.held_term = this.term;
    if (send_now) {
      if (!must_sync || this.log.hasUnstable()) return [];
      const held = this.held_messages;
      this.held_messages = [];
      return held;
    }
    if (this.log.hasUnstable()) {
      for (const outbound of this.messages) this.held_messages.push(outbound);
      this.messages = [];
      return [];
    }
    const released = this.held_messages.concat(this.messages);
    this.held_messages = [];
    return released;
  }

  /** The Ready's hard state and entries are durable and its messages sent. */
  advance(ready: Ready): void {
    assert(ready === this.ready_outstanding, 'advance() takes the outstanding Ready');
    this.ready_outstanding = null;
    if (ready.entries !== null) {
      this.log.markStable(ready.entries.first_index + ready.entries.entries.length - 1);
      if (this.role === 'leader') this.maybeCommit();
    }
  }

  status(): RaftStatus {
    const peers: PeerProgressStatus[] = [];
    for (const id of this.peers) {
      const pr = this.progress.get(id);
      peers.push({
        id,
        voter: this.isVoterNow(id),
        match: pr?.match ?? 0,
        next: pr?.next ?? 0,
        state: pr?.state ?? 'probe',
        pending_snapshot: pr?.pending_snapshot ?? 0,
        inflight_messages: pr?.inflight_messages ?? 0,
        recent_active: pr?.recent_active ?? false,
      });
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader_id: this.leader_id,
      commit_index: this.log.committed,
      last_log_index: this.log.last_index,
      last_log_term: this.log.last_term,
      snapshot_index: this.log.snapshot_index,
      snapshot_term: this.log.snapshot_term,
      applied_index: this.log.applied,
      stable_index: this.log.stable,
      uncommitted_bytes: this.log.uncommitted_bytes,
      pending_reads: this.pending_reads.length + this.reads_awaiting_commit.length,
      transfer_target: this.transfer_target,
      peers,
    };
  }

  get current_role(): Role {
    return this.role;
  }

  get current_term(): number {
    return this.term;
  }

  get commit_index(): number {
    return this.log.committed;
  }

  get last_log_index(): number {
    return this.log.last_index;
  }

  /** Test and simulator access to the retained log, from first_log_index (read-only use). */
  logEntries(): LogEntry[] {
    return this.log.slice(this.log.first_index, this.log.last_index);
  }

  /** First index still in the log; everything before it is covered by the local snapshot. */
  get first_log_index(): number {
    return this.log.first_index;
  }

  get applied_index(): number {
    return this.log.applied;
  }

  /** Term of the entry at `index` (-1 if compacted or beyond the log): to label a snapshot. */
  termAt(index: number): number {
    return this.log.term(index);
  }

  /**
   * Drops the log up to `index`, which a durable snapshot now covers (etcd's Storage.Compact).
   * Only applied and stable entries can be compacted. A follower whose next entry was dropped
   * cannot be caught up by AppendEntries any more: it waits for a snapshot transfer (see
   * needsSnapshot), so the driver keeps what followers still need when it can.
   */
  compact(index: number): void {
    assert(index <= this.log.applied, `compact ${index} beyond applied ${this.log.applied}`);
    const compact_to = Math.min(index, this.log.stable);
    this.log.compact(compact_to);
    this.membership.compact(compact_to);
    // Only a durable snapshot lets the log go: it is at least this far.
    this.snapshotDurable({ index: this.log.snapshot_index, term: this.log.snapshot_term });
  }

  /** The voters of the configuration in effect (the latest in the log). */
  get voters(): NodeId[] {
    return votersOf(this.membership.current);
  }

  /** The configuration in effect: the latest in the log, committed or not. */
  get current_membership(): Membership {
    return this.membership.current;
  }

  /** Index of the entry that set the configuration in effect (0: the bootstrap one). */
  get membership_index(): number {
    return this.membership.current_index;
  }

  /** The configuration once the log up to `index` is applied (for a snapshot at `index`). */
  membershipAt(index: number): Membership {
    return this.membership.at(index);
  }

  /**
   * The log after `index` as the saves handed out so far leave it on disk: what a WAL rewrite
   * that starts after `index` must hold (a truncation not yet handed out is dropped with it).
   */
  persistedEntriesAfter(index: number): LogEntry[] {
    assert(index >= this.log.snapshot_index, `entries after ${index} are compacted`);
    return this.log.slice(index + 1, this.log.handed_out);
  }

  /**
   * The lowest index any follower still needs (its next entry), or 0 when not leader (a node
   * that is not leader does not know): compacting below it keeps every follower reachable by
   * AppendEntries.
   */
  followersNeedFrom(): number {
    if (this.role !== 'leader') return 0;
    let lowest = this.log.last_index + 1;
    for (const id of this.peers) lowest = Math.min(lowest, this.progressOf(id).match + 1);
    return lowest;
  }

  /**
   * With InstallSnapshot, the highest index the log may be compacted to: every snapshot transfer
   * in flight must find the log after the snapshot it started with (else the follower would need
   * another snapshot after installing this one, forever: hashicorp/raft #212). No bound when not
   * leader or no transfer runs.
   */
  compactionLimit(): number {
    let limit = this.log.last_index;
    if (this.role !== 'leader') return limit;
    for (const id of this.peers) {
      const pending = this.progressOf(id).pending_snapshot;
      if (pending > 0) limit = Math.min(limit, pending);
    }
    return limit;
  }

  /** The driver made a snapshot at `point` durable (taken, installed, or restarted from). */
  snapshotDurable(point: SnapshotPoint): void {
    if (point.index > this.durable_snapshot.index) this.durable_snapshot = { ...point };
  }

  /**
   * Follower: whether a snapshot at `index` is worth receiving (it is past our commit index);
   * chunks of one that is not are answered Installed at once (see handleSnapshotChunk).
   */
  wantsSnapshot(index: number): boolean {
    return index > this.log.committed || this.config.faults?.install_stale_snapshot === true;
  }

  /**
   * Follower: a snapshot received from `from`, verified and durable under its final name, is
   * offered for install. Accepted only from the leader of our current term (as AppendEntries), and
   * only past our commit index (else we answer Installed at our commit so the leader moves on).
   * Returns whether a Ready will carry the install.
   */
  offerSnapshot(
    from: NodeId,
    term: number,
    point: SnapshotPoint,
    membership?: Membership,
  ): boolean {
    if (term !== this.term || this.role !== 'follower' || this.leader_id !== from) return false;
    if (this.pending_install !== null || this.ready_outstanding?.snapshot) return false;
    this.election_elapsed = 0;
    if (!this.wantsSnapshot(point.index)) {
      this.replySnapshotInstalled(from, point.index, this.log.committed);
      return false;
    }
    const kept_suffix = this.log.term(point.index) === point.term;
    this.membership.restoreSnapshot(point.index, membership, kept_suffix);
    this.log.restoreSnapshot(point);
    this.refreshPeers();
    this.durable_snapshot = { ...point };
    this.pending_install = { ...point };
    this.replySnapshotInstalled(from, point.index, point.index);
    return true;
  }

  /** Leader: the server could not stream a snapshot to `id` (no file): probe again. */
  reportSnapshotFailed(id: NodeId): void {
    if (this.role !== 'leader' || !this.peers.includes(id)) return;
    const pr = this.progressOf(id);
    if (pr.state === 'snapshot') pr.onSnapshotEnded(0);
  }

  // ---------------------------------------------------------------- timers

  private tickElection(): void {
    this.election_elapsed++;
    if (this.election_elapsed >= this.randomized_election_ticks) {
      this.election_elapsed = 0;
      if (this.isVoterNow(this.id))
        this.campaign(this.config.prevote ? 'pre_candidate' : 'candidate');
      else this.forgetLeader(); // learners and non-members never campaign
    }
  }

  private tickLeader(): void {
    this.heartbeat_elapsed++;
    this.election_elapsed++;
    if (this.transfer_target !== NO_NODE && ++this.transfer_elapsed >= this.config.election_ticks) {
      this.transfer_target = NO_NODE; // the target did not take over in time: resume serving
      this.maybeHandOver();
      if (this.role !== 'leader') return; // handed over (removed from the configuration)
    }
    if (this.election_elapsed >= this.config.election_ticks) {
      this.election_elapsed = 0;
      if (this.config.check_quorum && !this.quorumActive()) {
        this.becomeFollower(this.term, NO_NODE);
        return;
      }
    }
    if (this.heartbeat_elapsed >= this.config.heartbeat_ticks) {
      this.heartbeat_elapsed = 0;
      this.broadcastHeartbeat();
    }
    this.maybePromoteLearner();
  }

  private quorumActive(): boolean {
    const active = hasQuorum(
      this.membership.current,
      (id) => id === this.id || this.progress.get(id)?.recent_active === true,
    );
    for (const pr of this.progress.values()) pr.recent_active = false;
    return active;
  }

  private resetElectionTimer(): void {
    this.election_elapsed = 0;
    this.randomized_election_ticks =
      this.config.election_ticks + this.config.random.int(this.config.election_ticks);
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower(term: number, leader_id: NodeId): void {
    if (term > this.term) {
      this.term = term;
      this.vote = NO_NODE;
    }
    this.leaveLeadership();
    this.role = 'follower';
    this.leader_id = leader_id;
    this.resetElectionTimer();
  }

  private leaveLeadership(): void {
    if (this.role !== 'leader') return;
    for (const read of this.pending_reads) this.failed_reads.push(read.request_id);
    this.failed_reads.push(...this.reads_awaiting_commit);
    this.pending_reads = [];
    this.reads_awaiting_commit = [];
    this.read_round_needed = false;
    this.transfer_target = NO_NODE;
    this.progress.clear();
  }

  /**
   * `transfer`: the leader asked us to take over (TimeoutNow), so our vote requests say so and are
   * answered even by nodes that still hear from that leader.
   */
  private campaign(kind: 'pre_candidate' | 'candidate', transfer = false): void {
    if (this.term >= LIMITS.raft_term_max) {
      // The next term would be refused by every peer (and could overflow the wire's int32): stay a
      // follower. Only a term recovered from a disk poisoned before terms were checked gets here.
      this.resetElectionTimer();
      return;
    }
    this.leaveLeadership();
    this.role = kind;
    this.leader_id = NO_NODE;
    this.votes = new Map([[this.id, true]]);
    this.resetElectionTimer();
    let campaign_term = this.term + 1;
    if (kind === 'candidate') {
      this.term = campaign_term;
      this.vote = this.id;
      campaign_term = this.term;
    }
    if (this.countVotes() === 'won') {
      this.onElectionWon();
      return;
    }
    const type =
      kind === 'pre_candidate'
        ? MessageType.PreVoteRequest
        : transfer
          ? MessageType.TransferVoteRequest
          : MessageType.RequestVoteRequest;
    for (const id of this.voterPeers()) {
      this.send(id, {
        type,
        term: campaign_term,
        candidate_id: this.id,
        last_log_index: this.log.last_index,
        last_log_term: this.log.last_term,
      });
    }
  }

  private onElectionWon(): void {
    if (this.role === 'pre_candidate') this.campaign('candidate');
    else this.becomeLeader();
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', 'only a candidate becomes leader');
    this.role = 'leader';
    this.leader_id = this.id;
    this.election_elapsed = 0;
    this.heartbeat_elapsed = 0;
    this.progress.clear();
    this.refreshPeers();
    // A no-op of our own term lets us commit, and so serve reads, without waiting for a client
    // write (§8).
    this.log.append({ term: this.term, data: new Uint8Array(0) });
    if (this.reads_awaiting_commit.length > 0) this.flushReadsAwaitingCommit();
  }

  private countVotes(): 'won' | 'lost' | 'pending' {
    const membership = this.membership.current;
    if (hasQuorum(membership, (id) => this.votes.get(id) === true)) return 'won';
    if (hasQuorum(membership, (id) => this.votes.get(id) === false)) return 'lost';
    return 'pending';
  }

  // ---------------------------------------------------------------- terms

  /** Returns false when the message must be dropped without further handling. */
  private acceptHigherTerm(from: NodeId, message: RaftMessage): boolean {
    if (message.type === MessageType.PreVoteRequest) return true; // pre-votes never move our term
    // A granted pre-vote carries the term we would campaign in, not a newer term of the cluster.
    if (message.type === MessageType.PreVoteResponse && message.vote_granted) return true;
    // Disruption rule (thesis §4.2.3): while a live leader is heard, a vote request at a higher
    // term comes from a node that missed it (or from a stranger) and must not depose it. Only a
    // campaign the leader itself started by TimeoutNow says so on the wire and is exempt.
    if (message.type === MessageType.RequestVoteRequest && this.inLease()) return false;
    // The leader sends TimeoutNow in its own term, which is ours once we follow it: one at a higher
    // term is not from our current leader and is ignored rather than obeyed.
    if (message.type === MessageType.TimeoutNow) return false;
    const leader =
      message.type === MessageType.AppendEntriesRequest ||
      message.type === MessageType.InstallSnapshotRequest
        ? from
        : NO_NODE;
    this.becomeFollower(message.term, leader);
    return true;
  }

  private handleStaleTerm(from: NodeId, message: RaftMessage): void {
    if (message.type === MessageType.AppendEntriesRequest) {
      // Tell a deposed leader about the newer term; with PreVote and CheckQuorum
      // nothing else would ever reach it (thesis §9.6).
      this.send(from, {
        type: MessageType.AppendEntriesResponse,
        term: this.term,
        follower_id: this.id,
        log_index: this.log.last_index,
        success: false,
        follower_commit: this.log.committed,
        ack: message.seq,
      });
    } else if (message.type === MessageType.InstallSnapshotRequest) {
      this.send(from, {
        type: MessageType.InstallSnapshotResponse,
        term: this.term,
        follower_id: this.id,
        snapshot_index: message.snapshot_index,
        status: InstallSnapshotStatus.Rejected,
        next_offset: 0,
        match_index: 0,
      });
    } else if (
      message.type === MessageType.PreVoteRequest ||
      message.type === MessageType.RequestVoteRequest ||
      message.type === MessageType.TransferVoteRequest
    ) {
      this.send(from, {
        type:
          message.type === MessageType.PreVoteRequest
            ? MessageType.PreVoteResponse
            : MessageType.RequestVoteResponse,
        term: this.term,
        vote_granted: false,
      });
    }
  }

  // ---------------------------------------------------------------- elections

  private inLease(): boolean {
    return (
      this.config.check_quorum &&
      this.leader_id !== NO_NODE &&
      this.election_elapsed < this.config.election_ticks
    );
  }

  private handleVoteRequest(from: NodeId, message: RequestVoteRequest): void {
    const pre = message.type === MessageType.PreVoteRequest;
    const log_ok =
      this.config.faults?.vote_without_log_check === true ||
      this.log.isUpToDate(message.last_log_index, message.last_log_term);
    let grant: boolean;
    if (pre) {
      // A pre-vote is granted only to a candidate that could win and only if we
      // have not heard from a live leader lately: this stops a rejoining node
      // from deposing a healthy leader (thesis §9.6).
      grant = message.term > this.term && log_ok && !this.inLease();
    } else {
      const can_vote = this.vote === from || (this.vote === NO_NODE && this.leader_id === NO_NODE);
      grant = can_vote && log_ok;
      if (grant) {
        this.vote = from;
        this.election_elapsed = 0;
      }
    }
    this.send(from, {
      type: pre ? MessageType.PreVoteResponse : MessageType.RequestVoteResponse,
      term: grant && pre ? message.term : this.term,
      vote_granted: grant,
    });
  }

  private handleVoteResponse(from: NodeId, message: RequestVoteResponse): void {
    const pre = message.type === MessageType.PreVoteResponse;
    if ((pre && this.role !== 'pre_candidate') || (!pre && this.role !== 'candidate')) return;
    // A grant for another term than the one we would campaign in is from an older pre-campaign.
    if (pre && message.vote_granted && message.term !== this.term + 1) return;
    this.votes.set(from, message.vote_granted);
    const outcome = this.countVotes();
    if (outcome === 'won') this.onElectionWon();
    else if (outcome === 'lost') this.becomeFollower(this.term, NO_NODE);
  }

  /** Obeyed only from the leader of our current term (step has already matched the term). */
  private handleTimeoutNow(from: NodeId, message: TimeoutNow): void {
    if (this.role !== 'follower' || this.leader_id !== from || message.term !== this.term) return;
    if (message.leader_id !== from || !this.isVoterNow(this.id)) return;
    this.campaign('candidate', true); // skip the pre-vote: the leader asked us to take over
  }

  // ---------------------------------------------------------------- follower replication

  private handleAppendEntries(from: NodeId, message: AppendEntriesRequest): void {
    if (this.role !== 'follower') this.becomeFollower(this.term, from);
    this.leader_id = from;
    this.election_elapsed = 0;
    const respond = (success: boolean, log_index: number): void => {
      this.send(from, {
        type: MessageType.AppendEntriesResponse,
        term: this.term,
        follower_id: this.id,
        log_index,
        success,
        follower_commit: this.log.committed,
        ack: message.seq,
      });
    };
    const prev = message.prev_log_index;
    if (prev < this.log.committed) {
      // Everything up to our commit index matches any leader's log; the rest of this message is
      // stale.
      respond(true, this.log.committed);
      return;
    }
    if (prev > this.log.last_index || this.log.term(prev) !== message.prev_log_term) {
      respond(false, this.rejectHint(prev, message.prev_log_term));
      return;
    }
    let index = prev;
    for (const entry of message.entries) {
      index++;
      const existing = this.log.term(index);
      if (existing === entry.term) continue;
      if (existing !== -1) this.truncateLog(index);
      this.appendEntry(entry);
    }
    const last_new = prev + message.entries.length;
    const commit = Math.min(message.leader_commit, last_new);
    if (commit > this.log.committed) this.log.commitTo(commit);
    respond(true, last_new);
  }

  /**
   * A chunk of a snapshot from the leader of our term: it proves the leader is alive as an
   * AppendEntries does (so a long transfer never starts a campaign). The server writes the bytes;
   * a snapshot at or below our commit index is answered Installed at once instead.
   */
  private handleSnapshotChunk(from: NodeId, message: InstallSnapshotRequest): void {
    if (this.role !== 'follower') this.becomeFollower(this.term, from);
    this.leader_id = from;
    this.election_elapsed = 0;
    if (!this.wantsSnapshot(message.snapshot_index))
      this.replySnapshotInstalled(from, message.snapshot_index, this.log.committed);
  }

  private replySnapshotInstalled(to: NodeId, snapshot_index: number, match_index: number): void {
    this.send(to, {
      type: MessageType.InstallSnapshotResponse,
      term: this.term,
      follower_id: this.id,
      snapshot_index,
      status: InstallSnapshotStatus.Installed,
      next_offset: 0,
      match_index,
    });
  }

  /**
   * Where the leader should probe next after a rejection at prev_index. We
   * skip, in one round trip, every entry of ours that cannot match: all
   * entries beyond prev_index, entries whose term exceeds the leader's term
   * at prev_index, and the whole run of the conflicting term (the thesis's
   * fast backup, §5.3), never below our commit index (that prefix matches).
   */
  private rejectHint(prev_index: number, prev_term: number): number {
    const floor = this.log.committed;
    if (prev_index > this.log.last_index) return this.log.last_index;
    let hint = prev_index;
    const conflict_term = this.log.term(prev_index);
    if (conflict_term > prev_term) {
      // The leader has no entry of a term above prev_term at or below prev_index.
      while (hint > floor && this.log.term(hint) > prev_term) hint--;
    } else {
      while (hint > floor && this.log.term(hint) === conflict_term) hint--;
    }
    return Math.max(hint, floor);
  }

  // ---------------------------------------------------------------- leader replication

  private progressOf(id: NodeId): Progress {
    const pr = this.progress.get(id);
    assert(pr !== undefined, `progress for peer ${id}`);
    return pr;
  }

  private canSendAppend(id: NodeId): boolean {
    const pr = this.progressOf(id);
    if (this.needsSnapshot(id)) return pr.state !== 'snapshot'; // a transfer to start
    return pr.canSend(this.log.last_index);
  }

  /**
   * The follower's next entry is compacted away: AppendEntries cannot reach it (the leader sends
   * only heartbeats until a snapshot transfer brings it past our first index).
   */
  private needsSnapshot(id: NodeId): boolean {
    return this.progressOf(id).next <= this.log.snapshot_index;
  }

  /**
   * Fill the follower's window: one probe (sending it closes a probe's window), or as many
   * pipelined batches as flow control allows.
   */
  private sendAppends(id: NodeId): void {
    const pr = this.progressOf(id);
    if (this.needsSnapshot(id)) {
      if (pr.state !== 'snapshot') this.startSnapshot(id, pr);
      return;
    }
    while (!this.needsSnapshot(id) && pr.canSend(this.log.last_index)) this.sendAppend(id, pr);
  }

  private sendAppend(id: NodeId, pr: Progress): void {
    const prev_index = pr.next - 1;
    const entries = this.log.sliceLimited(
      pr.next,
      this.config.limits.message_entries_max,
      this.config.limits.message_entries_bytes_max,
    );
    this.seq++;
    this.send(id, {
      type: MessageType.AppendEntriesRequest,
      term: this.term,
      leader_id: this.id,
      prev_log_index: prev_index,
      prev_log_term: this.log.term(prev_index),
      leader_commit: this.log.committed,
      seq: this.seq | 0,
      entries,
    });
    pr.onSent(this.seq, entries.length);
  }

  /**
   * The follower needs entries we compacted: the server streams it our newest durable snapshot;
   * no AppendEntries (only heartbeats) until that ends.
   */
  private startSnapshot(id: NodeId, pr: Progress): void {
    assert(
      this.durable_snapshot.index >= this.log.snapshot_index,
      `durable snapshot ${this.durable_snapshot.index} covers the compacted log`,
    );
    pr.becomeSnapshot(this.durable_snapshot.index);
    this.snapshot_sends.push({ to: id, term: this.term });
  }

  /**
   * An empty AppendEntries at the follower's known match point: asserts leadership, carries commit,
   * never rejected for log reasons.
   */
  private sendHeartbeat(id: NodeId, pr: Progress): void {
    this.seq++;
    // Below our snapshot the term is unknown: 0 matches no real entry, so the follower treats it
    // as a probe (it answers success if the index is within its commit, otherwise a rejection).
    const prev_log_term = Math.max(0, this.log.term(pr.match));
    this.send(id, {
      type: MessageType.AppendEntriesRequest,
      term: this.term,
      leader_id: this.id,
      prev_log_index: pr.match,
      prev_log_term,
      leader_commit: this.log.committed,
      seq: this.seq | 0,
      entries: [],
    });
  }

  private broadcastHeartbeat(): void {
    for (const id of this.peers) {
      const pr = this.progressOf(id);
      if (pr.state === 'probe' && !this.needsSnapshot(id)) {
        pr.allowProbeRetry();
        this.sendAppend(id, pr);
      } else {
        this.sendHeartbeat(id, pr);
      }
    }
  }

  private handleAppendResponse(from: NodeId, message: AppendEntriesResponse): void {
    const pr = this.progress.get(from);
    if (this.role !== 'leader' || pr === undefined) return; // not leader, or not a member now
    pr.recent_active = true;
    const ack = this.fullSeq(message.ack);
    // Only a success proves the answer is to a request of this leadership (a rejection may come
    // from handleStaleTerm), so only a success counts as an ack for ReadIndex.
    if (message.success) {
      pr.onAccepted(ack, this.indexInLog(message.log_index));
      // Caught up some other way (an earlier transfer, entries we still hold): stop the transfer.
      if (pr.state === 'snapshot' && !this.needsSnapshot(from)) pr.onSnapshotEnded(0);
      this.maybeCommit();
      if (this.transfer_target === from) this.maybeSendTimeoutNow(from);
      this.maybePromoteLearner();
    } else if (message.log_index < this.log.snapshot_index) {
      // Its log ends inside what we compacted: no AppendEntries can help (heartbeats below our
      // snapshot carry no real term, so they are rejected and would never free the window).
      pr.onBehindLog(this.indexInLog(message.follower_commit));
    } else {
      pr.onRejected(ack, message.log_index, this.indexInLog(message.follower_commit));
    }
    this.confirmReads();
  }

  /**
   * Every answer to a chunk counts as contact (CheckQuorum must not depose a leader busy streaming
   * a snapshot); Installed or Rejected ends the transfer.
   */
  private handleSnapshotResponse(from: NodeId, message: InstallSnapshotResponse): void {
    const pr = this.progress.get(from);
    if (this.role !== 'leader' || pr === undefined) return; // not leader, or not a member now
    pr.recent_active = true;
    if (pr.state !== 'snapshot') return;
    if (message.status === InstallSnapshotStatus.Installed) {
      pr.onSnapshotEnded(this.indexInLog(message.match_index));
      this.maybeCommit();
      if (this.transfer_target === from) this.maybeSendTimeoutNow(from);
    } else if (message.status === InstallSnapshotStatus.Rejected) {
      pr.onSnapshotEnded(0);
    }
  }

  /**
   * The full (53-bit) seq whose low 32 bits are `wire_ack`, at most this.seq: acks never look newer
   * than what we sent.
   */
  private fullSeq(wire_ack: number): number {
    return this.seq - (((this.seq | 0) - wire_ack) >>> 0);
  }

  /** A follower's claim that it holds our log up to `index`; 0 (no claim) if beyond our log. */
  private indexInLog(index: number): number {
    return index <= this.log.last_index ? index : 0;
  }

  private maybeCommit(): void {
    const own_match =
      this.config.faults?.ack_before_persist === true ? this.log.last_index : this.log.stable;
    // A leader outside the configuration manages it without counting itself (thesis §4.2.2).
    const candidate = quorumMatch(this.membership.current, (id) =>
      id === this.id ? own_match : (this.progress.get(id)?.match ?? 0),
    );
    if (candidate <= this.log.committed) return;
    // Figure 8: only an entry of the current term is committed by counting replicas.
    if (
      this.log.term(candidate) !== this.term &&
      this.config.faults?.commit_old_term_entries !== true
    )
      return;
    const membership_was_committed = this.membership.current_index <= this.log.committed;
    this.log.commitTo(candidate);
    if (this.reads_awaiting_commit.length > 0 && this.log.term(this.log.committed) === this.term) {
      this.flushReadsAwaitingCommit();
    }
    if (!membership_was_committed && this.membership.current_index <= this.log.committed) {
      this.refreshPeers(); // members the committed change removed need no more entries
      this.maybeHandOver();
    }
  }

  private maybeSendTimeoutNow(target: NodeId): void {
    if (this.progressOf(target).match === this.log.last_index) {
      this.send(target, { type: MessageType.TimeoutNow, term: this.term, leader_id: this.id });
      // Removed from the configuration: our work is done once the successor is told to take over.
      if (!this.isVoterNow(this.id)) this.becomeFollower(this.term, NO_NODE);
    }
  }

  // ---------------------------------------------------------------- reads

  private flushReadsAwaitingCommit(): void {
    if (this.log.term(this.log.committed) !== this.term) return;
    const waiting = this.reads_awaiting_commit;
    this.reads_awaiting_commit = [];
    for (const request_id of waiting) this.registerRead(request_id);
  }

  private registerRead(request_id: number): void {
    if (this.soleVoter() || this.config.faults?.read_without_heartbeat === true) {
      this.ready_reads.push({ request_id, index: this.log.committed });
      return;
    }
    this.pending_reads.push({ request_id, index: this.log.committed, seq: null });
    this.read_round_needed = true;
  }

  /** One heartbeat round confirms every read that arrived before it (reads batch per Ready). */
  private sendReadRound(): void {
    this.read_round_needed = false;
    // Every heartbeat of this round carries a seq at or after this one.
    const round_seq = this.seq + 1;
    for (const id of this.peers) this.sendHeartbeat(id, this.progressOf(id));
    for (const read of this.pending_reads) if (read.seq === null) read.seq = round_seq;
  }

  private confirmReads(): void {
    const first = this.pending_reads[0];
    if (first === undefined || first.seq === null) return;
    // Once per call, not per read: GETs arrive in batches of tens per heartbeat round.
    const confirmed_seq = this.quorumAckedSeq();
    while (this.pending_reads.length > 0) {
      const read = this.pending_reads[0]!;
      if (read.seq === null || read.seq > confirmed_seq) return;
      this.pending_reads.shift();
      this.ready_reads.push({ request_id: read.request_id, index: read.index });
    }
  }

  /**
   * The highest heartbeat seq that a majority of the voters acknowledged (this node counts for
   * every seq): a read whose round seq is at or below it is confirmed (-Infinity with no voters).
   */
  private quorumAckedSeq(): number {
    const acks: number[] = [];
    for (const member of this.membership.current.members) {
      if (!member.voter) continue;
      const max_ack = this.progress.get(member.id)?.max_ack ?? null;
      acks.push(member.id === this.id ? Infinity : (max_ack ?? -Infinity));
    }
    sortDescending(acks);
    return acks[Math.floor(acks.length / 2)] ?? -Infinity;
  }

  /** This node is the configuration's only voter (checked per read: no arrays built). */
  private soleVoter(): boolean {
    let self_voter = false;
    for (const member of this.membership.current.members) {
      if (!member.voter) continue;
      if (member.id !== this.id) return false;
      self_voter = true;
    }
    return self_voter;
  }

  // ---------------------------------------------------------------- membership (membership.ts)

  /** The snapshot's configuration, else the bootstrap one, then every membership entry after. */
  private restoreMembership(config: RaftConfig, restored: RestoredState): MembershipLog {
    const from_snapshot = restored.membership;
    const base_index =
      from_snapshot === undefined
        ? this.log.snapshot_index
        : (restored.applied_index ?? restored.snapshot?.index ?? 0);
    const membership = new MembershipLog(
      base_index,
      from_snapshot ?? bootstrapMembership(config.voters, config.addresses),
    );
    for (let index = base_index + 1; index <= this.log.last_index; index++)
      membership.onAppend(index, this.log.entry(index).data);
    return membership;
  }

  /** Every append goes through here: a membership entry takes effect as it is appended (§4.1). */
  private appendEntry(entry: LogEntry): number {
    const index = this.log.append(entry);
    if (this.membership.onAppend(index, entry.data)) this.refreshPeers();
    return index;
  }

  /** A truncated membership entry takes its configuration with it. */
  private truncateLog(from: number): void {
    this.log.truncateFrom(from);
    if (this.membership.onTruncate(from)) this.refreshPeers();
  }

  private isVoterNow(id: NodeId): boolean {
    return isVoter(this.membership.current, id);
  }

  /** The other voters of the configuration in effect: whom we ask for votes. */
  private voterPeers(): NodeId[] {
    return votersOf(this.membership.current).filter((id) => id !== this.id);
  }

  /**
   * The members we replicate to: those of the configuration in effect and, on a leader, those of
   * the committed one too, so that a member being removed learns of its removal. A leader keeps
   * a Progress for exactly these.
   */
  private refreshPeers(): void {
    const ids = new Set(this.membership.current.members.map((m) => m.id));
    if (this.role === 'leader')
      for (const m of this.membership.at(this.log.committed).members) ids.add(m.id);
    ids.delete(this.id);
    this.peers = [...ids].sort((a, b) => a - b);
    if (this.role !== 'leader') return;
    for (const id of this.peers) {
      if (!this.progress.has(id))
        this.progress.set(
          id,
          new Progress(this.log.last_index + 1, this.config.limits.inflight_messages_max),
        );
    }
    for (const id of [...this.progress.keys()]) if (!ids.has(id)) this.progress.delete(id);
    if (this.transfer_target !== NO_NODE && !this.isVoterNow(this.transfer_target))
      this.transfer_target = NO_NODE;
  }

  /**
   * A leader whose removal has committed hands leadership to the most up-to-date voter
   * (TimeoutNow once it is caught up) and steps down; meanwhile it takes no proposals.
   */
  private maybeHandOver(): void {
    if (this.role !== 'leader' || this.isVoterNow(this.id)) return;
    if (this.membership.current_index > this.log.committed || this.transfer_target !== NO_NODE)
      return;
    let best = NO_NODE;
    let best_match = -1;
    for (const id of this.voterPeers()) {
      const match = this.progress.get(id)?.match ?? 0;
      if (match > best_match) {
        best = id;
        best_match = match;
      }
    }
    if (best !== NO_NODE) this.transferLeadership(best);
  }

  /**
   * Issue 15's auto-promotion: a learner whose match index is within
   * learner_promotion_lag_entries_max of our last index becomes a voter by a change of its own,
   * proposed only when a change is allowed (the previous one committed, an entry of this term
   * committed: the same rules as proposeMembershipChange) and by a leader that stays a voter.
   * One learner at a time, lowest id first.
   */
  private maybePromoteLearner(): void {
    if (!this.config.auto_promote_learners || this.role !== 'leader') return;
    if (this.transfer_target !== NO_NODE || !this.isVoterNow(this.id)) return;
    if (this.log.term(this.log.committed) !== this.term) return;
    if (this.membership.current_index > this.log.committed) return;
    const lag_max = this.config.limits.learner_promotion_lag_entries_max;
    for (const id of learnersOf(this.membership.current)) {
      const match = this.progress.get(id)?.match ?? 0;
      if (match === 0 || this.log.last_index - match > lag_max) continue;
      const next = applyChange(this.membership.current, { kind: 'promote', id });
      if (!next.ok) continue;
      this.appendEntry({ term: this.term, data: encodeMembership(next.membership) });
      return;
    }
  }

  /** An election timeout passed without a leader: a node that cannot campaign just forgets it. */
  private forgetLeader(): void {
    this.leader_id = NO_NODE;
    this.resetElectionTimer();
  }

  // ---------------------------------------------------------------- plumbing

  private send(to: NodeId, message: RaftMessage): void {
    this.messages.push({ to, message });
  }

  /**
   * The commit index saved never passes the entries saved with or before it: a bounded Ready may
   * hand out only part of a log whose commit index is already further on.
   */
  private currentHardState(): HardState {
    const commit = Math.min(this.log.committed, this.log.handed_out);
    return { term: this.term, vote: this.vote, commit };
  }

  private hardStateChanged(): boolean {
    const hs = this.persisted_hard_state;
    const commit = Math.min(this.log.committed, this.log.handed_out);
    return hs.term !== this.term || hs.vote !== this.vote || hs.commit !== commit;
  }

  private softState(): SoftState {
    return { role: this.role, term: this.term, leader_id: this.leader_id };
  }

  private softStateChanged(): boolean {
    const s = this.last_soft_state;
    return s.role !== this.role || s.term !== this.term || s.leader_id !== this.leader_id;
  }
}
