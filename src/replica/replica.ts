import type { RaftCore } from '../raft/core';
import type { MembershipChange } from '../raft/membership';
import type { MembershipProposeResult, NodeId, Ready } from '../raft/types';
import { encodeCommand, type KvCommand } from '../kv/command_codec';
import { KvStateMachine, type ApplyResult } from '../kv/state_machine';
import { assert } from '../util/assert';

export type WriteError =
  | 'not_leader'
  | 'uncommitted_full'
  | 'transferring'
  | 'too_large'
  | 'dropped'
  /** A snapshot from the leader replaced the log up to the write's index: it may have committed. */
  | 'unknown';
export type WriteOutcome =
  | { ok: true; result: ApplyResult }
  | { ok: false; error: WriteError; leader_id: NodeId };

export type ReadError = 'not_leader' | 'too_many_reads' | 'leadership_lost';
export type ReadOutcome =
  | { ok: true; value: Buffer[] | null }
  | { ok: false; error: ReadError; leader_id: NodeId };

interface PendingWrite {
  term: number;
  done: (outcome: WriteOutcome) => void;
}

export type QueryOutcome<T> =
  | { ok: true; value: T }
  | { ok: false; error: ReadError; leader_id: NodeId };

/**
 * A read waiting for its ReadIndex round: fields, not a closure per read (a GET's garbage). Either
 * `key` (a plain GET, served by lookup) or `run` (any other query) is set.
 */
interface PendingRead {
  /** Set once the core has confirmed leadership for this read. */
  index: number | null;
  /** The key of a plain read, as the state machine's map keys it (latin1). */
  key: string | null;
  run: ((state: KvStateMachine, now_ms: number) => unknown) | null;
  /** Settles the caller; its outcome type is the one `run` (or the lookup) returns. */
  done: (outcome: QueryOutcome<unknown>) => void;
}

/**
 * The replicated KV service on one node, still free of I/O: turns client
 * commands into proposals and ReadIndex requests, applies committed entries
 * to the state machine and settles each client callback exactly once. The
 * server and the simulator both drive it, so the simulator tests the very
 * code that answers real clients.
 *
 * Outcomes: `dropped` means the proposal's log slot was taken by another
 * entry, so it can never commit (a definite failure). A write still pending
 * when the caller gives up has an unknown outcome; that is the caller's call.
 */
export class Replica {
  readonly core: RaftCore;
  /** Replaced only by installState (a snapshot from the leader). */
  state: KvStateMachine;
  private readonly writes = new Map<number, PendingWrite>();
  private readonly reads = new Map<number, PendingRead>();
  /** Confirmed reads waiting for the state machine to reach their index, in confirmation order. */
  private confirmed_reads: number[] = [];
  private next_read_id = 1;
  /** Told about each committed entry the state machine skipped as not a command (to log it). */
  on_invalid_entry: (index: number, reason: string) => void = () => undefined;

  /**
   * `clock_ms`: the leader's wall clock, for reads of keys with a deadline and for stamping Redis
   * writes (the simulator leaves it at 0: the state machine's own clock is used then).
   */
  constructor(
    core: RaftCore,
    state: KvStateMachine = new KvStateMachine(),
    readonly clock_ms: () => number = () => 0,
  ) {
    this.core = core;
    this.state = state;
  }

  /** The time a stamped entry proposed now carries: never before any stamp applied here. */
  stampNow(): number {
    return Math.max(this.clock_ms(), this.state.clock_ms);
  }

  /**
   * Proposes a write; returns its log index (a handle for cancel) or null when refused (done
   * already called).
   */
  write(command: KvCommand, done: (outcome: WriteOutcome) => void): number | null {
    const proposed = this.core.propose(encodeCommand(command));
    if (!proposed.ok) {
      done({ ok: false, error: proposed.reason, leader_id: proposed.leader_id });
      return null;
    }
    const displaced = this.writes.get(proposed.index);
    if (displaced !== undefined) {
      // Our earlier proposal at this index (an older term) was truncated away: it can never commit.
      assert(
        displaced.term < proposed.term,
        `one pending write per log index and term (${proposed.index})`,
      );
      displaced.done({ ok: false, error: 'dropped', leader_id: this.core.id });
    }
    this.writes.set(proposed.index, { term: proposed.term, done });
    return proposed.index;
  }

