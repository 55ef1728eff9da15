import type { RaftCore } from '../raft/core';
import type { NodeId, Ready } from '../raft/types';
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

interface PendingRead {
  /** Set once the core has confirmed leadership for this read. */
  index: number | null;
  /** Runs the read against the state machine and settles its caller. */
  serve: () => void;
  fail: (outcome: { ok: false; error: ReadError; leader_id: NodeId }) => void;
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
   * Starts a linearizable read; returns a handle for cancelRead, or null when refused (done already
   * called).
   */
  read(key: Buffer, done: (outcome: ReadOutcome) => void): number | null {
    const copy = Buffer.from(key);
    return this.query((state, now_ms) => state.get(copy, now_ms), done);
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
    const id = this.next_read_id++;
    const started = this.core.readIndex(id);
    if (!started.ok) {
      done({ ok: false, error: started.reason, leader_id: started.leader_id });
      return null;
    }
    this.reads.set(id, {
      index: null,
      serve: () => done({ ok: true, value: run(this.state, this.stampNow()) }),
      fail: done,
    });
    return id;
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
      read.fail({ ok: false, error: 'leadership_lost', leader_id: this.core.status().leader_id });
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
      read.serve();
    }
    if (served > 0) this.confirmed_reads.splice(0, served);
  }
}
