import type { NodeAddress, NodeConfig } from '../config/config';
import type { ClientCommand } from '../kv/client_command';
import { parseClientCommand } from '../kv/client_command';
import { RaftCore } from '../raft/core';
import { invalidEntryReason } from './entry_validation';
import { recoverPoisonedTerm } from './term_recovery';
import type { HandshakeSettings } from './peer_handshake';
import { clusterFingerprint, describeMembers, loadClusterSecret } from '../config/fingerprint';
import { NO_NODE, type HardState, type NodeId, type Ready, type SoftState } from '../raft/types';
import { Replica, type ReadOutcome, type WriteOutcome } from '../replica/replica';
import {
  encodeBulkArray,
  encodeBulkString,
  encodeError,
  encodeInteger,
  REPLY_NIL,
  REPLY_OK,
  REPLY_PONG,
} from '../resp/reply';
import { RaftStorage } from '../storage';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import { SeededRandom } from '../util/prng';
import { ClientListener, type ClientConnectionInfo, type ClientReply } from './client_listener';
import { LeaderForwarder, NOT_LEADER_PREFIX, PROXY_HELLO } from './forwarder';
import { formatInfo } from './info';
import { PeerTransport, type PeerTransportOptions } from './peer_transport';

const PROXIED_TAG = 'proxied';
const EMPTY_ARRAY_REPLY = Buffer.from('*0\r\n', 'latin1');
const NOT_LEADER_REPLY = encodeError(`${NOT_LEADER_PREFIX.slice(1)}`);
/** Readies carried out back to back before yielding to the event loop. */
const READIES_PER_TURN_MAX = 8;
/** How often a request waiting for a leader re-checks when nothing else wakes it. */
const LEADER_RECHECK_MS = 50;
const OPEN_RAFT_PORT_WARNING =
  'raft port is unauthenticated (no cluster_secret_file): anyone who can reach it can steer ' +
  'elections and write to the log';

type Dispatchable = Extract<ClientCommand, { kind: 'write' } | { kind: 'read' }>;

/**
 * Per-connection order, as Redis executes a pipeline: a read waits for the
 * writes sent before it on the same connection, a write waits for the reads
 * sent before it. Runs of the same kind still go concurrently (writes are
 * proposed in order; reads share heartbeat rounds).
 */
interface ConnectionOrder {
  writes: Promise<unknown> | null;
  reads: Promise<unknown> | null;
}

/**
 * One node of the cluster: the event-loop glue around the pure Raft core. It
 * owns the disk (WAL), the two listeners, the peer links and the timer, and
 * carries out each Ready in the order the core demands: persist (fsync, off
 * the event loop), then send, then apply and answer clients.
 */
export class KvNode {
  private readonly config: NodeConfig;
  private readonly logger: Logger;
  private storage: RaftStorage | null = null;
  private core: RaftCore | null = null;
  private replica: Replica | null = null;
  private transport: PeerTransport | null = null;
  private listener: ClientListener | null = null;
  private readonly forwarder: LeaderForwarder;
  private tick_timer: NodeJS.Timeout | null = null;
  private pump_scheduled = false;
  private persisting = false;
  private persisted_last_index = 0;
  /** Term and vote (and the commit index) last made durable. */
  private durable_hard_state: HardState = { term: 0, vote: NO_NODE, commit: 0 };
  /** A newer commit index not yet written; it goes out with the next save. */
  private deferred_hard_state: HardState | null = null;
  private leader_waiters = new Set<() => void>();
  private soft: SoftState = { role: 'follower', term: 0, leader_id: NO_NODE };
  private fatal_error: Error | null = null;
  private readonly connection_order = new WeakMap<ClientConnectionInfo, ConnectionOrder>();
  private stopping = false;
  /** Stop has handed leadership over: no more Readies are taken, only the running save finishes. */
  private draining = false;
  /**
   * Called once if the node hits an error it cannot continue from (the process should exit
   * non-zero).
   */
  on_fatal: (error: Error) => void = () => undefined;

  constructor(config: NodeConfig, logger: Logger) {
    this.config = config;
    this.logger = logger;
    this.forwarder = new LeaderForwarder(logger);
  }

