/**
 * The one place that carries out the core's Readies: the server (KvNode) and
 * the simulator both run this class, over their own storage, transport and
 * scheduler, so every seed of the simulator checks the server's real ordering.
 *
 * The core says what each Ready needs (`must_sync`, `messages` versus
 * `messages_after_persist`: see `Ready` in src/raft/types.ts); the driver adds
 * only mechanics:
 * - one save in flight at a time; the next Ready is taken once it is durable;
 * - committed entries are applied, and clients answered, as soon as the Ready is
 *   taken (they are already durable on a majority);
 * - a Ready that need not sync (only the commit index moved) is not written by
 *   itself: its hard state rides on the next save;
 * - at most `readies_per_turn_max` Readies back to back before yielding to the
 *   scheduler, so a long log replays without starving timers and sockets;
 * - snapshots (when the storage supports them and a threshold is set): once the
 *   log applied since the last snapshot passes `snapshot_entries` entries or
 *   `snapshot_log_bytes` data bytes, the state machine's snapshot cursor is
 *   prepared in scheduler turns and its chunks written while entries keep being
 *   applied (copy-on-write in the state machine keeps the bytes at the index);
 *   once that snapshot is durable, the log is compacted up to the snapshot
 *   before it (the log keeps one snapshot interval, so a follower that far
 *   behind still catches up by AppendEntries, and a damaged newest snapshot
 *   still leaves the previous one with the log after it).
 * - InstallSnapshot (when the storage can stream and install snapshots): the
 *   byte stream runs in snapshot_transfer.ts; a Ready's `snapshot_sends` start
 *   transfers, and a Ready's `snapshot` is installed (state machine restored from
 *   the received file, log rewritten to start after it) before its save. Every
 *   node then compacts, and a leader keeps only the log after any snapshot it is
 *   sending (not what its slowest follower lacks).
 */
import type { RaftCore } from '../raft/core';
import type {
  EntriesToPersist,
  HardState,
  NodeId,
  Outbound,
  Ready,
  SnapshotMeta,
  SnapshotPoint,
  SoftState,
} from '../raft/types';
import type { LogEntry } from '../raft/protocol';
import type { SnapshotSteps } from '../kv/kv_snapshot';
import type { Replica } from '../replica/replica';
import { MessageType, type RaftMessage } from '../raft/protocol';
import type { KvStateMachine } from '../kv/state_machine';
import { assert } from '../util/assert';
import { LIMITS } from '../util/limits';
import {
  SnapshotReceiver,
  SnapshotSender,
  type SnapshotTransferHost,
  type SnapshotTransferStorage,
} from './snapshot_transfer';

/** Storage of hard state and log entries; `done` runs once the save is fsync'd or failed. */
export interface DriverStorage {
  save(
    hard_state: HardState | null,
    entries: EntriesToPersist | null,
    done: (error: Error | null) => void,
  ): void;
  /** Snapshot files and log compaction; a storage without them never snapshots. */
  snapshots?: DriverSnapshotStorage;
}

/**
 * A snapshot's state bytes, pulled chunk by chunk (bounded work each); null after the last. A
 * chunk is valid until the next call.
 */
export interface DriverSnapshotSource {
  next(): Uint8Array | null;
}

export interface DriverSnapshotStorage {
  /**
   * Writes a snapshot durably, pulling the state from `source` one chunk at a time (the event
   * loop runs between chunks); `done` gets the file's size.
   */
  write(
    meta: SnapshotMeta,
    source: DriverSnapshotSource,
    done: (error: Error | null, file_bytes: number) => void,
  ): void;
  /**
   * Rewrites the log to start after `point` with `entries` (ordered after every save made so
   * far); `done` once durable.
   */
  compact(point: SnapshotPoint, entries: LogEntry[], done: (error: Error | null) => void): void;
  /** InstallSnapshot: streaming files to and from peers (absent: no transfers). */
  transfer?: SnapshotTransferStorage;
  /** Loads the (received, durable) snapshot at `point` into a new state machine. */
  install?(
    point: SnapshotPoint,
    done: (error: Error | null, state: KvStateMachine | null) => void,
  ): void;
}

export interface SnapshotStats {
  snapshot_index: number;
  snapshot_term: number;
  snapshot_bytes: number;
  snapshot_last_duration_ms: number;
  /**
   * Longest synchronous step of taking a snapshot so far (collecting, sorting or encoding a chunk
   * of the state machine): the longest the event loop waited on snapshotting.
   */
  snapshot_serialize_max_ms: number;
  snapshots_taken: number;
  snapshot_in_progress: boolean;
  /** InstallSnapshot: transfers started as leader, files received and installed as follower. */
  snapshots_sent: number;
  snapshots_received: number;
  snapshots_installed: number;
  snapshot_chunks_sent: number;
}

