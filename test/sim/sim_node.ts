/**
 * One simulated node process: the server's own pieces (RaftCore, Replica,
 * ReadyDriver, RaftStorage) over a FaultyDisk that outlives restarts, the
 * simulator's network and its virtual clock. A restart replays the real WAL,
 * so every seed also checks the storage rules: a torn tail is truncated and
 * served, damage before the tail is refused.
 */
import { type DriverSnapshotStorage, ReadyDriver } from '../../src/driver/ready_driver';
import { snapshotInstaller, snapshotTransferStorage } from '../../src/driver/snapshot_files';
import { KvStateMachine } from '../../src/kv/state_machine';
import { buildRaftConfig } from '../../src/raft/config';
import { RaftCore } from '../../src/raft/core';
import type {
  EntriesToPersist,
  HardState,
  NodeId,
  RaftConfig,
  Ready,
  RestoredState,
} from '../../src/raft/types';
import { NO_NODE } from '../../src/raft/types';
import { Replica } from '../../src/replica/replica';
import { type OpenResult, RaftStorage } from '../../src/storage';
import { encodeFileHeader, encodeSave } from '../../src/storage/payload';
import { StorageCorruptError, StorageIoError } from '../../src/util/errors';
import { LIMITS } from '../../src/util/limits';
import { PROMOTE_LAG_ENTRIES_MAX } from './membership_nemesis';
import { SeededRandom } from '../../src/util/prng';
import type { LogEntry, RaftMessage } from '../../src/raft/protocol';
import { FaultyDisk, type FaultyDiskOptions } from '../support/faulty_disk';
import type { SimParams } from './simulation';

/** Where each simulated node keeps its data directory on its own FaultyDisk. */
export const SIM_DATA_DIR = '/sim/data';
export const SIM_WAL_PATH = `${SIM_DATA_DIR}/raft.wal`;

/** Hard state and log as a scripted scenario wants a node's disk to hold them. */
export interface Disk {
  hard_state: HardState;
  entries: LogEntry[];
}

export class SafetyViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetyViolation';
  }
}

/** What a SimNode needs from the simulation around it. */
export interface SimHost {
  readonly now: number;
  readonly params: SimParams;
  readonly rng: SeededRandom;
  schedule(delay_ms: number, run: () => void): void;
  transmit(from: NodeId, to: NodeId, message: RaftMessage): void;
  /** A disk operation settled: promise callbacks must run before the next event. */
  noteIoSettled(): void;
  /** Checks run after every step of a node. */
  observe(node: SimNode): void;
  checkApplied(node: SimNode, ready: Ready): void;
  checkSnapshotState(node: SimNode, state: KvStateMachine, index: number): void;
  /** A snapshot from the leader became the node's state machine. */
  checkInstalled(node: SimNode, index: number): void;
  /** A violation found outside the run loop's call stack (in a promise callback). */
  reportFailure(error: Error): void;
  /** Counts a storage event of the run (for the summary: faults must really happen). */
  count(event: StorageEvent): void;
}

export type StorageEvent =
  | 'power_loss'
  | 'kill'
  | 'torn_tail_truncated'
  | 'corrupted_at_rest'
  | 'refused_damaged_log'
  | 'failed_save'
  | 'failed_recovery'
  | 'snapshot_written'
  | 'log_compacted'
  | 'restart_from_snapshot'
  | 'snapshot_fallback'
  | 'snapshot_installed';

/**
 * down: no process. recovering: a process is replaying the WAL. up: serving.
 * refused: recovery refused a damaged log (expected after corruption at rest);
 * the node stays down for good.
 */
export type SimNodeState = 'down' | 'recovering' | 'up' | 'refused';

export class SimNode {
  state: SimNodeState = 'down';
  incarnation = 0;
  paused_until = 0;
  /**
   * Per connection, when the resumed process gets to what queued up on it (FIFO within a
   * connection).
   */
  resume_order = new Map<string, number>();
  readonly disk: FaultyDisk;
  /** What the completed saves of this node put on disk (checked for monotonic hard state). */
  durable: Disk = { hard_state: { term: 0, vote: NO_NODE, commit: 0 }, entries: [] };
  /** durable.entries[0] is index durable_base + 1 (the log on disk starts after a snapshot). */
  durable_base = 0;
  /** Corruption at rest was injected while down: the next recovery must refuse to start. */
  expect_refusal = false;
  core!: RaftCore;
  replica!: Replica;
  driver!: ReadyDriver;
  /** Highest commit index this incarnation has reported (commit must not go backwards). */
  commit_seen = 0;
  applied_seen = 0;
  /** Commit index recorded into the cluster-wide committed log. */
  commit_recorded = 0;
  was_leader_in_term = -1;