  async start(): Promise<void> {
    const { storage, restored, recovery } = await RaftStorage.open(this.config.data_dir);
    this.storage = storage;
    this.persisted_last_index = restored.entries.length;
    this.durable_hard_state = { ...restored.hard_state };
    this.logger.info(
      `recovered ${restored.entries.length} log entries (term ${restored.hard_state.term}, commit ${restored.hard_state.commit}) from ${recovery.records} records in ${recovery.log_file}` +
        (recovery.truncated_tail_bytes > 0
          ? `; truncated a torn tail of ${recovery.truncated_tail_bytes} bytes`
          : ''),
    );
    if (recovery.truncated_tail_bytes > 0)
      this.logger.warn(`truncated a torn WAL tail of ${recovery.truncated_tail_bytes} bytes`);
    const self = this.config.self;
    const recovery_of_term = recoverPoisonedTerm(restored, self.id);
    if (recovery_of_term.note !== null) this.logger.error(recovery_of_term.note);
    this.core = new RaftCore(
      {
        id: self.id,
        voters: this.config.nodes.map((n) => n.id),
        election_ticks: this.config.election_ticks,
        heartbeat_ticks: this.config.heartbeat_ticks,
        // Election jitter only needs to differ between nodes and runs; it is not a secret.
        random: new SeededRandom((Date.now() ^ (process.pid << 8) ^ self.id) >>> 0),
        limits: {
          entry_bytes_max: LIMITS.raft_entry_bytes_max,
          message_entries_bytes_max: LIMITS.raft_message_entries_bytes_max,
          message_entries_max: LIMITS.raft_message_entries_max,
          inflight_messages_max: LIMITS.raft_inflight_messages_max,
          uncommitted_bytes_max: LIMITS.raft_uncommitted_bytes_max,
          pending_reads_max: LIMITS.raft_pending_reads_max,
          committed_entries_per_ready_max: LIMITS.raft_committed_entries_per_ready_max,
        },
        prevote: true,
        check_quorum: true,
      },
      recovery_of_term.restored,
    );
    this.replica = new Replica(this.core);
    this.replica.on_invalid_entry = (index, reason) =>
      this.logger.warn(`committed entry ${index} skipped: ${reason}`);
    try {
      this.transport = new PeerTransport(this.peerTransportOptions(), (from, message) => {
        if (this.stopped()) return;
        this.requireCore().step(from, message);
        this.schedulePump();
      });
      await this.transport.start();
      this.listener = new ClientListener(
        { host: self.host, port: self.client_port, logger: this.logger },
        (args, connection) => this.handleClient(args, connection),
      );
      await this.listener.start();
      if (this.config.cluster_secret_file === null) this.logger.warn(OPEN_RAFT_PORT_WARNING);
    } catch (error) {
      await this.transport?.close();
      await storage.close();
      throw error;
    }
    this.tick_timer = setInterval(() => {
      if (this.stopped()) return;
      this.requireCore().tick();
      this.schedulePump();
    }, this.config.tick_ms);
    this.schedulePump(); // replay committed entries into the state machine
    this.logger.info(
      `node ${self.id} serving clients on ${self.host}:${self.client_port}, raft on ${self.raft_port}`,
    );
  }

  /**
   * Graceful stop: no new clients, hand leadership over (clients of this
   * node keep being served meanwhile, by forwarding once another node
   * leads), then stop taking Readies, let the running save finish, write a
   * pending commit index, close everything.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.listener?.stopAccepting();
    const core = this.core;
    if (
      core !== null &&
      core.current_role === 'leader' &&
      this.config.peers.length > 0 &&
      this.fatal_error === null
    ) {
      const target = core.status().peers.reduce((best, p) => (p.match > best.match ? p : best));
      if (core.transferLeadership(target.id)) {
        this.logger.info(`handing leadership to node ${target.id} before exit`);
        this.schedulePump();
        await this.waitFor(
          () => core.current_role !== 'leader',
          2 * this.config.election_ticks * this.config.tick_ms,
        );
      }
    }
    this.draining = true;
    if (this.tick_timer !== null) clearInterval(this.tick_timer);
    await this.transport?.close();
    await this.waitFor(() => !this.persisting, 10_000);
    if (
      !this.persisting &&
      this.fatal_error === null &&
      this.deferred_hard_state !== null &&
      this.storage !== null
    ) {
      await this.storage
        .save(this.deferred_hard_state, null)
        .catch((error: Error) => this.logger.warn(`final save: ${error.message}`));
    }
    await this.listener?.close();
    this.forwarder.close();
    await this.storage?.close();
    for (const wake of this.leader_waiters) wake();
  }

  /** For INFO and tests. */
  info(section: string | null): string {
    const core = this.requireCore();
    return formatInfo(section, {
      config: this.config,
      status: core.status(),
      last_applied: this.requireReplica().state.last_applied,
      key_count: this.requireReplica().state.key_count,
      data_bytes: this.requireReplica().state.data_bytes,
      pending_writes: this.requireReplica().pending_writes,
      pending_reads: this.requireReplica().pending_reads,
      peers: this.transport?.status() ?? [],
      storage: this.storage?.stats() ?? null,
      connected_clients: this.listener?.connection_count ?? 0,
    });
  }