/** Best-effort delivery of messages to peers (Raft retries what is lost). */
export interface DriverTransport {
  send(to: NodeId, message: RaftMessage): void;
}

/** Runs `run` soon, after what is already queued (the server: setImmediate; the simulator: now). */
export interface DriverScheduler {
  defer(run: () => void): void;
}

export interface DriverEvents {
  onSoftState?(soft: SoftState): void;
  /** The log is being rewritten from `first_index`, at or below what is already on disk. */
  onTruncate?(first_index: number): void;
  /** After the state machine applied a Ready's committed entries. */
  onApplied?(ready: Ready): void;
  /** A save failed: the driver stops; the process should exit and recover from disk. */
  onFatal?(error: Error): void;
  /** A snapshot received from the leader now is the state machine (before its log is rewritten). */
  onSnapshotInstalled?(point: SnapshotPoint): void;
  /**
   * Leader: the snapshot file at `point` failed its checksum while being sent (rotted on disk).
   * `retaking`: a fresh snapshot replaces it; false: snapshot_damaged_retakes_max was reached.
   */
  onSnapshotDamaged?(point: SnapshotPoint, reason: string, retaking: boolean): void;
}

/**
 * Test-only switches that break one rule of the driver each, so the simulator can prove it
 * catches them. Never set in production code.
 */
export interface DriverFaults {
  /** Send a Ready's after-persist messages (votes, append acknowledgements) before its save. */
  send_before_persist?: boolean;
}

export interface DriverOptions {
  readies_per_turn_max: number;
  /** Entries applied since the last snapshot that trigger the next one; 0: no threshold. */
  snapshot_entries?: number;
  /** Data bytes of entries applied since the last snapshot that trigger one; 0: no threshold. */
  snapshot_log_bytes?: number;
  /** Work per snapshot step (default: LIMITS); the simulator shrinks it to interleave writes. */
  snapshot_steps?: SnapshotSteps;
  /** InstallSnapshot chunk size; default snapshot_chunk_bytes_max (the simulator's are small). */
  snapshot_chunk_bytes?: number;
  /** A clock for snapshot durations (ms); absent: durations read 0. */
  now_ms?: () => number;
  faults?: DriverFaults;
}

/**
 * running: takes Readies. draining: takes no more Readies; the save in flight completes.
 * failed: a save failed; nothing more happens.
 */
export type DriverState = 'running' | 'draining' | 'failed';

export class ReadyDriver {
  private state_: DriverState = 'running';
  private scheduled = false;
  private save_in_flight = false;
  /** Last log index handed to storage and saved (for the truncation notice). */
  private persisted_last_index: number;
  /** A newer commit index not yet written; it goes out with the next save. */
  private pending_hard_state: HardState | null = null;
  private snapshotting = false;
  /** The newest durable snapshot (its index starts at the one the node restarted from). */
  private snapshot_point: SnapshotPoint;
  /** The snapshot before it: the log is compacted up to here. */
  private previous_snapshot_index: number;
  private applied_bytes_since_snapshot = 0;
  private readonly snapshot_stats: SnapshotStats;
  /** Told once the running snapshot is durable (or failed): RAFT.SNAPSHOT replies then. */
  private snapshot_waiters: Array<(error: Error | null) => void> = [];
  private readonly sender: SnapshotSender | null = null;
  private readonly receiver: SnapshotReceiver | null = null;
  /** Snapshots retaken for damaged files since a file last read back intact. */
  private damaged_retakes = 0;