  /**
   * Proposes a membership change (RAFT.NODE); `done` runs once it is applied like a write
   * (`dropped` if another entry took its slot). Returns the core's refusal, if any, without
   * calling `done`: those reasons say what the admin can do (retry, or fix the request).
   */
  changeMembership(
    change: MembershipChange,
    done: (outcome: WriteOutcome) => void,
  ): Extract<MembershipProposeResult, { ok: false }> | null {
    const proposed = this.core.proposeMembershipChange(change);
    if (!proposed.ok) return proposed;
    const displaced = this.writes.get(proposed.index);
    if (displaced !== undefined)
      displaced.done({ ok: false, error: 'dropped', leader_id: this.core.id });
    this.writes.set(proposed.index, { term: proposed.term, done });
    return null;
  }

  /**
   * Starts a linearizable read; returns a handle for cancelRead, or null when refused (done already
   * called).
   */
  read(key: Buffer, done: (outcome: ReadOutcome) => void): number | null {
    // The key as a string: a copy that does not alias the request's buffer, and the map's key.
    return this.startRead(key.toString('latin1'), null, done as PendingRead['done']);
  }

  /**
   * A linearizable read of anything: `run` gets the state machine once it has applied the
   * confirmed read index, and the leader's time then. Returns a handle for cancelRead, or null
   * when refused (done already called).
   */
  query<T>(
    run: (state: KvStateMachine, now_ms: number) => T,
    done: (outcome: QueryOutcome<T>) => void,
  ): number | null {
    // `done` only ever gets what `run` returned (serveRead), so widening its type is sound.
    return this.startRead(null, run, done as PendingRead['done']);
  }

  private startRead(
    key: string | null,
    run: PendingRead['run'],
    done: PendingRead['done'],
  ): number | null {
    const id = this.next_read_id++;
    const started = this.core.readIndex(id);
    if (!started.ok) {
      done({ ok: false, error: started.reason, leader_id: started.leader_id });
      return null;
    }
    this.reads.set(id, { index: null, key, run, done });
    return id;
  }

  private serveRead(read: PendingRead): void {
    const now_ms = this.stampNow();
    if (read.key !== null) {
      read.done({ ok: true, value: this.state.lookup(read.key, now_ms) });
      return;
    }
    assert(read.run !== null, 'a pending read has a key or a query');
    read.done({ ok: true, value: read.run(this.state, now_ms) });
  }

  /**
   * A snapshot received from the leader replaces the state machine. Confirmed reads waiting for
   * an index it covers are served from it (it is at least that far).
   */
  installState(state: KvStateMachine): void {
    this.state = state;
    // Our proposals the snapshot covers (from when this node led) are no longer in our log: we
    // cannot tell whether they committed.
    for (const [index, pending] of this.writes) {
      if (index > state.last_applied) continue;
      this.writes.delete(index);
      pending.done({ ok: false, error: 'unknown', leader_id: this.core.status().leader_id });
    }
    this.serveConfirmedReads();
  }

  /** The caller stopped waiting (timeout, connection closed); the operation itself goes on. */
  cancelWrite(index: number): void {
    this.writes.delete(index);
  }

  cancelRead(id: number): void {
    this.reads.delete(id);
  }

  get pending_writes(): number {
    return this.writes.size;
  }

  get pending_reads(): number {
    return this.reads.size;
  }

  /**
   * The state-machine half of a Ready: apply committed entries in order,
   * settle their writers, then serve reads whose index is applied. Call after
   * the Ready's persistence (or at least after taking it) and before advance.
   */
  applyReady(ready: Ready): void {
    for (const { index, entry } of ready.committed) {
      const result = this.state.apply(index, entry.data);
      if (result.kind === 'invalid') this.on_invalid_entry(index, result.reason);
      const pending = this.writes.get(index);
      if (pending === undefined) continue;
      this.writes.delete(index);
      // Same index and term but not a command cannot be what we proposed (a forged substitute).
      if (pending.term === entry.term && result.kind !== 'invalid')
        pending.done({ ok: true, result });
      else pending.done({ ok: false, error: 'dropped', leader_id: this.core.status().leader_id });
    }
    for (const request_id of ready.failed_reads) {
      const read = this.reads.get(request_id);
      if (read === undefined) continue;
      this.reads.delete(request_id);
      read.done({ ok: false, error: 'leadership_lost', leader_id: this.core.status().leader_id });
    }
    for (const { request_id, index } of ready.reads) {
      const read = this.reads.get(request_id);
      if (read === undefined) continue;
      read.index = index;
      this.confirmed_reads.push(request_id);
    }
    this.serveConfirmedReads();
  }

  private serveConfirmedReads(): void {
    let served = 0;
    for (const request_id of this.confirmed_reads) {
      const read = this.reads.get(request_id);
      if (read === undefined || read.index === null) {
        served++;
        continue;
      }
      if (read.index > this.state.last_applied) break;
      served++;
      this.reads.delete(request_id);
      this.serveRead(read);
    }
    if (served > 0) this.confirmed_reads.splice(0, served);
  }
}
