/**
 * A deterministic simulator for whole Raft clusters: N pure cores on a
 * simulated network and disk in virtual time, every choice drawn from one
 * seed (TigerBeetle's VOPR is the model). After every step it checks the
 * safety properties of Figure 3 of the Raft paper; clients record a history
 * that the linearizability checker judges at the end.
 */
import type { NodeId, RaftFaults, Ready } from '../../src/raft/types';
import type { DriverFaults } from '../../src/driver/ready_driver';
import { NO_NODE } from '../../src/raft/types';
import { isResponse, type LogEntry, type RaftMessage } from '../../src/raft/protocol';
import { encodeMessage, FrameDecoder } from '../../src/wire/codec';
import type { ReadOutcome, WriteOutcome } from '../../src/replica/replica';
import { SeededRandom } from '../../src/util/prng';
import type { FaultyDiskOptions } from '../support/faulty_disk';
import { EventQueue } from './event_queue';
import type { HistoryOperation, KvInput, KvOutput } from './linearizability';
import { KvStateMachine } from '../../src/kv/state_machine';
import { MembershipChecker } from './membership_nemesis';
import { type Disk, SafetyViolation, type SimHost, SimNode, type StorageEvent } from './sim_node';

export { type Disk, SafetyViolation, SimNode };

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
  /** Disk faults: power loss with torn writes at crashes, failed fsyncs, corruption at rest. */
  disk_faults: boolean;
  /** Share of crashes that are power losses (unsynced writes lost) rather than kill -9. */
  power_loss_probability: number;
  /** At a power loss, the chance that some unsynced writes happen to survive anyway. */
  keep_unsynced_probability: number;
  /** The driver's snapshot threshold in applied entries (0: no snapshots, no compaction). */
  snapshot_entries?: number;
  /** InstallSnapshot chunk size (small, so transfers take many chunks); default the server's. */
  snapshot_chunk_bytes?: number;
  /**
   * Nodes that start outside the cluster (ids after `nodes`, no bootstrap configuration): the
   * membership nemesis adds them as learners, promotes them, removes members (0: none).
   */
  spare_nodes?: number;
  /** The nemesis also changes the membership (see membership_nemesis.ts). */
  membership_changes?: boolean;
  /** Leaders promote caught-up learners themselves (the server's way); the nemesis then doesn't. */
  auto_promote_learners?: boolean;
}

interface ClientState {
  id: number;
  busy: boolean;
  leader_hint: NodeId;
  op_counter: number;
  stopped: boolean;
}