  constructor(
    private readonly core: RaftCore,
    private readonly replica: Replica,
    private readonly storage: DriverStorage,
    private readonly transport: DriverTransport,
    private readonly scheduler: DriverScheduler,
    private readonly options: DriverOptions,
    private readonly events: DriverEvents = {},
  ) {
    assert(options.readies_per_turn_max >= 1, 'readies_per_turn_max >= 1');
    this.persisted_last_index = core.last_log_index;
    // The state machine starts at the snapshot the node restarted from (its log may reach back
    // further): the next threshold counts from there, and the next compaction may go up to it.
    const restarted_at = replica.state.last_applied;
    this.snapshot_point = { index: restarted_at, term: core.termAt(restarted_at) };
    this.previous_snapshot_index = restarted_at;
    this.snapshot_stats = {
      snapshot_index: restarted_at,
      snapshot_term: this.snapshot_point.term,
      snapshot_bytes: 0,
      snapshot_last_duration_ms: 0,
      snapshot_serialize_max_ms: 0,
      snapshots_taken: 0,
      snapshot_in_progress: false,
      snapshots_sent: 0,
      snapshots_received: 0,
      snapshots_installed: 0,
      snapshot_chunks_sent: 0,
    };
    core.snapshotDurable(this.snapshot_point);
    const transfer = storage.snapshots?.transfer;
    if (transfer !== undefined && storage.snapshots?.install !== undefined) {
      const host = this.transferHost();
      this.sender = new SnapshotSender(
        host,
        transfer,
        this.snapshot_stats,
        options.snapshot_chunk_bytes,
      );
      this.receiver = new SnapshotReceiver(host, transfer, this.snapshot_stats);
    }
  }

  private transferHost(): SnapshotTransferHost {
    const core = this.core;
    return {
      id: core.id,
      send: (to, message) => this.transport.send(to, message),
      term: () => core.current_term,
      isLeader: () => core.current_role === 'leader',
      leaderId: () => core.status().leader_id,
      awaitingSnapshot: (to) => core.status().peers.some((p) => p.id === to && p.pending_snapshot),
      sendFailed: (to) => {
        core.reportSnapshotFailed(to);
        this.schedule();
      },
      sourceDamaged: (point, reason) => this.retakeDamagedSnapshot(point, reason),
      sourceVerified: () => {
        this.damaged_retakes = 0;
      },
      received: (from, term, point, membership) => {
        if (this.state_ !== 'running') return;
        core.offerSnapshot(from, term, point, membership);
        this.schedule();
      },
    };
  }

  snapshotStats(): SnapshotStats {
    return { ...this.snapshot_stats, snapshot_in_progress: this.snapshotting };
  }

  /**
   * Takes a snapshot now (RAFT.SNAPSHOT) unless one is running or nothing was applied since the
   * last; returns whether one started.
   */
  snapshotNow(done: (error: Error | null) => void = () => undefined): boolean {
    if (this.state_ !== 'running' || this.snapshotting || this.storage.snapshots === undefined)
      return false;
    if (this.replica.state.last_applied <= this.snapshot_point.index) return false;
    this.snapshot_waiters.push(done);
    this.takeSnapshot(this.storage.snapshots);
    return true;
  }

  /**
   * The snapshot file being sent rotted on disk: the state machine in memory is intact, so a fresh
   * snapshot of it replaces the file (a threshold snapshot already running does as well). The
   * log is not compacted further meanwhile: the previous snapshot and the log after it stay the
   * restart fallback.
   */
  private retakeDamagedSnapshot(point: SnapshotPoint, reason: string): void {
    const snapshots = this.storage.snapshots;
    if (this.state_ !== 'running' || snapshots === undefined) return;
    const retaking =
      this.snapshotting || this.damaged_retakes < LIMITS.snapshot_damaged_retakes_max;
    this.events.onSnapshotDamaged?.(point, reason, retaking);
    if (this.snapshotting || !retaking) return;
    this.damaged_retakes++;
    this.previous_snapshot_index = Math.min(
      this.previous_snapshot_index,
      this.core.first_log_index - 1,
    );
    this.takeSnapshot(snapshots);
  }

  get state(): DriverState {
    return this.state_;
  }

  /** A save is running; its Ready is not yet advanced. */
  get saving(): boolean {
    return this.save_in_flight;
  }

  /** The commit index (with term and vote) that no save has written yet, if any. */
  get unsaved_hard_state(): HardState | null {
    return this.pending_hard_state;
  }

  tick(): void {
    if (this.state_ !== 'running') return;
    this.core.tick();
    this.sender?.tick();
    this.receiver?.tick();
    this.schedule();
  }

  step(from: NodeId, message: RaftMessage): void {
    if (this.state_ !== 'running') return;
    this.core.step(from, message);
    if (message.type === MessageType.InstallSnapshotRequest)
      this.receiver?.onChunk(from, message, this.core.wantsSnapshot(message.snapshot_index));
    else if (message.type === MessageType.InstallSnapshotResponse)
      this.sender?.onResponse(from, message);
    this.schedule();
  }

