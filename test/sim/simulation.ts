/**
 * A deterministic simulator for whole Raft clusters: N pure cores on a
 * simulated network and disk in virtual time, every choice drawn from one
 * seed (TigerBeetle's VOPR is the model). After every step it checks the
 * safety properties of Figure 3 of the Raft paper; clients record a history
 * that the linearizability checker judges at the end.
 */
import { buildRaftConfig } from '../../src/raft/config';
import { RaftCore } from '../../src/raft/core';
import type { EntriesToPersist, HardState, NodeId, RaftFaults, Ready } from '../../src/raft/types';
import { type DriverFaults, ReadyDriver } from '../../src/driver/ready_driver';
import { NO_NODE } from '../../src/raft/types';
import { isResponse, type LogEntry, type RaftMessage } from '../../src/raft/protocol';
import { encodeMessage, FrameDecoder } from '../../src/wire/codec';
import { Replica, type ReadOutcome, type WriteOutcome } from '../../src/replica/replica';
import { SeededRandom } from '../../src/util/prng';
import { LIMITS } from '../../src/util/limits';
import { EventQueue } from './event_queue';
import type { HistoryOperation, KvInput, KvOutput } from './linearizability';

export interface SimFaults extends RaftFaults, DriverFaults {}

export interface SimParams {
  seed: number;
  nodes: number;
  tick_ms: number;
  election_ticks: number;
  heartbeat_ticks: number;
  delay_min_ms: number;
  delay_max_ms: number;
  drop_rate: number;
  duplicate_rate: number;
  fsync_min_ms: number;
  fsync_max_ms: number;
  clients: number;
  keys: number;
  client_timeout_ms: number;
  prevote: boolean;
  check_quorum: boolean;
  faults: SimFaults;
  /** Run the core's messages through the real byte codec (slower, more realistic). */
  use_codec: boolean;
  message_entries_max: number;
  inflight_messages_max: number;
  /**
   * false: each connection is FIFO as TCP is (requests and responses travel on different
   * connections); true: any order.
   */
  reorder: boolean;
}

export class SafetyViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetyViolation';
  }
}

export interface Disk {
  hard_state: HardState;
  entries: LogEntry[];
}

class SimNode {
  readonly id: NodeId;
  alive = false;
  incarnation = 0;
  paused_until = 0;
  /**
   * Per connection, when the resumed process gets to what queued up on it (FIFO within a
   * connection).
   */
  resume_order = new Map<string, number>();
  disk: Disk = { hard_state: { term: 0, vote: NO_NODE, commit: 0 }, entries: [] };
  core!: RaftCore;
  replica!: Replica;
  driver!: ReadyDriver;
  /** Highest commit index this incarnation has reported (commit must not go backwards). */
  commit_seen = 0;
  applied_seen = 0;
  /** Commit index recorded into the cluster-wide committed log. */
  commit_recorded = 0;
  was_leader_in_term = -1;

  constructor(id: NodeId) {
    this.id = id;
  }
}

interface ClientState {
  id: number;
  busy: boolean;
  leader_hint: NodeId;
  op_counter: number;
  stopped: boolean;
}

export class Simulation {
  readonly params: SimParams;
  readonly rng: SeededRandom;
  readonly nodes: SimNode[] = [];
  readonly history: HistoryOperation[] = [];
  now = 0;
  private readonly queue = new EventQueue();
  private readonly blocked = new Set<string>();
  /** Per simulated connection, the delivery time of the last message scheduled on it. */
  private readonly channel_last = new Map<string, number>();
  private drop_rate: number;
  private duplicate_rate: number;
  /** The cluster's committed log as observed so far: index → entry. */
  private readonly committed: LogEntry[] = [];
  /**
   * For each committed index, the term in which it was first seen committed (the committing
   * leader's term).
   */
  private readonly committed_in_term: number[] = [];
  private readonly leader_of_term = new Map<number, NodeId>();
  private readonly clients: ClientState[] = [];
  private events_run = 0;
  /** A disk operation settled: its promise callbacks must run before the next event. */
  private microtasks_pending = false;
  /** A violation found inside a promise callback, thrown by the run loop. */
  private failure: Error | null = null;
  messages_delivered = 0;
  /** AppendEntries rejections seen by leaders (for fast-backtracking scenarios). */
  append_rejections = 0;
  private value_counter = 0;
  /**
   * Called when a node first becomes leader of a term (the nemesis uses it to strike at bad
   * moments).
   */
  on_leader_elected: ((id: NodeId) => void) | null = null;
  /** Called when a leader's commit index advances. */
  on_leader_commit: ((id: NodeId) => void) | null = null;