  // ------------------------------------------------------------------ the Ready loop

  private schedulePump(): void {
    if (this.pump_scheduled) return;
    this.pump_scheduled = true;
    // setImmediate runs after this turn's I/O callbacks: every request that arrived together shares
    // one Ready and one fsync.
    setImmediate(() => {
      this.pump_scheduled = false;
      this.pump();
    });
  }

  /**
   * Carries out Readies one at a time. Three liberties the Ready contract
   * allows keep the commit path to about one fsync:
   * - committed entries are applied, and clients answered, as soon as the
   *   Ready is taken (they are already durable on a majority);
   * - a leader whose term and vote are already on disk sends its messages
   *   before its own fsync (thesis §10.2.1): it counts its own copy of an
   *   entry only once advance() reports it durable;
   * - a change of the commit index alone is not fsync'd by itself: it rides
   *   on the next save (a node restarted with an older commit index learns
   *   the newer one from the leader; nothing acknowledged depends on it).
   */
  private pump(): void {
    const core = this.core;
    const storage = this.storage;
    if (core === null || storage === null || this.fatal_error !== null || this.draining) return;
    let readies = 0;
    while (!this.persisting && core.hasReady()) {
      if (++readies > READIES_PER_TURN_MAX) {
        this.schedulePump(); // let clients and peers in between (a long log replays in many turns)
        return;
      }
      const ready = core.ready();
      if (ready === null) break;
      if (ready.soft_state !== null) this.onSoftState(ready.soft_state);
      if (ready.entries !== null && ready.entries.first_index <= this.persisted_last_index) {
        this.logger.info(
          `log truncated from index ${ready.entries.first_index} (conflict with the leader's log)`,
        );
      }
      this.requireReplica().applyReady(ready);
      let hard_state = ready.hard_state;
      const term_and_vote_durable =
        hard_state === null ||
        (hard_state.term === this.durable_hard_state.term &&
          hard_state.vote === this.durable_hard_state.vote);
      if (hard_state !== null && term_and_vote_durable && ready.entries === null) {
        this.deferred_hard_state = hard_state; // commit index only
        hard_state = null;
      }
      if (hard_state === null && ready.entries === null) {
        this.sendMessages(ready);
        core.advance(ready);
        continue;
      }
      if (hard_state === null) hard_state = this.deferred_hard_state;
      this.deferred_hard_state = null;
      const sent_early = term_and_vote_durable && core.current_role === 'leader';
      if (sent_early) this.sendMessages(ready);
      this.persisting = true;
      const saved = hard_state;
      storage.save(saved, ready.entries).then(
        () => {
          this.persisting = false;
          if (saved !== null) this.durable_hard_state = saved;
          if (ready.entries !== null)
            this.persisted_last_index =
              ready.entries.first_index + ready.entries.entries.length - 1;
          if (!sent_early) this.sendMessages(ready);
          core.advance(ready);
          if (!this.draining) this.pump();
        },
        (error: Error) => this.fail(error),
      );
    }
  }

  private sendMessages(ready: Ready): void {
    const transport = this.transport;
    if (transport !== null)
      for (const { to, message } of ready.messages) transport.send(to, message);
  }

  private onSoftState(soft: SoftState): void {
    const previous = this.soft;
    this.soft = soft;
    if (previous.role !== soft.role || previous.term !== soft.term) {
      this.logger.info(
        `role ${soft.role} in term ${soft.term}${soft.leader_id !== NO_NODE ? ` (leader ${soft.leader_id})` : ''}`,
      );
    }
    if (previous.leader_id !== soft.leader_id) {
      const leader = this.addressOf(soft.leader_id);
      this.forwarder.retainOnly(leader === null ? null : `${leader.host}:${leader.client_port}`);
      for (const wake of [...this.leader_waiters]) wake();
    }
  }

  private fail(error: Error): void {
    if (this.fatal_error !== null) return;
    this.fatal_error = error;
    this.logger.error(`stopping: ${error.message}`);
    this.on_fatal(error);
  }

  // ------------------------------------------------------------------ clients