export class Simulation implements SimHost {
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
  readonly storage_events = new Map<StorageEvent, number>();
  /** AppendEntries rejections seen by leaders (for fast-backtracking scenarios). */
  append_rejections = 0;
  private value_counter = 0;
  /** The membership invariants (single-server steps in the committed log, one change at a time). */
  readonly membership: MembershipChecker;
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
    this.membership = new MembershipChecker(params.nodes);
    for (let id = 1; id <= params.nodes + (params.spare_nodes ?? 0); id++) {
      const node = new SimNode(id, this, this.diskOptions());
      const disk = initial.disks?.get(id);
      if (disk !== undefined) {
        node.installDisk(disk);
        this.recordInitiallyCommitted(disk);
      }
      this.nodes.push(node);
    }
    for (const node of this.nodes) if (!(initial.down ?? []).includes(node.id)) node.start();
  }

  private recordInitiallyCommitted(disk: Disk): void {
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

  /** The fault model of every node's disk, from the run's parameters. */
  private diskOptions(): Partial<FaultyDiskOptions> {
    const p = this.params;
    return {
      write_latency: { min_ms: 0, max_ms: p.fsync_min_ms },
      datasync_latency: { min_ms: p.fsync_min_ms, max_ms: p.fsync_max_ms },
      read_latency: { min_ms: 0, max_ms: 0.2 },
      metadata_latency: { min_ms: 0, max_ms: 0.5 },
      datasync_failure_probability: p.disk_faults ? 0.002 : 0,
      crash_keep_unsynced_probability: p.keep_unsynced_probability,
      torn_write_probability: p.disk_faults ? 0.5 : 0,
    };
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

  /** kill -9 or, with disk faults on, sometimes power loss (unsynced writes lost, torn tail). */
  crash(id: NodeId): void {
    const node = this.node(id);
    node.crash(this.rng.float() < this.params.power_loss_probability);
  }

  restart(id: NodeId): void {
    this.node(id).start();
  }

  /**
   * Corruption at rest on a down node (a byte of a durable WAL record before the last): its next
   * start must refuse, and it stays down for good. At most a minority is ever lost this way.
   */
  corruptAtRest(id: NodeId): boolean {
    // A node lost for good is a voter lost for good: with changing configurations, not modelled.
    if (this.params.membership_changes === true) return false;
    const lost = this.nodes.filter((n) => n.expect_refusal).length;
    if (lost + 1 > Math.floor((this.nodes.length - 1) / 2)) return false;
    return this.node(id).corruptAtRest();
  }

  noteIoSettled(): void {
    this.microtasks_pending = true;
  }

  count(event: StorageEvent): void {
    this.storage_events.set(event, (this.storage_events.get(event) ?? 0) + 1);
  }

  reportFailure(error: Error): void {
    this.failure ??= error;
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

  transmit(from: NodeId, to: NodeId, message: RaftMessage): void {
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

  // ------------------------------------------------------------ invariants

  /** Checks run after every step of `node`. */
  observe(node: SimNode): void {
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
      const first = core.first_log_index;
      // Entries a snapshot covers are checked when a node restarts from it (see SimNode.boot).
      for (let index = Math.max(node.commit_recorded + 1, first); index <= commit; index++)
        this.recordCommitted(node, index, log[index - first]!);
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
      this.membership.onCommitted(index, entry);
      return;
    }
    if (!sameEntry(known, entry)) {
      throw new SafetyViolation(
        `State Machine Safety: node ${node.id} committed (term ${entry.term}) at index ` +
          `${index} where (term ${known.term}) was committed`,
      );
    }
  }

  /** Figure 3: an entry committed in term T is in the log of every leader of a term after T. */
  private checkLeaderCompleteness(node: SimNode): void {
    const log = node.core.logEntries();
    const first = node.core.first_log_index;
    const term = node.core.current_term;
    for (let index = first; index <= this.committed.length; index++) {
      // A stale leader of an older term may still win its old election late (its votes were
      // delayed): not covered.
      if (this.committed_in_term[index - 1]! >= term) continue;
      const mine = log[index - first];
      if (mine === undefined || !sameEntry(mine, this.committed[index - 1]!)) {
        throw new SafetyViolation(
          `Leader Completeness: node ${node.id}, leader of term ${node.core.current_term}, ` +
            `lacks committed entry ${index}`,
        );
      }
    }
  }

  /**
   * A node restarted from a snapshot at `index`: its state must be exactly what applying the
   * cluster's committed log up to `index` gives.
   */
  checkSnapshotState(node: SimNode, state: KvStateMachine, index: number): void {
    if (this.committed.length < index) {
      throw new SafetyViolation(
        `node ${node.id}: snapshot at ${index} beyond the committed log (${this.committed.length})`,
      );
    }
    const expected = new KvStateMachine();
    for (let i = 1; i <= index; i++) expected.apply(i, this.committed[i - 1]!.data);
    if (!expected.serialize().equals(state.serialize())) {
      throw new SafetyViolation(
        `node ${node.id}: snapshot at ${index} differs from the committed log applied to ${index}`,
      );
    }
  }

  /**
   * A snapshot installed from the leader: it must be the committed log applied to `index`, and a
   * node's applied index never goes back (MIT 6.5840's snapshot tests).
   */
  checkInstalled(node: SimNode, index: number): void {
    this.count('snapshot_installed');
    if (index < node.applied_seen)
      throw new SafetyViolation(
        `node ${node.id}: applied index went back ${node.applied_seen} → ${index} (snapshot)`,
      );
    this.checkSnapshotState(node, node.replica.state, index);
    node.applied_seen = index;
    node.commit_recorded = Math.max(node.commit_recorded, index);
  }

  checkApplied(node: SimNode, ready: Ready): void {
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
    // A node that never finished its first recovery has no log in memory yet: an empty one.
    // Each log starts after its node's snapshot: compare where both still hold entries.
    const logs = this.nodes.map((n) =>
      n.booted ? { first: n.core.first_log_index, entries: n.core.logEntries() } : null,
    );
    for (const node of this.nodes)
      if (node.booted) this.membership.checkNode(node.id, node.core, this.committed.length);
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const la = logs[a];
        const lb = logs[b];
        if (la === null || la === undefined || lb === null || lb === undefined) continue;
        const at = (log: typeof la, index: number): LogEntry => log.entries[index - log.first]!;
        const low = Math.max(la.first, lb.first);
        let index = Math.min(la.first + la.entries.length, lb.first + lb.entries.length) - 1;
        while (index >= low && at(la, index).term !== at(lb, index).term) index--;
        for (let i = index; i >= low; i--) {
          if (!sameEntry(at(la, i), at(lb, i))) {
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
        leader_hint: 1 + this.rng.int(this.nodes.length),
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
    if (this.rng.float() < 0.3) client.leader_hint = this.anyNode();
    const target = this.nodes[client.leader_hint - 1]!;
    client.op_counter++;
    if (!target.alive) {
      client.leader_hint = this.anyNode(); // connection refused: certainly not executed
      this.schedule(5, next);
      return;
    }
    client.busy = true;
    const call_time = this.now;
    let settled = false;
    let handle: number | null = null;
    const incarnation = target.incarnation;
    const finish = (output: KvOutput | null, leader_id: NodeId = NO_NODE): void => {
      if (settled) return;
      settled = true;
      client.busy = false;
      if (output === null) client.leader_hint = leader_id !== NO_NODE ? leader_id : this.anyNode();
      else {
        const return_time = output.kind === 'unknown' ? Infinity : this.now;
        this.history.push({ client_id: client.id, input, output, call_time, return_time });
      }
      next();
    };
    this.schedule(this.params.client_timeout_ms, () => {
      if (settled) return;
      if (handle !== null && target.incarnation === incarnation) {
        if (input.kind === 'get') target.replica.cancelRead(handle);
        else target.replica.cancelWrite(handle);
      }
      client.leader_hint = this.anyNode();
      // A write that may have reached the log has an unknown outcome; a read has none either way.
      finish(input.kind === 'get' ? null : { kind: 'unknown' }, client.leader_hint);
    });
    // The request reaches the node after a network delay; its reply comes back after another.
    const arrive = (): void => {
      if (settled || !target.alive || target.incarnation !== incarnation) return;
      if (target.paused_until > this.now) {
        // A paused process reads its sockets, in any order, when it resumes.
        this.queue.push(this.resumeTime(target, `client${client.id}`), arrive);
        return;
      }
      handle = this.submit(target, input, (output, leader_id) =>
        this.schedule(this.hop(), () => finish(output, leader_id)),
      );
      target.driver.schedule();
    };
    this.schedule(this.hop(), arrive);
  }

  /** Hands one operation to a node; `reply` gets its output, or null and a leader hint. */
  private submit(
    target: SimNode,
    input: KvInput,
    reply: (output: KvOutput | null, leader_id: NodeId) => void,
  ): number | null {
    if (input.kind === 'get') {
      return target.replica.read(Buffer.from(input.key), (outcome: ReadOutcome) => {
        if (!outcome.ok) return reply(null, outcome.leader_id);
        const value = outcome.value === null ? null : outcome.value.map(String).join(' ');
        reply({ kind: 'get', value }, NO_NODE);
      });
    }
    const command =
      input.kind === 'set'
        ? { op: 'set' as const, key: Buffer.from(input.key), words: [Buffer.from(input.value)] }
        : { op: 'del' as const, keys: [Buffer.from(input.key)] };
    return target.replica.write(command, (outcome: WriteOutcome) => {
      // Outcome unknown (a snapshot replaced the log): no answer, the client times out.
      if (!outcome.ok && outcome.error === 'unknown') return;
      if (!outcome.ok) return reply(null, outcome.leader_id); // refused or dropped: not executed
      if (input.kind === 'set') return reply({ kind: 'set' }, NO_NODE);
      const count = outcome.result.kind === 'integer' ? outcome.result.value : -1;
      reply({ kind: 'del', count }, NO_NODE);
    });
  }

  private anyNode(): NodeId {
    return 1 + this.rng.int(this.nodes.length);
  }

  /** One network hop's delay. */
  private hop(): number {
    const { delay_min_ms, delay_max_ms } = this.params;
    return delay_min_ms + this.rng.float() * (delay_max_ms - delay_min_ms);
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