  /**
   * `initial` sets up what scripted scenarios need: disks as earlier
   * (imagined) history left them, and nodes that start crashed.
   */
  constructor(params: SimParams, initial: { disks?: Map<NodeId, Disk>; down?: NodeId[] } = {}) {
    this.params = params;
    this.rng = new SeededRandom(params.seed);
    this.drop_rate = params.drop_rate;
    this.duplicate_rate = params.duplicate_rate;
    for (let id = 1; id <= params.nodes; id++) {
      const node = new SimNode(id);
      const disk = initial.disks?.get(id);
      if (disk !== undefined) {
        node.disk = { hard_state: { ...disk.hard_state }, entries: disk.entries.slice() };
        for (let index = 1; index <= disk.hard_state.commit; index++) {
          const entry = disk.entries[index - 1]!;
          const known = this.committed[index - 1];
          if (known !== undefined && !sameEntry(known, entry))
            throw new Error(`initial disks disagree on committed index ${index}`);
          if (known === undefined) {
            this.committed.push(entry);
            this.committed_in_term.push(entry.term); // committed in its own term at the latest
          }
        }
      }
      this.nodes.push(node);
    }
    for (const node of this.nodes) if (!(initial.down ?? []).includes(node.id)) this.start(node);
  }

  // ------------------------------------------------------------ time

  schedule(delay_ms: number, run: () => void): void {
    this.queue.push(this.now + delay_ms, run);
  }

  /** Runs events until virtual time `until`. */
  async runUntilTime(until: number): Promise<void> {
    await this.runUntil(() => false, until - this.now);
  }

  runFor(ms: number): Promise<void> {
    return this.runUntilTime(this.now + ms);
  }

  /**
   * Runs until `predicate` holds (checked after every event) or `timeout_ms` passes; returns
   * whether it held.
   */
  async runUntil(predicate: () => boolean, timeout_ms: number): Promise<boolean> {
    const deadline = this.now + timeout_ms;
    if (predicate()) return true;
    while (this.queue.peekTime() <= deadline) {
      await this.step();
      if (predicate()) return true;
    }
    this.now = deadline;
    return predicate();
  }

  /**
   * Runs the next event. The real WAL continues in promise callbacks once a disk operation
   * settles: those run (all of them, in order, deterministically) before the next event.
   */
  private async step(): Promise<void> {
    const event = this.queue.pop()!;
    this.now = event.time;
    event.run();
    if (this.microtasks_pending) {
      this.microtasks_pending = false;
      await new Promise((resolve) => setImmediate(resolve));
      for (const node of this.nodes) if (node.alive) this.observe(node);
    }
    if (this.failure !== null) throw this.failure;
    if (++this.events_run % 2000 === 0) this.checkLogMatching();
  }

  // ------------------------------------------------------------ nodes

  private start(node: SimNode): void {
    node.alive = true;
    node.incarnation++;
    node.paused_until = 0;
    const voters = this.nodes.map((n) => n.id);
    node.core = new RaftCore(
      buildRaftConfig({
        id: node.id,
        voters,
        election_ticks: this.params.election_ticks,
        heartbeat_ticks: this.params.heartbeat_ticks,
        random: new SeededRandom(this.rng.int(2 ** 31) + node.id),
        limits: {
          message_entries_bytes_max: 64 * 1024,
          message_entries_max: this.params.message_entries_max,
          inflight_messages_max: this.params.inflight_messages_max,
          uncommitted_bytes_max: 1024 * 1024,
          pending_reads_max: 1024,
          committed_entries_per_ready_max: 1 + (this.params.seed % 64),
          ready_entries_max: 1 + (this.params.seed % 97),
          ready_entries_bytes_max: 16 * 1024,
        },
        prevote: this.params.prevote,
        check_quorum: this.params.check_quorum,
        faults: this.params.faults,
      }),
      { hard_state: { ...node.disk.hard_state }, entries: node.disk.entries.slice() },
    );
    node.replica = new Replica(node.core);
    node.driver = this.createDriver(node);
    node.commit_seen = node.core.commit_index;
    node.applied_seen = 0;
    node.commit_recorded = 0;
    node.was_leader_in_term = -1;
    this.observe(node);
    const incarnation = node.incarnation;
    // Each node ticks on its own phase so elections are not in lock step.
    const tick = (): void => {
      if (!node.alive || node.incarnation !== incarnation) return;
      if (node.paused_until <= this.now) {
        node.driver.tick();
        this.observe(node);
      }
      this.schedule(this.params.tick_ms, tick);
    };
    this.schedule(1 + this.rng.int(this.params.tick_ms), tick);
  }