  private handleClient(
    args: Buffer[],
    connection: ClientConnectionInfo,
  ): ClientReply | Promise<ClientReply> {
    const name = args[0];
    if (
      name !== undefined &&
      name.length === PROXY_HELLO.length &&
      name.toString('latin1').toUpperCase() === PROXY_HELLO
    ) {
      connection.tags.add(PROXIED_TAG);
      return { reply: REPLY_OK };
    }
    const command = parseClientCommand(args);
    switch (command.kind) {
      case 'error':
        return { reply: encodeError(command.message) };
      case 'ping':
        return { reply: command.message === null ? REPLY_PONG : encodeBulkString(command.message) };
      case 'quit':
        return { reply: REPLY_OK, close_after: true };
      case 'command_docs':
        return { reply: EMPTY_ARRAY_REPLY };
      case 'info':
        return { reply: encodeBulkString(this.info(command.section)) };
      case 'read':
      case 'write':
        if (this.draining) {
          return {
            reply: connection.tags.has(PROXIED_TAG)
              ? NOT_LEADER_REPLY
              : encodeError('TRYAGAIN shutting down; retry on another node'),
          };
        }
        return this.inConnectionOrder(command, connection, () =>
          this.dispatch(command, args, connection),
        ).then((reply) => ({ reply }));
    }
  }

  private inConnectionOrder(
    command: Dispatchable,
    connection: ClientConnectionInfo,
    run: () => Promise<Buffer>,
  ): Promise<Buffer> {
    let order = this.connection_order.get(connection);
    if (order === undefined) {
      order = { writes: null, reads: null };
      this.connection_order.set(connection, order);
    }
    const barrier = command.kind === 'read' ? order.writes : order.reads;
    const result = barrier === null ? run() : barrier.then(run, run);
    const state = order;
    const kind = command.kind === 'read' ? 'reads' : 'writes';
    const pending = state[kind] === null ? result : Promise.all([state[kind], result]);
    state[kind] = pending;
    const clear = (): void => {
      if (state[kind] === pending) state[kind] = null;
    };
    pending.then(clear, clear);
    return result;
  }

  /**
   * Serves a read or write wherever the leader is: here, by forwarding, or
   * by a MOVED redirect. Waits a bounded time for a leader to be known.
   */
  private async dispatch(
    command: Dispatchable,
    args: Buffer[],
    connection: ClientConnectionInfo,
  ): Promise<Buffer> {
    const started_ms = Date.now();
    const deadline_ms = started_ms + this.config.request_timeout_ms;
    let no_leader_since_ms: number | null = null;
    for (;;) {
      if (this.stopped() || this.draining)
        return encodeError('TRYAGAIN shutting down; retry on another node');
      const core = this.requireCore();
      if (core.current_role === 'leader') {
        const local = await this.executeLocally(command, deadline_ms);
        if (local !== null) return local;
      } else if (connection.tags.has(PROXIED_TAG)) {
        return NOT_LEADER_REPLY; // the forwarding node retries; never forward twice
      } else {
        const leader = this.addressOf(core.status().leader_id);
        if (leader !== null) {
          no_leader_since_ms = null;
          if (this.config.client_redirect === 'moved')
            return encodeError(`MOVED 0 ${leader.host}:${leader.client_port}`);
          const result = await this.forwarder.forward(
            leader.host,
            leader.client_port,
            args,
            deadline_ms,
          );
          if (result.kind === 'reply' && !isNotLeaderReply(result.bytes)) return result.bytes;
          if (result.kind === 'unknown' && command.kind === 'write') {
            return encodeError(
              'TIMEOUT outcome unknown: the link to the leader failed after the write was sent',
            );
          }
        }
      }
      const now_ms = Date.now();
      if (now_ms >= deadline_ms) {
        // Every attempt was refused or never sent: certainly not executed, so not a TIMEOUT
        // (outcome unknown).
        return encodeError(
          `TRYAGAIN request not served within ${this.config.request_timeout_ms} ms; it was not executed`,
        );
      }
      if (this.requireCore().status().leader_id === NO_NODE) {
        no_leader_since_ms ??= now_ms;
        if (now_ms - no_leader_since_ms >= this.config.no_leader_timeout_ms) {
          return encodeError(
            `CLUSTERDOWN no leader elected within ${this.config.no_leader_timeout_ms} ms; retry later`,
          );
        }
      }
      await this.waitForLeaderChange(LEADER_RECHECK_MS);
    }
  }