  /** Asks for a pump soon: everything that arrives before it shares one Ready and one fsync. */
  schedule(): void {
    if (this.scheduled || this.state_ !== 'running') return;
    this.scheduled = true;
    this.scheduler.defer(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Stop taking Readies (graceful stop): the save in flight still completes. */
  drain(): void {
    if (this.state_ === 'running') this.state_ = 'draining';
  }

  /** Carries out Readies until a save is in flight or none is left. */
  pump(): void {
    let readies = 0;
    while (this.state_ === 'running' && !this.save_in_flight && this.core.hasReady()) {
      if (++readies > this.options.readies_per_turn_max) {
        this.schedule(); // let clients and peers in between (a long log replays in many turns)
        return;
      }
      const ready = this.core.ready();
      if (ready === null) return;
      this.carryOut(ready);
    }
  }

  private carryOut(ready: Ready): void {
    if (ready.soft_state !== null) this.events.onSoftState?.(ready.soft_state);
    for (const { to, term } of ready.snapshot_sends) this.sender?.start(to, term);
    if (ready.snapshot !== null) {
      this.install(ready, ready.snapshot);
      return;
    }
    if (ready.entries !== null && ready.entries.first_index <= this.persisted_last_index) {
      this.events.onTruncate?.(ready.entries.first_index);
    }
    this.replica.applyReady(ready);
    this.events.onApplied?.(ready);
    for (const { entry } of ready.committed) this.applied_bytes_since_snapshot += entry.data.length;
    this.maybeSnapshot();
    if (!ready.must_sync) {
      assert(ready.messages_after_persist.length === 0, 'nothing waits for a save not made');
      if (ready.hard_state !== null) this.pending_hard_state = ready.hard_state;
      this.send(ready.messages);
      this.core.advance(ready);
      return;
    }
    const hard_state = ready.hard_state ?? this.pending_hard_state;
    this.pending_hard_state = null;
    this.send(ready.messages);
    const early = this.options.faults?.send_before_persist === true;
    if (early) this.send(ready.messages_after_persist);
    this.save_in_flight = true;
    this.storage.save(hard_state, ready.entries, (error) => this.onSaved(ready, error, early));
  }

  private onSaved(ready: Ready, error: Error | null, sent_already: boolean): void {
    assert(this.save_in_flight, 'a save completes only while one is in flight');
    if (error !== null) {
      this.fail(error);
      return;
    }
    this.save_in_flight = false;
    if (this.state_ === 'failed') return;
    if (ready.entries !== null) {
      this.persisted_last_index = ready.entries.first_index + ready.entries.entries.length - 1;
    }
    if (!sent_already) this.send(ready.messages_after_persist);
    this.core.advance(ready);
    this.pump();
  }

  /**
   * A received snapshot becomes the state machine, then the log is rewritten to start after it
   * (the file is already durable: a crash in between restarts from it), then the Ready's hard
   * state is saved and the Installed answer sent.
   */
  private install(ready: Ready, point: SnapshotPoint): void {
    const snapshots = this.storage.snapshots;
    assert(snapshots?.install !== undefined, 'a Ready installs a snapshot only if storage can');
    assert(ready.entries === null && ready.committed.length === 0, 'an install Ready goes alone');
    this.save_in_flight = true;
    snapshots.install(point, (error, state) => {
      if (error !== null || state === null) {
        this.fail(error ?? new Error(`snapshot ${point.index} could not be installed`));
        return;
      }
      if (this.state_ === 'failed') return;
      this.replica.installState(state);
      this.snapshot_point = point;
      this.previous_snapshot_index = point.index;
      this.applied_bytes_since_snapshot = 0;
      this.snapshot_stats.snapshots_installed++;
      this.snapshot_stats.snapshot_index = point.index;
      this.snapshot_stats.snapshot_term = point.term;
      this.events.onSnapshotInstalled?.(point);
      const entries = this.core.persistedEntriesAfter(point.index);
      this.persisted_last_index = point.index + entries.length;
      snapshots.compact(point, entries, (compact_error) => {
        if (compact_error !== null) {
          this.fail(compact_error);
          return;
        }
        const hard_state = ready.hard_state ?? this.pending_hard_state;
        this.pending_hard_state = null;
        this.storage.save(hard_state, null, (save_error) => this.onSaved(ready, save_error, false));
      });
    });
  }

  private maybeSnapshot(): void {
    const snapshots = this.storage.snapshots;
    if (snapshots === undefined || this.snapshotting) return;
    const entries_max = this.options.snapshot_entries ?? 0;
    const bytes_max = this.options.snapshot_log_bytes ?? 0;
    const entries = this.replica.state.last_applied - this.snapshot_point.index;
    if (
      (entries_max > 0 && entries >= entries_max) ||
      (bytes_max > 0 && this.applied_bytes_since_snapshot >= bytes_max && entries > 0)
    ) {
      this.takeSnapshot(snapshots);
    }
  }

  /**
   * Snapshots the state machine as applied now: the cursor is prepared in bounded steps, one per
   * scheduler turn, then its chunks are written as the storage asks for them; entries keep being
   * applied throughout. See onSnapshotWritten.
   */
  private takeSnapshot(snapshots: DriverSnapshotStorage): void {
    const now_ms = this.options.now_ms ?? (() => 0);
    const started_ms = now_ms();
    const index = this.replica.state.last_applied;
    const term = this.core.termAt(index);
    assert(term >= 0, `the term of applied index ${index} is known`);
    const cursor = this.replica.state.beginSnapshot(this.options.snapshot_steps);
    this.snapshotting = true;
    this.applied_bytes_since_snapshot = 0;
    const membership = this.core.membershipAt(index);
    const voters = membership.members.filter((m) => m.voter).map((m) => m.id);
    // A node that joined a running cluster knows no configuration before the first membership
    // entry in its log: such a snapshot records none (restoring falls back as for an old file).
    const meta: SnapshotMeta =
      membership.members.length > 0 ? { index, term, voters, membership } : { index, term, voters };
    const timed = <T>(step: () => T): T => {
      const step_started_ms = now_ms();
      const result = step();
      const stats = this.snapshot_stats;
      stats.snapshot_serialize_max_ms = Math.max(
        stats.snapshot_serialize_max_ms,
        now_ms() - step_started_ms,
      );
      return result;
    };
    const written = (error: Error | null, file_bytes: number): void => {
      cursor.finish();
      this.snapshotting = false;
      for (const waiter of this.snapshot_waiters.splice(0)) waiter(error);
      if (error !== null) {
        this.fail(error);
        return;
      }
      this.sender?.sourceReplaced(); // a new file, or the damaged one rewritten at its index
      // A snapshot installed from the leader meanwhile is newer: this one changes nothing.
      if (index <= this.snapshot_point.index) return;
      Object.assign(this.snapshot_stats, {
        snapshot_index: index,
        snapshot_term: term,
        snapshot_bytes: file_bytes,
        snapshot_last_duration_ms: now_ms() - started_ms,
        snapshots_taken: this.snapshot_stats.snapshots_taken + 1,
      });
      this.onSnapshotWritten(snapshots, { index, term });
    };
    const prepare = (): void => {
      if (this.state_ === 'failed') written(new Error('the driver stopped'), 0);
      else if (!timed(() => cursor.prepare())) this.scheduler.defer(prepare);
      else snapshots.write(meta, { next: () => timed(() => cursor.next()) }, written);
    };
    prepare();
  }

  /**
   * The snapshot at `point` is durable: compact the log (memory and WAL) up to the snapshot before
   * it, which is still on disk as a fallback.
   */
  private onSnapshotWritten(snapshots: DriverSnapshotStorage, point: SnapshotPoint): void {
    if (this.state_ === 'failed') return;
    this.core.snapshotDurable(point);
    // Without InstallSnapshot a leader keeps what its followers still need (a follower behind the
    // first retained entry could never catch up); with it, only the log after a snapshot being
    // sent (the log since the previous snapshot still serves nearly caught-up followers).
    const keep_after =
      this.sender === null ? this.core.followersNeedFrom() - 1 : this.core.compactionLimit();
    const compact_to = Math.min(
      this.previous_snapshot_index,
      this.core.status().stable_index,
      keep_after,
    );
    this.previous_snapshot_index = point.index;
    this.snapshot_point = point;
    if (compact_to <= this.core.first_log_index - 1) return;
    const compact_point = { index: compact_to, term: this.core.termAt(compact_to) };
    const entries = this.core.persistedEntriesAfter(compact_to);
    this.core.compact(compact_to);
    snapshots.compact(compact_point, entries, (error) => {
      if (error !== null) this.fail(error);
    });
  }

  private send(messages: Outbound[]): void {
    for (const { to, message } of messages) this.transport.send(to, message);
  }

  private fail(error: Error): void {
    if (this.state_ === 'failed') return;
    this.state_ = 'failed';
    this.events.onFatal?.(error);
  }
}
