/**
 * A tiny synchronous network of Raft cores with instant disks, for the
 * rule-by-rule core tests. Messages can be cut per link, dropped or held
 * back by predicate and released by hand.
 */
import assert from 'node:assert/strict';
import { buildRaftConfig } from '../../src/raft/config';
import { RaftCore } from '../../src/raft/core';
import type { NodeId, RaftFaults, Ready, ReadState, RestoredState } from '../../src/raft/types';
import type { RaftMessage } from '../../src/raft/protocol';
import { SeededRandom } from '../../src/util/prng';

export const ELECTION_TICKS = 10;

export interface CoreOptions {
  restored?: RestoredState;
  faults?: RaftFaults;
  inflight_messages_max?: number;
  uncommitted_bytes_max?: number;
  auto_promote_learners?: boolean;
}

export function makeCore(id: NodeId, voters: NodeId[], options: CoreOptions = {}): RaftCore {
  return new RaftCore(
    buildRaftConfig({
      id,
      voters,
      election_ticks: ELECTION_TICKS,
      heartbeat_ticks: 2,
      random: new SeededRandom(id * 7919),
      limits: {
        entry_bytes_max: 1024 * 1024,
        message_entries_bytes_max: 64 * 1024,
        message_entries_max: 64,
        inflight_messages_max: options.inflight_messages_max ?? 8,
        uncommitted_bytes_max: options.uncommitted_bytes_max ?? 1000,
        pending_reads_max: 100,
        committed_entries_per_ready_max: 8192,
        ready_entries_max: 8192,
        ready_entries_bytes_max: 16 * 1024 * 1024,
      },
      prevote: true,
      check_quorum: true,
      // Off unless a test asks: the membership tests promote explicitly, one step at a time.
      auto_promote_learners: options.auto_promote_learners ?? false,
      faults: options.faults ?? {},
    }),
    options.restored ?? { hard_state: { term: 0, vote: 0, commit: 0 }, entries: [] },
  );
}

/** Term of the core's entry at `index`, 0 for index 0, -1 beyond its log. */
export function termAt(core: RaftCore, index: number): number {
  if (index === 0) return 0;
  return core.logEntries()[index - 1]?.term ?? -1;
}

export interface Envelope {
  from: NodeId;
  to: NodeId;
  message: RaftMessage;
}

export class TestNet {
  readonly cores = new Map<NodeId, RaftCore>();
  readonly cut = new Set<string>();
  readonly reads = new Map<NodeId, ReadState[]>();
  readonly applied = new Map<NodeId, number>();
  /** Every message delivered, in order. */
  delivered: RaftMessage[] = [];
  /** Return true to lose a message. */
  drop: (e: Envelope) => boolean = () => false;
  /** Return true to hold a message back in `held` (deliver it later with release). */
  hold: (e: Envelope) => boolean = () => false;
  held: Envelope[] = [];
  /** Every snapshot transfer a leader asked for (the tests play the server's part). */
  snapshot_sends: Array<{ from: NodeId; to: NodeId; term: number }> = [];

  /** Sees each Ready before it is advanced (a test applies one node's to a Replica). */
  on_ready: (id: NodeId, ready: Ready) => void = () => undefined;

  constructor(ids: NodeId[], options: CoreOptions = {}) {
    for (const id of ids) this.cores.set(id, makeCore(id, ids, options));
  }

  core(id: NodeId): RaftCore {
    const core = this.cores.get(id);
    assert.ok(core);
    return core;
  }

  /** Drains every Ready and delivers every message until the network is quiet. */
  settle(limit = 100_000): void {
    for (let round = 0; round < limit; round++) {
      let any = false;
      for (const [id, core] of this.cores) {
        if (!core.hasReady()) continue;
        const ready = core.ready();
        if (ready === null) continue;
        any = true;
        this.applied.set(id, (this.applied.get(id) ?? 0) + ready.committed.length);
        this.reads.set(id, [...(this.reads.get(id) ?? []), ...ready.reads]);
        for (const send of ready.snapshot_sends) this.snapshot_sends.push({ from: id, ...send });
        this.on_ready(id, ready);
        core.advance(ready);
        for (const { to, message } of [...ready.messages, ...ready.messages_after_persist]) {
          this.route({ from: id, to, message });
        }
      }
      if (!any) return;
    }
    throw new Error('network did not settle');
  }

  route(e: Envelope): void {
    if (this.cut.has(`${e.from}>${e.to}`) || this.drop(e)) return;
    if (this.hold(e)) {
      this.held.push(e);
      return;
    }
    this.deliver(e);
  }

  /** Delivers a held message now (bypassing drop and hold, not cut links). */
  release(e: Envelope): void {
    this.held = this.held.filter((h) => h !== e);
    if (!this.cut.has(`${e.from}>${e.to}`)) this.deliver(e);
  }

  private deliver(e: Envelope): void {
    this.delivered.push(e.message);
    this.cores.get(e.to)?.step(e.from, e.message);
  }

  /** Ticks the given node(s) `times` times, settling after each tick. */
  tick(ids: NodeId | NodeId[], times = 1): void {
    const list = Array.isArray(ids) ? ids : [ids];
    for (let i = 0; i < times; i++) {
      for (const id of list) this.core(id).tick();
      this.settle();
    }
  }

  tickAll(times: number): void {
    this.tick([...this.cores.keys()], times);
  }

  isolate(id: NodeId): void {
    for (const other of this.cores.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Ticks `id` until it is leader (its election timeout is at most 2 × ELECTION_TICKS). */
  elect(id: NodeId): void {
    this.tick(id, 2 * ELECTION_TICKS + 1);
    assert.equal(this.core(id).current_role, 'leader', `node ${id} became leader`);
  }
}