  /** Runs the command on this node as leader; null means "leadership moved, dispatch again". */
  private executeLocally(command: Dispatchable, deadline_ms: number): Promise<Buffer | null> {
    const replica = this.requireReplica();
    return new Promise((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | null = null;
      const settle = (reply: Buffer | null): void => {
        if (settled) return;
        settled = true;
        if (timer !== null) clearTimeout(timer);
        resolve(reply);
      };
      let handle: number | null;
      if (command.kind === 'write') {
        handle = replica.write(command.command, (outcome) => settle(writeReply(outcome)));
      } else {
        handle = replica.read(command.key, (outcome) => settle(readReply(outcome)));
      }
      if (settled || handle === null) return;
      this.schedulePump();
      const submitted = handle;
      timer = setTimeout(
        () => {
          if (command.kind === 'write') {
            replica.cancelWrite(submitted);
            settle(
              encodeError(
                `TIMEOUT outcome unknown: the write was not confirmed within ${this.config.request_timeout_ms} ms`,
              ),
            );
          } else {
            replica.cancelRead(submitted);
            settle(
              encodeError(`TIMEOUT read not confirmed within ${this.config.request_timeout_ms} ms`),
            );
          }
        },
        Math.max(deadline_ms - Date.now(), 1),
      );
    });
  }

  private waitForLeaderChange(timeout_ms: number): Promise<void> {
    if (this.leader_waiters.size >= LIMITS.leader_waiters_max)
      return new Promise((resolve) => setTimeout(resolve, timeout_ms));
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.leader_waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeout_ms);
      this.leader_waiters.add(wake);
    });
  }

  private waitFor(condition: () => boolean, timeout_ms: number): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    return new Promise((resolve) => {
      const check = (): void => {
        if (condition() || Date.now() >= deadline) resolve();
        else setTimeout(check, 10);
      };
      check();
    });
  }

  // ------------------------------------------------------------------ helpers

  private stopped(): boolean {
    return this.fatal_error !== null;
  }

  private addressOf(id: NodeId): NodeAddress | null {
    if (id === NO_NODE) return null;
    return this.config.nodes.find((n) => n.id === id) ?? null;
  }

  private requireCore(): RaftCore {
    if (this.core === null) throw new Error('node not started');
    return this.core;
  }

  private peerTransportOptions(): PeerTransportOptions {
    const self = this.config.self;
    return {
      self_id: self.id,
      listen_host: self.host,
      listen_port: self.raft_port,
      peers: this.config.peers.map((p) => ({ id: p.id, host: p.host, raft_port: p.raft_port })),
      logger: this.logger,
      validate_message: invalidEntryReason,
      handshake: this.handshakeSettings(),
    };
  }

  /** Fingerprint and secret for the peer handshake. */
  private handshakeSettings(): HandshakeSettings {
    const { config } = this;
    const secret =
      config.cluster_secret_file === null ? null : loadClusterSecret(config.cluster_secret_file);
    return {
      self_id: config.self.id,
      fingerprint: clusterFingerprint(config.nodes, config.cluster_name),
      members: describeMembers(config.nodes),
      secret,
      peer_ids: new Set(config.peers.map((peer) => peer.id)),
    };
  }

  private requireReplica(): Replica {
    if (this.replica === null) throw new Error('node not started');
    return this.replica;
  }
}

function writeReply(outcome: WriteOutcome): Buffer | null {
  if (outcome.ok) {
    const result = outcome.result;
    return result.kind === 'integer' ? encodeInteger(result.value) : REPLY_OK;
  }
  switch (outcome.error) {
    case 'not_leader':
      return null;
    case 'uncommitted_full':
      return encodeError('TRYAGAIN too many uncommitted writes; retry shortly');
    case 'transferring':
      return encodeError('TRYAGAIN leadership transfer in progress; retry shortly');
    case 'too_large':
      return encodeError(
        `ERR command too large (the limit is ${LIMITS.raft_entry_bytes_max} bytes)`,
      );
    case 'dropped':
      return encodeError(
        'TRYAGAIN write not committed: leadership changed before it was replicated; it was not executed',
      );
  }
}

function readReply(outcome: ReadOutcome): Buffer | null {
  if (outcome.ok) return outcome.value === null ? REPLY_NIL : encodeBulkArray(outcome.value);
  if (outcome.error === 'too_many_reads')
    return encodeError('TRYAGAIN too many reads waiting; retry shortly');
  return null; // not leader any more: dispatch again
}

function isNotLeaderReply(bytes: Buffer): boolean {
  return (
    bytes.length >= NOT_LEADER_PREFIX.length &&
    bytes.toString('latin1', 0, NOT_LEADER_PREFIX.length) === NOT_LEADER_PREFIX
  );
}
