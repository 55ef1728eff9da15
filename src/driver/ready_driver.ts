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
 *   scheduler, so a long log replays without starving timers and sockets.
 */
import type { RaftCore } from '../raft/core';
import type {
  EntriesToPersist,
  HardState,
  NodeId,
  Outbound,
  Ready,
  SoftState,
} from '../raft/types';
import type { Replica } from '../replica/replica';
import type { RaftMessage } from '../raft/protocol';
import { assert } from '../util/assert';

/** Storage of hard state and log entries; `done` runs once the save is fsync'd or failed. */
export interface DriverStorage {
  save(
    hard_state: HardState | null,
    entries: EntriesToPersist | null,
    done: (error: Error | null) => void,
  ): void;
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
    this.schedule();
  }

  step(from: NodeId, message: RaftMessage): void {
    if (this.state_ !== 'running') return;
    this.core.step(from, message);
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
    if (ready.entries !== null && ready.entries.first_index <= this.persisted_last_index) {
      this.events.onTruncate?.(ready.entries.first_index);
    }
    this.replica.applyReady(ready);
    this.events.onApplied?.(ready);
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

  private send(messages: Outbound[]): void {
    for (const { to, message } of messages) this.transport.send(to, message);
  }

  private fail(error: Error): void {
    if (this.state_ === 'failed') return;
    this.state_ = 'failed';
    this.events.onFatal?.(error);
  }
}