  constructor(
    readonly id: NodeId,
    private readonly host: SimHost,
    disk_options: Partial<FaultyDiskOptions>,
  ) {
    this.disk = new FaultyDisk(new SeededRandom((host.params.seed * 31 + id) >>> 0), disk_options);
  }

  /** Some process of this node finished recovery, so `core` exists (maybe of a dead process). */
  get booted(): boolean {
    return this.core !== undefined;
  }

  get alive(): boolean {
    return this.state === 'up';
  }

  /** Writes a WAL holding `disk` as durable, for scripted scenarios (before the first start). */
  installDisk(disk: Disk): void {
    const header = encodeFileHeader();
    const save = encodeSave(disk.hard_state, { first_index: 1, entries: disk.entries }, header.crc);
    this.disk.installFile(SIM_WAL_PATH, Buffer.concat([header.bytes, save.bytes]));
    this.durable = { hard_state: { ...disk.hard_state }, entries: disk.entries.slice() };
  }

  /** Starts a process: it replays the WAL, then serves. */
  start(): void {
    if (this.state !== 'down') return;
    this.state = 'recovering';
    this.incarnation++;
    this.paused_until = 0;
    const incarnation = this.incarnation;
    const io = this.disk.io((delay_ms, run) =>
      this.host.schedule(delay_ms, () =>
        this.runAwake(incarnation, () => {
          run();
          this.host.noteIoSettled();
        }),
      ),
    );
    RaftStorage.openWithIo(
      SIM_DATA_DIR,
      { snapshot_parser: KvStateMachine.snapshotParser },
      io,
    ).then(
      (opened) => this.guard(() => this.boot(incarnation, opened)),
      (error: unknown) => this.guard(() => this.recoveryFailed(incarnation, error)),
    );
  }

  /** kill -9 (page cache survives) or power loss (unsynced writes lost, last one maybe torn). */
  crash(power_loss: boolean): void {
    if (this.state !== 'up' && this.state !== 'recovering') return;
    this.state = 'down';
    this.incarnation++; // in-flight I/O, timers and deliveries of the old process are void
    if (power_loss) this.disk.crash();
    else this.disk.killProcess();
    this.host.count(power_loss ? 'power_loss' : 'kill');
  }

  /** No more injected I/O errors or latency spikes on this node's disk (the liveness phase). */
  healDisk(): void {
    this.disk.options.datasync_failure_probability = 0;
    this.disk.options.write_failure_probability = 0;
    this.disk.options.slow_probability = 0;
  }

  /** Corrupts a durable WAL record before the last; true if the disk had one to corrupt. */
  corruptAtRest(): boolean {
    if (this.state !== 'down') return false;
    if (this.disk.corruptRandomDurableRecord(SIM_WAL_PATH) === null) return false;
    this.expect_refusal = true;
    this.host.count('corrupted_at_rest');
    return true;
  }

  /** Runs `run` for this incarnation once it is not paused, then checks invariants. */
  runAwake(incarnation: number, run: () => void): void {
    if (this.incarnation !== incarnation) return; // the process died: its callbacks are void
    if (this.paused_until > this.host.now) {
      const resume = this.paused_until - this.host.now;
      this.host.schedule(resume, () => this.runAwake(incarnation, run));
      return;
    }
    run();
    if (this.state === 'up') this.host.observe(this);
  }