  crash(id: NodeId): void {
    const node = this.node(id);
    if (!node.alive) return;
    node.alive = false;
    node.incarnation++; // in-flight fsyncs and deliveries of the old process are void
  }

  restart(id: NodeId): void {
    const node = this.node(id);
    if (node.alive) return;
    this.start(node);
  }

  pause(id: NodeId, ms: number): void {
    const node = this.node(id);
    if (!node.alive) return;
    if (node.paused_until <= this.now) node.resume_order.clear();
    node.paused_until = Math.max(node.paused_until, this.now + ms);
  }

  /**
   * When a paused node handles something that arrived during the pause: sockets are read in no
   * fixed order.
   */
  private resumeTime(node: SimNode, connection: string): number {
    let offset = node.resume_order.get(connection);
    if (offset === undefined) {
      offset = this.rng.float() * 2;
      node.resume_order.set(connection, offset);
    }
    return node.paused_until + offset;
  }

  node(id: NodeId): SimNode {
    const node = this.nodes[id - 1];
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** The node that is leader in the highest term among live nodes, if any. */
  leader(): SimNode | null {
    let best: SimNode | null = null;
    for (const node of this.nodes) {
      if (!node.alive || node.core.current_role !== 'leader') continue;
      if (best === null || node.core.current_term > best.core.current_term) best = node;
    }
    return best;
  }

  aliveCount(): number {
    return this.nodes.filter((n) => n.alive).length;
  }

  // ------------------------------------------------------------ network

  isolate(id: NodeId): void {
    for (const other of this.nodes) {
      if (other.id === id) continue;
      this.blocked.add(`${id}>${other.id}`);
      this.blocked.add(`${other.id}>${id}`);
    }
  }

  /** Nodes in `group` can talk among themselves; no traffic crosses to the rest. */
  split(group: NodeId[]): void {
    for (const a of this.nodes) {
      for (const b of this.nodes) {
        if (group.includes(a.id) !== group.includes(b.id)) this.blocked.add(`${a.id}>${b.id}`);
      }
    }
  }

  blockOneWay(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
  }

  heal(): void {
    this.blocked.clear();
  }

  setUnreliable(drop_rate: number, duplicate_rate: number): void {
    this.drop_rate = drop_rate;
    this.duplicate_rate = duplicate_rate;
  }

  private transmit(from: NodeId, to: NodeId, message: RaftMessage): void {
    if (this.blocked.has(`${from}>${to}`)) return;
    if (this.rng.float() < this.drop_rate) return;
    const copies = this.rng.float() < this.duplicate_rate ? 2 : 1;
    // Requests go on the sender's outbound connection, responses on the connection the request came
    // in on.
    const channel = isResponse(message.type) ? `${to}<${from}` : `${from}>${to}`;
    for (let i = 0; i < copies; i++) {
      const delay =
        this.params.delay_min_ms +
        this.rng.float() * (this.params.delay_max_ms - this.params.delay_min_ms);
      let at = this.now + delay;
      if (!this.params.reorder) {
        at = Math.max(at, this.channel_last.get(channel) ?? 0);
        this.channel_last.set(channel, at);
      }
      const delivered = this.params.use_codec ? roundTrip(message) : message;
      this.queue.push(at, () => this.deliver(from, to, delivered));
    }
  }

  private deliver(from: NodeId, to: NodeId, message: RaftMessage): void {
    const node = this.node(to);
    if (!node.alive) return;
    if (node.paused_until > this.now) {
      const incarnation = node.incarnation;
      this.queue.push(this.resumeTime(node, `peer${from}`), () => {
        if (node.incarnation === incarnation) this.deliver(from, to, message);
      });
      return;
    }
    this.messages_delivered++;
    if (message.type === 4 && !message.success && message.term === node.core.current_term)
      this.append_rejections++;
    node.driver.step(from, message);
    this.observe(node);
  }

  // ------------------------------------------------------------ the driver (the server's own)

  /**
   * The server's ReadyDriver over the simulated disk, network and clock: a
   * deferred pump runs at the same virtual time after what is already queued
   * (as setImmediate runs after the I/O of one turn), never while paused and
   * never for a dead incarnation.
   */
  private createDriver(node: SimNode): ReadyDriver {
    const incarnation = node.incarnation;
    return new ReadyDriver(
      node.core,
      node.replica,
      { save: (hard_state, entries, done) => this.save(node, hard_state, entries, done) },
      { send: (to, message) => this.transmit(node.id, to, message) },
      { defer: (run) => this.queue.push(this.now, () => this.runAwake(node, incarnation, run)) },
      { readies_per_turn_max: LIMITS.driver_readies_per_turn_max, faults: this.params.faults },
      {
        onApplied: (ready) => {
          this.observe(node); // record what the core now knows committed before judging the apply
          this.checkApplied(node, ready);
        },
      },
    );
  }

  /** Runs `run` for this incarnation of `node` once it is not paused, then checks invariants. */
  private runAwake(node: SimNode, incarnation: number, run: () => void): void {
    if (node.incarnation !== incarnation) return; // the process died: its callbacks are void
    if (node.paused_until > this.now) {
      this.queue.push(node.paused_until, () => this.runAwake(node, incarnation, run));
      return;
    }
    run();
    this.observe(node);
  }

  /** A save that reaches the disk model after a simulated fsync, unless the node crashes first. */
  private save(
    node: SimNode,
    hard_state: HardState | null,
    entries: EntriesToPersist | null,
    done: (error: Error | null) => void,
  ): void {
    const incarnation = node.incarnation;
    const { fsync_min_ms, fsync_max_ms } = this.params;
    const fsync_ms = fsync_min_ms + this.rng.float() * (fsync_max_ms - fsync_min_ms);
    this.schedule(fsync_ms, () =>
      this.runAwake(node, incarnation, () => {
        this.writeDisk(node, hard_state, entries);
        done(null);
      }),
    );
  }

  private writeDisk(
    node: SimNode,
    hard_state: HardState | null,
    saved: EntriesToPersist | null,
  ): void {
    if (saved !== null) {
      const { first_index, entries } = saved;
      node.disk.entries.length = Math.min(node.disk.entries.length, first_index - 1);
      if (node.disk.entries.length !== first_index - 1) {
        throw new SafetyViolation(
          `node ${node.id}: persisting from ${first_index} leaves a gap after ${node.disk.entries.length}`,
        );
      }
      node.disk.entries.push(...entries);
    }
    if (hard_state !== null) {
      const before = node.disk.hard_state;
      if (hard_state.term < before.term)
        throw new SafetyViolation(
          `node ${node.id}: persisted term went back ${before.term} → ${hard_state.term}`,
        );
      if (hard_state.commit < before.commit) {
        throw new SafetyViolation(
          `node ${node.id}: persisted commit went back ${before.commit} → ${hard_state.commit}`,
        );
      }
      if (
        hard_state.term === before.term &&
        before.vote !== NO_NODE &&
        hard_state.vote !== before.vote
      ) {
        throw new SafetyViolation(
          `node ${node.id}: voted twice in term ${before.term} (${before.vote}, ${hard_state.vote})`,
        );
      }
      node.disk.hard_state = { ...hard_state };
    }
  }

  // ------------------------------------------------------------ invariants

  /** Checks run after every step of `node`. */
  private observe(node: SimNode): void {
    const core = node.core;
    const term = core.current_term;
    if (core.current_role === 'leader' && node.was_leader_in_term !== term) {
      node.was_leader_in_term = term;
      const other = this.leader_of_term.get(term);
      if (other !== undefined && other !== node.id) {
        throw new SafetyViolation(
          `Election Safety: nodes ${other} and ${node.id} are both leader in term ${term}`,
        );
      }
      this.leader_of_term.set(term, node.id);
      this.checkLeaderCompleteness(node);
      if (this.on_leader_elected !== null) this.on_leader_elected(node.id);
    }
    const commit = core.commit_index;
    if (commit < node.commit_seen)
      throw new SafetyViolation(
        `node ${node.id}: commit index went back ${node.commit_seen} → ${commit}`,
      );
    node.commit_seen = commit;
    if (commit > node.commit_recorded) {
      const log = core.logEntries();
      for (let index = node.commit_recorded + 1; index <= commit; index++)
        this.recordCommitted(node, index, log[index - 1]!);
      node.commit_recorded = commit;
      if (core.current_role === 'leader' && this.on_leader_commit !== null)
        this.on_leader_commit(node.id);
    }
  }

  private recordCommitted(node: SimNode, index: number, entry: LogEntry): void {
    const known = this.committed[index - 1];
    if (known === undefined) {
      if (this.committed.length !== index - 1)
        throw new SafetyViolation(`committed log gap at ${index}`);
      this.committed.push(entry);
      this.committed_in_term.push(node.core.current_term);
      return;
    }
    if (!sameEntry(known, entry)) {
      throw new SafetyViolation(
        `State Machine Safety: node ${node.id} committed (term ${entry.term}) at index ${index} where (term ${known.term}) was committed`,
      );
    }
  }

  /** Figure 3: an entry committed in term T is in the log of every leader of a term after T. */
  private checkLeaderCompleteness(node: SimNode): void {
    const log = node.core.logEntries();
    const term = node.core.current_term;
    for (let index = 1; index <= this.committed.length; index++) {
      // A stale leader of an older term may still win its old election late (its votes were
      // delayed): not covered.
      if (this.committed_in_term[index - 1]! >= term) continue;
      const mine = log[index - 1];
      if (mine === undefined || !sameEntry(mine, this.committed[index - 1]!)) {
        throw new SafetyViolation(
          `Leader Completeness: node ${node.id}, leader of term ${node.core.current_term}, lacks committed entry ${index}`,
        );
      }
    }
  }

  private checkApplied(node: SimNode, ready: Ready): void {
    for (const { index, entry } of ready.committed) {
      if (index !== node.applied_seen + 1)
        throw new SafetyViolation(`node ${node.id}: applied ${index} after ${node.applied_seen}`);
      node.applied_seen = index;
      const known = this.committed[index - 1];
      if (known === undefined || !sameEntry(known, entry)) {
        throw new SafetyViolation(
          `State Machine Safety: node ${node.id} applied a different command at index ${index}`,
        );
      }
    }
  }

  /**
   * Log Matching: if two logs hold an entry with the same index and term, they are identical up to
   * it.
   */
  checkLogMatching(): void {
    const logs = this.nodes.map((n) => n.core.logEntries());
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const la = logs[a]!;
        const lb = logs[b]!;
        let index = Math.min(la.length, lb.length);
        while (index > 0 && la[index - 1]!.term !== lb[index - 1]!.term) index--;
        for (let i = index; i > 0; i--) {
          if (!sameEntry(la[i - 1]!, lb[i - 1]!)) {
            throw new SafetyViolation(
              `Log Matching: nodes ${a + 1} and ${b + 1} agree at ${index} but differ at ${i}`,
            );
          }
        }
      }
    }
  }

  // ------------------------------------------------------------ clients

  startClients(): void {
    for (let id = 0; id < this.params.clients; id++) {
      const client: ClientState = {
        id,
        busy: false,
        leader_hint: 1 + this.rng.int(this.params.nodes),
        op_counter: 0,
        stopped: false,
      };
      this.clients.push(client);
      this.schedule(this.rng.int(20), () => this.clientStep(client));
    }
  }

  stopClients(): void {
    for (const client of this.clients) client.stopped = true;
  }

  clientsIdle(): boolean {
    return this.clients.every((c) => !c.busy);
  }

  private clientStep(client: ClientState): void {
    if (client.stopped) return;
    const key = `k${this.rng.int(this.params.keys)}`;
    const roll = this.rng.float();
    const input: KvInput =
      roll < 0.4
        ? { kind: 'get', key }
        : roll < 0.85
          ? { kind: 'set', key, value: `v${++this.value_counter}` }
          : { kind: 'del', key };
    this.invoke(client, input, () =>
      this.schedule(1 + this.rng.int(15), () => this.clientStep(client)),
    );
  }

  /** Sends one operation through a node's Replica, as a real client would through a connection. */
  invoke(client: ClientState, input: KvInput, next: () => void): void {
    // Clients talk to any node now and then, as real clients of a proxying cluster do.
    if (this.rng.float() < 0.3) client.leader_hint = 1 + this.rng.int(this.params.nodes);
    const target = this.nodes[client.leader_hint - 1]!;
    client.op_counter++;
    if (!target.alive) {
      // Connection refused: certainly not executed.
      client.leader_hint = 1 + this.rng.int(this.params.nodes);
      this.schedule(5, next);
      return;
    }
    client.busy = true;
    const call_time = this.now;
    let settled = false;
    let handle: number | null = null;
    const incarnation = target.incarnation;
    const finish = (output: KvOutput | null): void => {
      if (settled) return;
      settled = true;
      client.busy = false;
      if (output !== null) {
        this.history.push({
          client_id: client.id,
          input,
          output,
          call_time,
          return_time: output.kind === 'unknown' ? Infinity : this.now,
        });
      }
      next();
    };
    const onRefused = (leader_id: NodeId): void => {
      client.leader_hint = leader_id !== NO_NODE ? leader_id : 1 + this.rng.int(this.params.nodes);
    };
    this.schedule(this.params.client_timeout_ms, () => {
      if (settled) return;
      if (handle !== null && target.incarnation === incarnation) {
        if (input.kind === 'get') target.replica.cancelRead(handle);
        else target.replica.cancelWrite(handle);
      }
      client.leader_hint = 1 + this.rng.int(this.params.nodes);
      // A write that may have reached the log has an unknown outcome; a read has no effect either
      // way.
      finish(input.kind === 'get' ? null : { kind: 'unknown' });
    });
    // The request reaches the node after a network delay; its reply comes back after another.
    const hop = (): number =>
      this.params.delay_min_ms +
      this.rng.float() * (this.params.delay_max_ms - this.params.delay_min_ms);
    const arrive = (): void => {
      if (settled || !target.alive || target.incarnation !== incarnation) return;
      if (target.paused_until > this.now) {
        this.queue.push(this.resumeTime(target, `client${client.id}`), arrive); // a paused process reads its sockets, in any order, when it resumes
        return;
      }
      if (input.kind === 'get') {
        handle = target.replica.read(Buffer.from(input.key), (outcome: ReadOutcome) => {
          this.schedule(hop(), () => {
            if (outcome.ok)
              finish({
                kind: 'get',
                value:
                  outcome.value === null ? null : outcome.value.map((w) => w.toString()).join(' '),
              });
            else {
              onRefused(outcome.leader_id);
              finish(null);
            }
          });
        });
      } else {
        const command =
          input.kind === 'set'
            ? { op: 'set' as const, key: Buffer.from(input.key), words: [Buffer.from(input.value)] }
            : { op: 'del' as const, keys: [Buffer.from(input.key)] };
        handle = target.replica.write(command, (outcome: WriteOutcome) => {
          this.schedule(hop(), () => {
            if (outcome.ok) {
              if (input.kind === 'set') finish({ kind: 'set' });
              else
                finish({
                  kind: 'del',
                  count: outcome.result.kind === 'integer' ? outcome.result.value : -1,
                });
            } else {
              onRefused(outcome.leader_id);
              finish(null); // refused or dropped: certainly not executed
            }
          });
        });
      }
      target.driver.schedule();
    };
    this.schedule(hop(), arrive);
  }

  /**
   * Proposes `count` writes straight to node `id` (no client history); returns how many it
   * accepted.
   */
  proposeMany(id: NodeId, count: number, prefix: string): number {
    const node = this.node(id);
    let accepted = 0;
    for (let i = 0; i < count; i++) {
      const handle = node.replica.write(
        {
          op: 'set',
          key: Buffer.from(`${prefix}${i % 7}`),
          words: [Buffer.from(`${prefix}-${i}`)],
        },
        () => undefined,
      );
      if (handle !== null) accepted++;
    }
    node.driver.schedule();
    return accepted;
  }

  /**
   * Submits one write through the current leader and reports whether it committed within the
   * deadline.
   */
  async writeThroughLeader(key: string, value: string, timeout_ms: number): Promise<boolean> {
    const leader = this.leader();
    if (leader === null) return false;
    let done = false;
    let ok = false;
    leader.replica.write(
      { op: 'set', key: Buffer.from(key), words: [Buffer.from(value)] },
      (outcome) => {
        done = true;
        ok = outcome.ok;
      },
    );
    leader.driver.schedule();
    await this.runUntil(() => done, timeout_ms);
    return ok;
  }
}

function sameEntry(a: LogEntry, b: LogEntry): boolean {
  return (
    a.term === b.term &&
    Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
      Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
    )
  );
}

function roundTrip(message: RaftMessage): RaftMessage {
  const decoded = new FrameDecoder().push(encodeMessage(message));
  if (decoded.length !== 1) throw new Error('codec round trip did not yield one message');
  return decoded[0]!;
}