  /** Runs a promise callback; what it throws goes to the run loop instead of getting lost. */
  private guard(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.host.reportFailure(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private boot(incarnation: number, opened: OpenResult<KvStateMachine>): void {
    if (this.incarnation !== incarnation) return;
    if (this.expect_refusal) {
      this.host.reportFailure(
        new SafetyViolation(`node ${this.id}: recovery accepted a WAL damaged before its tail`),
      );
      return;
    }
    this.checkRecovered(opened.restored);
    if (opened.recovery.truncated_tail_bytes > 0) this.host.count('torn_tail_truncated');
    if (opened.recovery.damaged_snapshots.length > 0) this.host.count('snapshot_fallback');
    this.durable = {
      hard_state: { ...opened.restored.hard_state },
      entries: opened.restored.entries.slice(),
    };
    const log_base = opened.restored.snapshot?.index ?? 0;
    const applied_index = opened.restored.applied_index ?? log_base;
    this.durable_base = log_base;
    let state = new KvStateMachine();
    if (opened.snapshot !== null) {
      state = opened.snapshot.state;
      this.host.checkSnapshotState(this, state, applied_index);
      this.host.count('restart_from_snapshot');
    }
    this.core = new RaftCore(this.raftConfig(), opened.restored);
    this.replica = new Replica(this.core, state);
    this.driver = this.createDriver(opened.storage, incarnation);
    this.commit_seen = this.core.commit_index;
    this.applied_seen = applied_index;
    this.commit_recorded = log_base;
    this.was_leader_in_term = -1;
    this.state = 'up';
    this.host.observe(this);
    this.scheduleTicks(incarnation);
    this.driver.schedule(); // replay committed entries into the state machine
  }

  private recoveryFailed(incarnation: number, error: unknown): void {
    if (this.incarnation !== incarnation) return;
    if (this.expect_refusal && error instanceof StorageCorruptError) {
      this.state = 'refused';
      this.host.count('refused_damaged_log');
      return;
    }
    if (error instanceof StorageIoError && this.host.params.disk_faults) {
      // An injected I/O error during recovery: the process exits, as the server's would.
      this.host.count('failed_recovery');
      this.crash(false);
      return;
    }
    const detail = error instanceof Error ? error.message : String(error);
    this.host.reportFailure(new SafetyViolation(`node ${this.id}: recovery failed: ${detail}`));
  }

  /** Everything a completed save made durable survives the crash (Raft's persistence rule). */
  private checkRecovered(restored: RestoredState): void {
    const before = this.durable.hard_state;
    const after = restored.hard_state;
    const vote_lost = before.vote !== NO_NODE && after.vote !== before.vote;
    if (after.term < before.term || (after.term === before.term && vote_lost)) {
      throw new SafetyViolation(
        `node ${this.id}: recovered term/vote ${after.term}/${after.vote} ` +
          `lost the durable ${before.term}/${before.vote}`,
      );
    }
  }

  private raftConfig(): RaftConfig {
    const params = this.host.params;
    return buildRaftConfig({
      id: this.id,
      // Spare nodes start outside the cluster and learn the membership from a leader.
      voters: this.id <= params.nodes ? Array.from({ length: params.nodes }, (_, i) => i + 1) : [],
      election_ticks: params.election_ticks,
      heartbeat_ticks: params.heartbeat_ticks,
      random: new SeededRandom(this.host.rng.int(2 ** 31) + this.id),
      limits: {
        message_entries_bytes_max: 64 * 1024,
        message_entries_max: params.message_entries_max,
        inflight_messages_max: params.inflight_messages_max,
        uncommitted_bytes_max: 1024 * 1024,
        pending_reads_max: 1024,
        committed_entries_per_ready_max: 1 + (params.seed % 64),
        ready_entries_max: 1 + (params.seed % 97),
        ready_entries_bytes_max: 16 * 1024,
        learner_promotion_lag_entries_max: PROMOTE_LAG_ENTRIES_MAX,
      },
      auto_promote_learners: params.auto_promote_learners ?? false,
      prevote: params.prevote,
      check_quorum: params.check_quorum,
      faults: params.faults,
    });
  }

  /**
   * The server's ReadyDriver over the real WAL: a deferred pump runs at the same virtual time
   * after what is already queued (as setImmediate runs after the I/O of one turn).
   */
  private createDriver(storage: RaftStorage, incarnation: number): ReadyDriver {
    return new ReadyDriver(
      this.core,
      this.replica,
      {
        save: (hard_state, entries, done) => this.save(storage, hard_state, entries, done),
        ...(this.host.params.snapshot_entries ? { snapshots: this.snapshotStorage(storage) } : {}),
      },
      { send: (to, message) => this.host.transmit(this.id, to, message) },
      { defer: (run) => this.host.schedule(0, () => this.runAwake(incarnation, run)) },
      {
        readies_per_turn_max: LIMITS.driver_readies_per_turn_max,
        snapshot_entries: this.host.params.snapshot_entries ?? 0,
        // Tiny snapshot steps: writes land between them, so copy-on-write is exercised.
        snapshot_steps: { keys_per_step: 1 + (this.host.params.seed % 4), chunk_bytes: 64 },
        ...(this.host.params.snapshot_chunk_bytes === undefined
          ? {}
          : { snapshot_chunk_bytes: this.host.params.snapshot_chunk_bytes }),
        now_ms: () => this.host.now,
        faults: this.host.params.faults,
      },
      {
        onApplied: (ready) => {
          this.host.observe(this); // record what the core now knows committed, then judge
          this.host.checkApplied(this, ready);
        },
        // A failed fsync: the process exits, as the server's does; the nemesis restarts it.
        onFatal: () => {
          this.host.count('failed_save');
          this.crash(false);
        },
        onSnapshotInstalled: (point) => this.host.checkInstalled(this, point.index),
      },
    );
  }

  private save(
    storage: RaftStorage,
    hard_state: HardState | null,
    entries: EntriesToPersist | null,
    done: (error: Error | null) => void,
  ): void {
    const incarnation = this.incarnation;
    storage.save(hard_state, entries).then(
      () =>
        this.guard(() => {
          if (this.incarnation !== incarnation) return;
          this.recordDurable(hard_state, entries);
          done(null);
        }),
      (error: unknown) =>
        this.guard(() => {
          if (this.incarnation !== incarnation) return;
          done(error instanceof Error ? error : new Error(String(error)));
        }),
    );
  }

  /** Snapshot files and log compaction on the real storage, void once this process died. */
  private snapshotStorage(storage: RaftStorage): DriverSnapshotStorage {
    const incarnation = this.incarnation;
    const settle = (run: () => void): void =>
      this.guard(() => {
        if (this.incarnation === incarnation) run();
      });
    const asError = (error: unknown): Error =>
      error instanceof Error ? error : new Error(String(error));
    return {
      write: (meta, source, done) =>
        storage.snapshots.writeFrom(meta, source).then(
          (written) =>
            settle(() => {
              this.host.count('snapshot_written');
              done(null, written.file_bytes);
            }),
          (error: unknown) => settle(() => done(asError(error), 0)),
        ),
      compact: (point, entries, done) =>
        storage.compactLog(point, entries).then(
          () =>
            settle(() => {
              this.host.count('log_compacted');
              this.recordCompaction(point.index, entries);
              done(null);
            }),
          (error: unknown) => settle(() => done(asError(error))),
        ),
      transfer: snapshotTransferStorage(storage.snapshots, settle),
      install: snapshotInstaller(storage.snapshots, settle),
    };
  }

  /** The log on disk now starts after `index` and holds exactly `entries` after it. */
  private recordCompaction(index: number, entries: LogEntry[]): void {
    this.durable_base = index;
    this.durable.entries = entries.slice();
  }

  private scheduleTicks(incarnation: number): void {
    const params = this.host.params;
    // Each node ticks on its own phase so elections are not in lock step.
    const tick = (): void => {
      if (this.incarnation !== incarnation) return;
      if (this.paused_until <= this.host.now) {
        this.driver.tick();
        this.host.observe(this);
      }
      this.host.schedule(params.tick_ms, tick);
    };
    this.host.schedule(1 + this.host.rng.int(params.tick_ms), tick);
  }

  /** A completed save: checks the hard state only moves forward, then records it. */
  private recordDurable(hard_state: HardState | null, saved: EntriesToPersist | null): void {
    if (saved !== null) {
      const { first_index, entries } = saved;
      const keep = first_index - 1 - this.durable_base;
      this.durable.entries.length = Math.min(this.durable.entries.length, Math.max(keep, 0));
      if (this.durable.entries.length !== keep) {
        throw new SafetyViolation(
          `node ${this.id}: persisting from ${first_index} leaves a gap after ` +
            `${this.durable_base + this.durable.entries.length}`,
        );
      }
      this.durable.entries.push(...entries);
    }
    if (hard_state !== null) this.recordHardState(hard_state);
  }

  private recordHardState(hard_state: HardState): void {
    const before = this.durable.hard_state;
    const id = this.id;
    if (hard_state.term < before.term)
      throw new SafetyViolation(
        `node ${id}: persisted term went back ${before.term} → ${hard_state.term}`,
      );
    if (hard_state.commit < before.commit) {
      throw new SafetyViolation(
        `node ${id}: persisted commit went back ${before.commit} → ${hard_state.commit}`,
      );
    }
    if (
      hard_state.term === before.term &&
      before.vote !== NO_NODE &&
      hard_state.vote !== before.vote
    ) {
      throw new SafetyViolation(
        `node ${id}: voted twice in term ${before.term} (${before.vote}, ${hard_state.vote})`,
      );
    }
    this.durable.hard_state = { ...hard_state };
  }
}
