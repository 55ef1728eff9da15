import { createHash } from 'node:crypto';
import { type NodeAddress, type NodeConfig, RAFT_PORT_OFFSET } from '../config/config';
import type { ClientCommand } from '../kv/client_command';
import { parseClientCommand } from '../kv/client_command';
import { buildRaftConfig } from '../raft/config';
import { packageVersion } from '../ops/config_report';
import { OpsHttpServer } from '../ops/http_server';
import { NodeMetrics } from '../ops/metrics';
import { RaftCore } from '../raft/core';
import { invalidEntryReason } from './entry_validation';
import { recoverPoisonedTerm } from './term_recovery';
import type { HandshakeSettings, IncarnationSettings } from './peer_handshake';
import { clusterFingerprint, describeMembers, loadClusterSecret } from '../config/fingerprint';
import {
  NO_NODE,
  type NodeId,
  type RaftConfig,
  type RaftFaults,
  type SoftState,
} from '../raft/types';
import { type DriverSnapshotStorage, ReadyDriver } from '../driver/ready_driver';
import { snapshotInstaller, snapshotTransferStorage } from '../driver/snapshot_files';
import { KvStateMachine } from '../kv/state_machine';
import type { LoadedSnapshot } from '../storage/snapshot_store';
import { describeIncarnation, openIncarnations } from '../storage/incarnation';
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
import { type OpenResult, openWithTestDisk, RaftStorage, type RecoveryReport } from '../storage';
import { assert } from '../util/assert';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import { SeededRandom } from '../util/prng';
import {
  ClientListener,
  type ClientConnectionInfo,
  type ClientReply,
  DeferredReply,
  type HandlerResult,
  isImmediateReply,
} from './client_listener';
import { ConnectionOrder } from './connection_order';
import { DeadlineList, LocalRequest } from './request_deadlines';
import { loadTlsSettings, type TlsSettings } from './tls_settings';
import { ClientAuth, loadClientPassword, NOAUTH_REPLY, WRONGPASS_TEXT } from './client_auth';
import { PendingWriteBytes } from './pending_writes';
import { ForwardLane, type LaneEntry, LOCAL_TARGET } from './forward_lane';
import {
  encodeForwardedReply,
  FORWARD_COMMAND,
  LeaderForwarder,
  NOT_LEADER_PREFIX,
  PROXY_HELLO,
} from './forwarder';
import { formatInfo, type InfoInputs } from './info';
import { encodeRedisValue } from '../resp/redis_value';
import type { ConnectionHost } from './commands/connection_commands';
import { RedisFrontend } from './commands/redis_frontend';
import type { RedisRequest } from './commands/request';
import { newSession, type Session } from './commands/session';
import { ExpirySweeper } from './commands/expiry_sweeper';
import { type PeerAddress, PeerTransport, type PeerTransportOptions } from './peer_transport';
import { requestJoin } from './join_client';
import { memberOf, type Member } from '../raft/membership';
import { parseHostPort } from '../util/address';
import { type NodeIdentity, readNodeIdentity, writeNodeIdentity } from '../storage/node_identity';
import { NODE_STORAGE_IO } from '../storage/io';
import type { DirLock } from '../storage/lock';
import {
  type MembershipCommandHost,
  nodeCommand,
  nodesCommand,
  RAFT_NODE,
  RAFT_NODES,
} from './membership_commands';

const PROXIED_TAG = 'proxied';
/** `INFO digest`: the applied index and a hash of the state machine, to compare replicas. */
const DIGEST_SECTION = 'digest';
const EMPTY_ARRAY_REPLY = Buffer.from('*0\r\n', 'latin1');
/** Admin command: take a snapshot now. */
const RAFT_SNAPSHOT = 'RAFT.SNAPSHOT';
const NOT_LEADER_REPLY = encodeError(`${NOT_LEADER_PREFIX.slice(1)}`);
/** Reply bytes assumed for a command whose reply does not carry stored values. */
const SMALL_REPLY_BYTES = 64;
/** `$<length>\r\n` and the trailing CRLF around one bulk string, at most. */
const BULK_FRAMING_BYTES = 16;
/** How often a request waiting for a leader re-checks when nothing else wakes it. */
const LEADER_RECHECK_MS = 50;
const STEPPED_DOWN_TEXT =
  'TIMEOUT outcome unknown: this node stopped leading before the write committed';
const OPEN_RAFT_PORT_WARNING =
  'raft port is unauthenticated (no cluster_secret_file): anyone who can reach it can steer ' +
  'elections and write to the log';

type Dispatchable = Extract<ClientCommand, { kind: 'write' } | { kind: 'read' }> | RedisRequest;
/** Commands the seed view serves with the seed's byte-exact replies; the rest go to Redis's. */
/** A stream or request id in RAFT.FWD. */
const DECIMAL_ID = /^[0-9]{1,15}$/;

/** One follower client's requests on a multiplexed link (see handleForwarded). */
interface ForwardStream {
  /** Stands for the client in per-connection order (lanes, read/write order). */
  connection: ClientConnectionInfo;
  unfinished: number;
}

const SEED_COMMANDS = new Set(['set', 'del', 'get', 'ping', 'quit']);

/**
 * start(): created → starting → running. stop(): running → stopping (leadership handed
 * over, clients still served) → draining (no more Readies; the save in flight finishes) →
 * stopped. Any state → failed on an error the node cannot continue from.
 */
type NodeState =
  | 'created'
  | 'starting'
  | 'running'
  | 'stopping'
  | 'draining'
  | 'stopped'
  | 'failed';

/**
 * One node of the cluster: the event-loop glue around the pure Raft core. It
 * owns the disk (WAL), the two listeners, the peer links and the timer; the
 * shared ReadyDriver carries out each Ready in the order the core demands.
 */
export class KvNode {
  /** After start's identity step, `self.id` is the stored id (a joined node's comes from it). */
  private config: NodeConfig;
  /** The cluster fingerprint from the node_id file (node_identity.ts); set at start. */
  private cluster_fingerprint: Buffer | null = null;
  /** The peer set last given to the transport (syncPeers), as text to compare. */
  private peers_key = '';
  private readonly client_password: Buffer | null;
  private readonly logger: Logger;
  private storage: RaftStorage | null = null;
  private core: RaftCore | null = null;
  private replica: Replica | null = null;
  private driver: ReadyDriver | null = null;
  private transport: PeerTransport | null = null;
  private listener: ClientListener | null = null;
  private readonly forwarder: LeaderForwarder;
  /** Forwarders for Redis-view connections speaking RESP2 and RESP3. */
  private readonly redis_forwarders: [LeaderForwarder, LeaderForwarder];
  private readonly sessions = new WeakMap<ClientConnectionInfo, Session>();
  private readonly frontend: RedisFrontend;
  private readonly sweeper: ExpirySweeper;
  private readonly started_ms = Date.now();
  private commands_processed = 0;
  /** Null unless `metrics_port` is set: no hook costs anything then. */
  private readonly metrics: NodeMetrics | null;
  private ops_http: OpsHttpServer | null = null;
  private tick_timer: NodeJS.Timeout | null = null;
  private leader_waiters = new Set<() => void>();
  /** Moved mode: local writes to answer at once when this node stops leading. */
  private readonly step_down_waiters = new Set<() => void>();
  /** Deadlines of the commands executing here as leader, checked every tick. */
  private readonly request_deadlines = new DeadlineList();
  private soft: SoftState = { role: 'follower', term: 0, leader_id: NO_NODE };
  private state: NodeState = 'created';
  /**
   * Election and redial jitter. It only needs to differ between nodes and runs; it is not a
   * secret, and a test can replace it to replay a run.
   */
  private readonly random = new SeededRandom(
    (Date.now() ^ (process.pid << 8) ^ process.hrtime()[1]) >>> 0,
  );
  private readonly connection_order = new WeakMap<ClientConnectionInfo, ConnectionOrder>();
  private readonly forward_lanes = new WeakMap<ClientConnectionInfo, ForwardLane>();
  /** Writes accepted and not yet settled, for reply estimates (see PendingWriteBytes). */
  private readonly pending_writes = new PendingWriteBytes();
  /** On the leader: the client streams of each follower link with unfinished requests. */
  private readonly forward_streams = new WeakMap<
    ClientConnectionInfo,
    Map<string, ForwardStream>
  >();
  /** `client_password_file`: AUTH before anything else (a hook for HELLO ... AUTH too). */
  readonly client_auth: ClientAuth;
  /** Set at start: the handshake's incarnation check (storage/incarnation.ts). */
  private incarnation: IncarnationSettings | null = null;
  /** `tls_*_file`: TLS on both ports, or null. */
  private readonly tls: TlsSettings | null;
  /** Called once on an error the node cannot continue from (the process should exit non-zero). */
  on_fatal: (error: Error) => void = () => undefined;

  constructor(config: NodeConfig, logger: Logger) {
    this.config = config;
    this.logger = logger;
    const client_password =
      config.client_password_file === null ? null : loadClientPassword(config.client_password_file);
    this.client_password = client_password;
    this.client_auth = new ClientAuth(client_password, logger);
    this.tls = loadTlsSettings(config);
    const from = config.self.host;
    this.forwarder = new LeaderForwarder(logger, client_password, this.tls, [], from);
    this.redis_forwarders = [
      new LeaderForwarder(logger, client_password, this.tls, ['redis', '2'], from),
      new LeaderForwarder(logger, client_password, this.tls, ['redis', '3'], from),
    ];
    this.frontend = new RedisFrontend({
      connectionHost: (connection) => this.connectionHost(connection),
      info: (section) => this.info(section),
      dispatch: (request, args, connection, session) =>
        this.dispatchRedis(request, args, connection, session),
    });
    this.sweeper = new ExpirySweeper();
    this.metrics =
      config.metrics_port === 0
        ? null
        : new NodeMetrics({ config, version: packageVersion(), snapshot: () => this.snapshot() });
  }

  async start(): Promise<void> {
    assert(this.state === 'created', `start() of a node in state ${this.state}`);
    this.state = 'starting';
    // The lock first: a second process on this directory must fail before it writes node_id
    // (two joining processes would each be granted an id, and the loser's would be stored).
    await NODE_STORAGE_IO.makeDirectory(this.config.data_dir);
    const lock = await NODE_STORAGE_IO.lockDirectory(this.config.data_dir);
    try {
      await this.resolveIdentity();
    } catch (error) {
      await lock.release().catch(() => undefined);
      throw error;
    }
    // From here the storage owns the lock, and releases it if the open fails.
    const { storage, restored, recovery, snapshot } = await this.openStorage(lock);
    this.storage = storage;
    try {
      this.incarnation = await this.openIncarnations();
    } catch (error) {
      await storage.close();
      throw error;
    }
    if (this.metrics !== null) storage.batch_observer = this.metrics.onWalBatch.bind(this.metrics);
    this.logRecovery(restored.entries.length, restored.hard_state, recovery);
    const recovery_of_term = recoverPoisonedTerm(restored, this.config.self.id);
    if (recovery_of_term.note !== null) this.logger.error(recovery_of_term.note);
    const core = new RaftCore(this.raftConfig(), recovery_of_term.restored);
    const replica = new Replica(core, stateFromSnapshot(snapshot, this.logger), Date.now);
    replica.on_invalid_entry = (index, reason) =>
      this.logger.warn(`committed entry ${index} skipped: ${reason}`);
    this.core = core;
    this.replica = replica;
    this.driver = this.createDriver(core, replica, storage);
    try {
      await this.startListeners();
      await this.startOpsHttp();
    } catch (error) {
      await this.listener?.close();
      await this.transport?.close();
      await storage.close();
      throw error;
    }
    this.tick_timer = setInterval(() => {
      this.driver?.tick();
      this.syncPeers();
      this.sweepExpired();
      this.request_deadlines.expireUpTo(Date.now());
    }, this.config.tick_ms);
    this.state = 'running';
    this.driver.schedule(); // replay committed entries into the state machine
    const self = this.config.self;
    this.logger.info(
      `node ${self.id} serving clients on ${self.host}:${self.client_port}, ` +
        `raft on ${self.raft_port}`,
    );
  }

  private logRecovery(
    entries: number,
    hard_state: { term: number; commit: number },
    recovery: RecoveryReport,
  ): void {
    const torn = recovery.truncated_tail_bytes;
    this.logger.info(
      `recovered ${entries} log entries (term ${hard_state.term}, commit ${hard_state.commit}) ` +
        `from ${recovery.records} records in ${recovery.log_file}` +
        (torn > 0 ? `; truncated a torn tail of ${torn} bytes` : ''),
    );
    if (torn > 0) {
      const reason = recovery.torn_reason ?? 'damaged record';
      this.logger.warn(`truncated a torn WAL tail of ${torn} bytes (${reason})`);
    }
    for (const damaged of recovery.damaged_snapshots)
      this.logger.warn(`skipped a damaged snapshot, falling back to an older one: ${damaged}`);
  }

  /** Through the test-only disk hooks (chaos test's power loss and slow disk) if configured. */
  private openStorage(held_lock: DirLock): Promise<OpenResult<KvStateMachine>> {
    const { data_dir, test_synced_lengths, test_fsync_delay_file } = this.config;
    // The state machine is built as the snapshot file is read, never holding the whole file.
    const snapshot_parser = KvStateMachine.snapshotParser;
    const node_id = this.config.self.id;
    if (!test_synced_lengths && test_fsync_delay_file === null)
      return RaftStorage.open(data_dir, { node_id, snapshot_parser, held_lock });
    this.logger.warn('TEST DISK HOOKS ON (synced lengths recorded, fsync delay file)');
    return openWithTestDisk(
      data_dir,
      { record_synced: test_synced_lengths, fsync_delay_file: test_fsync_delay_file },
      node_id,
      snapshot_parser,
      held_lock,
    );
  }

  /**
   * The node's id and the cluster fingerprint, from the node_id file (node_identity.ts), created
   * at the first start: a bootstrap node's from its config (sorted-address id, fingerprint of the
   * follower_info list); a node with `join` asks the cluster (join_client.ts) and only then has an
   * identity to start Raft with. A joined node's config then names only itself.
   */
  private async resolveIdentity(): Promise<void> {
    const { data_dir, join, self } = this.config;
    const stored = await readNodeIdentity(NODE_STORAGE_IO, data_dir);
    const from_config = (): Buffer =>
      clusterFingerprint(this.config.nodes, this.config.cluster_name);
    let identity: NodeIdentity;
    if (stored === null) {
      identity =
        join === null
          ? { id: self.id, cluster_fingerprint: from_config() }
          : await this.joinCluster(join);
      await writeNodeIdentity(NODE_STORAGE_IO, data_dir, identity, true);
    } else if (stored.cluster_fingerprint === null && (join !== null || stored.id === self.id)) {
      // Written by a build before the cluster line: the config's list then was the bootstrap one.
      identity = { id: stored.id, cluster_fingerprint: from_config() };
      await writeNodeIdentity(NODE_STORAGE_IO, data_dir, identity, true);
    } else {
      identity = stored; // a bootstrap node whose id changed is refused when storage opens
    }
    this.cluster_fingerprint = identity.cluster_fingerprint;
    if (join === null) return;
    const joined = { ...self, id: identity.id };
    this.config = { ...this.config, self: joined, nodes: [joined], peers: [] };
  }

  private async joinCluster(join: string): Promise<NodeIdentity> {
    const self = this.config.self;
    const own_address = `${self.host}:${self.client_port}`;
    this.logger.info(`joining the cluster through ${join} as ${own_address} (RAFT.NODE ADD)`);
    const grant = await requestJoin({
      join_address: join,
      own_address,
      client_password: this.client_password,
      tls: this.tls,
      logger: this.logger,
    });
    this.logger.info(
      `joined the cluster as node ${grant.id} (cluster fingerprint ` +
        `${grant.cluster_fingerprint.toString('hex').slice(0, 16)}…); the leader replicates to ` +
        'it as a learner and promotes it once caught up',
    );
    return grant;
  }

  /** A joined node bootstraps no configuration: it learns the membership from the leader. */
  private bootstrapVoters(): NodeId[] {
    return this.config.join === null ? this.config.nodes.map((n) => n.id) : [];
  }

  private raftConfig(): RaftConfig {
    const self = this.config.self;
    return buildRaftConfig({
      id: self.id,
      voters: this.bootstrapVoters(),
      addresses: new Map(this.config.nodes.map((n) => [n.id, `${n.host}:${n.client_port}`])),
      election_ticks: this.config.election_ticks,
      heartbeat_ticks: this.config.heartbeat_ticks,
      // Election jitter only needs to differ between nodes and runs; it is not a secret.
      random: this.random,
      ...this.testRaftOptions(),
    });
  }

  /** The Raft side of the test-only `test_faults` (config.ts); nothing when none is set. */
  private testRaftOptions(): { faults?: RaftFaults; check_quorum?: boolean } {
    const faults = this.config.test_faults;
    if (faults.length === 0) return {};
    this.logger.warn(`TEST FAULTS ON, this node breaks safety rules: ${faults.join(',')}`);
    const stale = faults.includes('stale_leader_reads');
    return {
      faults: {
        ack_before_persist: faults.includes('ack_before_fsync'),
        read_without_heartbeat: stale || faults.includes('skip_read_index'),
      },
      ...(stale ? { check_quorum: false } : {}),
    };
  }

  private createDriver(core: RaftCore, replica: Replica, storage: RaftStorage): ReadyDriver {
    return new ReadyDriver(
      core,
      replica,
      {
        save: (hard_state, entries, done) =>
          storage.save(hard_state, entries).then(
            () => done(null),
            (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
          ),
        snapshots: snapshotStorage(storage),
      },
      { send: (to, message) => this.transport?.send(to, message) },
      // setImmediate runs after this turn's I/O callbacks: every request that arrived together
      // shares one Ready and one fsync.
      { defer: (run) => setImmediate(run) },
      {
        readies_per_turn_max: LIMITS.driver_readies_per_turn_max,
        faults: { send_before_persist: this.config.test_faults.includes('ack_before_fsync') },
        snapshot_entries: this.config.snapshot_entries,
        snapshot_log_bytes: this.config.snapshot_log_bytes,
        now_ms: () => performance.now(),
      },
      {
        onSoftState: (soft) => this.onSoftState(soft),
        onTruncate: (first_index) =>
          this.logger.info(
            `log truncated from index ${first_index} (conflict with the leader's log)`,
          ),
        onFatal: (error) => this.fail(error),
        onSnapshotInstalled: (point) =>
          this.logger.info(
            `installed a snapshot from the leader (index ${point.index}, term ${point.term})`,
          ),
        onSnapshotDamaged: (point, reason, retaking) =>
          this.logger.error(
            `snapshot file (index ${point.index}, term ${point.term}) is damaged: ${reason}; ` +
              (retaking ? 'taking a fresh snapshot' : 'not retaking: the disk keeps damaging them'),
          ),
      },
    );
  }

  private async startListeners(): Promise<void> {
    const self = this.config.self;
    this.transport = new PeerTransport(this.peerTransportOptions(), (from, message) =>
      this.driver?.step(from, message),
    );
    // The log's peers (and a fresh joiner's openness) before the first connection arrives.
    this.syncPeers();
    await this.transport.start();
    this.listener = new ClientListener(
      {
        host: self.host,
        port: self.client_port,
        logger: this.logger,
        idle_timeout_ms: this.config.client_idle_timeout_ms,
        tls: this.tls,
        estimate_reply_bytes: (args) => this.estimateReplyBytes(args),
      },
      this.metrics?.instrument((args, c) => this.handleClient(args, c)) ??
        ((args, connection) => this.handleClient(args, connection)),
    );
    await this.listener.start();
    if (this.config.cluster_secret_file === null) this.logger.warn(OPEN_RAFT_PORT_WARNING);
  }

  /**
   * Graceful stop: no new clients, hand leadership over (clients of this
   * node keep being served meanwhile, by forwarding once another node
   * leads), then stop taking Readies, let the running save finish, write a
   * pending commit index, close everything.
   */
  async stop(): Promise<void> {
    if (this.state !== 'running' && this.state !== 'failed') return;
    const failed = this.state === 'failed';
    if (!failed) this.state = 'stopping';
    await this.listener?.stopAccepting();
    if (!failed) await this.handOverLeadership();
    if (!failed) this.state = 'draining';
    this.driver?.drain();
    if (this.tick_timer !== null) clearInterval(this.tick_timer);
    await this.transport?.close();
    const driver = this.driver;
    if (driver !== null) await this.waitFor(() => !driver.saving, 10_000);
    const unsaved = driver?.unsaved_hard_state ?? null;
    if (!failed && driver !== null && !driver.saving && unsaved !== null && this.storage !== null) {
      await this.storage
        .save(unsaved, null)
        .catch((error: Error) => this.logger.warn(`final save: ${error.message}`));
    }
    await this.listener?.close();
    await this.ops_http?.close();
    this.forwarder.close();
    for (const forwarder of this.redis_forwarders) forwarder.close();
    await this.storage?.close();
    if (!failed) this.state = 'stopped';
    for (const wake of this.leader_waiters) wake();
  }

  private async handOverLeadership(): Promise<void> {
    const core = this.core;
    if (core === null || core.current_role !== 'leader') return;
    // Only a voter can take over: learners and members being removed cannot.
    const voters = core.status().peers.filter((p) => p.voter);
    if (voters.length === 0) return;
    const target = voters.reduce((best, p) => (p.match > best.match ? p : best));
    if (!core.transferLeadership(target.id)) return;
    this.logger.info(`handing leadership to node ${target.id} before exit`);
    this.driver?.schedule();
    await this.waitFor(
      () => core.current_role !== 'leader',
      2 * this.config.election_ticks * this.config.tick_ms,
    );
  }

  /** For INFO and tests. */
  info(section: string | null): string {
    if (section?.toLowerCase() === DIGEST_SECTION) {
      // Not part of `INFO all`: it hashes the whole state. Converged nodes show the same line.
      const state = this.requireReplica().state;
      const digest = createHash('sha256').update(state.serialize()).digest('hex');
      return `# Digest\r\nlast_applied:${state.last_applied}\r\nstate_digest:${digest}\r\n`;
    }
    return formatInfo(section, this.requireSnapshot());
  }

  private async startOpsHttp(): Promise<void> {
    if (this.metrics === null) return;
    this.ops_http = new OpsHttpServer({
      host: this.config.self.host,
      port: this.config.metrics_port,
      logger: this.logger,
      metrics: this.metrics,
      snapshot: () => this.snapshot(),
      ready_lag_entries: this.config.ready_lag_entries,
    });
    await this.ops_http.start();
  }

  /** The node's state for INFO, metrics and /ready; null before start. */
  private snapshot(): InfoInputs | null {
    return this.core === null || this.replica === null ? null : this.requireSnapshot();
  }

  private requireSnapshot(): InfoInputs {
    const core = this.requireCore();
    return {
      config: this.liveConfig(),
      cluster_fingerprint: this.cluster_fingerprint,
      status: core.status(),
      last_applied: this.requireReplica().state.last_applied,
      key_count: this.requireReplica().state.key_count,
      data_bytes: this.requireReplica().state.data_bytes,
      pending_writes: this.requireReplica().pending_writes,
      pending_reads: this.requireReplica().pending_reads,
      peers: this.transport?.status() ?? [],
      storage: this.storage?.stats() ?? null,
      ...(this.driver === null ? {} : { snapshots: this.driver.snapshotStats() }),
      connected_clients: this.listener?.connection_count ?? 0,
      expiring_keys: this.requireReplica().state.expiring_key_count,
      started_ms: this.started_ms,
      commands_processed: this.commands_processed,
    };
  }

  /**
   * The transport's peers follow the log (issue 15): every member of the configuration in use,
   * the nodes the leader still replicates to (a member being removed), and the leader. Before a
   * joined node knows any configuration it dials nobody and answers any node of its cluster.
   */
  private syncPeers(): void {
    const core = this.core;
    const transport = this.transport;
    if (core === null || transport === null) return;
    const status = core.status();
    const ids = new Set(core.current_membership.members.map((m) => m.id));
    for (const peer of status.peers) ids.add(peer.id);
    if (status.leader_id !== NO_NODE) ids.add(status.leader_id);
    ids.delete(this.config.self.id);
    const peers: PeerAddress[] = [];
    for (const id of [...ids].sort((a, b) => a - b)) {
      const address = this.addressOf(id);
      if (address !== null) peers.push({ id, host: address.host, raft_port: address.raft_port });
    }
    const accept_unknown = core.current_membership.members.length === 0;
    const key = `${accept_unknown} ${peers.map((p) => `${p.id}@${p.host}:${p.raft_port}`)}`;
    if (key === this.peers_key) return;
    this.peers_key = key;
    transport.setPeers(peers, accept_unknown);
  }

  private onSoftState(soft: SoftState): void {
    const previous = this.soft;
    this.soft = soft;
    this.syncPeers();
    this.metrics?.onSoftState(previous, soft);
    if (previous.role === 'leader' && soft.role !== 'leader')
      for (const answer of [...this.step_down_waiters]) answer();
    if (previous.role !== soft.role || previous.term !== soft.term) {
      const leader = soft.leader_id !== NO_NODE ? ` (leader ${soft.leader_id})` : '';
      this.logger.info(`role ${soft.role} in term ${soft.term}${leader}`);
    }
    if (previous.leader_id !== soft.leader_id) {
      const leader = this.addressOf(soft.leader_id);
      const retained = leader === null ? null : `${leader.host}:${leader.client_port}`;
      this.forwarder.retainOnly(retained);
      for (const forwarder of this.redis_forwarders) forwarder.retainOnly(retained);
      if (previous.role === soft.role && previous.term === soft.term)
        this.logger.info(
          `${soft.leader_id === NO_NODE ? 'no leader' : `leader ${soft.leader_id}`}` +
            ` in term ${soft.term}`,
        );
      for (const wake of [...this.leader_waiters]) wake();
    }
  }

  /** RAFT.SNAPSHOT: takes a snapshot now and replies once it is durable. */
  private snapshotCommand(): Promise<ClientReply> {
    return new Promise((resolve) => {
      const started = this.driver?.snapshotNow((error) =>
        resolve({ reply: error === null ? REPLY_OK : encodeError(`ERR ${error.message}`) }),
      );
      if (started !== true)
        resolve({ reply: encodeError('ERR no snapshot taken: one is running or nothing is new') });
    });
  }

  private fail(error: Error): void {
    if (this.state === 'failed') return;
    this.state = 'failed';
    this.logger.error(`stopping: ${error.message}`);
    this.on_fatal(error);
  }

  // ------------------------------------------------------------------ clients

  private handleClient(args: Buffer[], connection: ClientConnectionInfo): HandlerResult {
    const name = args[0];
    if (isCommandName(name, 'AUTH'))
      return { reply: this.client_auth.handleAuth(args, connection) };
    // HELLO may carry AUTH itself (HELLO 3 AUTH user password), as in Redis.
    if (!this.client_auth.allows(connection) && !isCommandName(name, 'QUIT')) {
      if (!isCommandName(name, 'HELLO') || !args.some((arg) => isCommandName(arg, 'AUTH')))
        return { reply: NOAUTH_REPLY };
    }
    this.commands_processed++;
    if (isCommandName(name, FORWARD_COMMAND)) return this.handleForwarded(args, connection);
    return this.handleCommand(args, connection);
  }

  /** A command of a connection that may run commands (authenticated, or no password). */
  private handleCommand(args: Buffer[], connection: ClientConnectionInfo): HandlerResult {
    const name = args[0];
    const session = this.sessionOf(connection);
    if (isCommandName(name, PROXY_HELLO)) {
      connection.tags.add(PROXIED_TAG);
      if (args[1]?.toString('latin1') === 'redis') {
        session.view = 'redis';
        session.resp = args[2]?.toString('latin1') === '3' ? 3 : 2;
      }
      return { reply: REPLY_OK };
    }
    if (isCommandName(name, RAFT_SNAPSHOT)) return this.snapshotCommand();
    if (isCommandName(name, RAFT_NODES) || isCommandName(name, RAFT_NODE))
      return this.membershipCommand(args);
    const lower =
      name !== undefined && name.length <= 5 ? name.toString('latin1').toLowerCase() : '';
    if (session.view !== 'seed' || session.multi !== null || !SEED_COMMANDS.has(lower))
      return this.frontend.handle(args, connection, session);
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
        if (!this.serving()) {
          return {
            reply: connection.tags.has(PROXIED_TAG)
              ? NOT_LEADER_REPLY
              : encodeError('TRYAGAIN shutting down; retry on another node'),
          };
        }
        return this.answered(command, args, connection);
    }
  }

  /**
   * `RAFT.FWD <stream> <id> <command...>` on a follower's link: the command of one of its clients
   * (`stream`). Each stream is served in its own order, as if it were its own connection, so that
   * one client's slow request holds none of the link's other clients; the reply carries `id` and
   * leaves as soon as it is ready.
   */
  private handleForwarded(args: Buffer[], link: ClientConnectionInfo): HandlerResult {
    const stream_text = args[1]?.toString('latin1') ?? '';
    const id = args[2];
    const inner = args.slice(3);
    const inner_name = inner[0];
    if (
      !link.tags.has(PROXIED_TAG) ||
      !DECIMAL_ID.test(stream_text) ||
      id === undefined ||
      !DECIMAL_ID.test(id.toString('latin1')) ||
      inner_name === undefined ||
      isCommandName(inner_name, FORWARD_COMMAND) ||
      isCommandName(inner_name, PROXY_HELLO)
    )
      return { reply: encodeError(`ERR malformed ${FORWARD_COMMAND}`) };
    let streams = this.forward_streams.get(link);
    if (streams === undefined) {
      streams = new Map();
      this.forward_streams.set(link, streams);
    }
    let stream = streams.get(stream_text);
    if (stream === undefined) {
      // The link's tags (proxied, authenticated) and session (view, protocol) hold for its streams.
      stream = { connection: { id: link.id, remote: link.remote, tags: link.tags }, unfinished: 0 };
      this.sessions.set(stream.connection, this.sessionOf(link));
      streams.set(stream_text, stream);
    }
    const active = stream;
    const known = streams;
    active.unfinished++;
    // Forgotten once idle: a stream's order matters only between its unfinished requests.
    const release = (): void => {
      active.unfinished--;
      if (active.unfinished === 0) known.delete(stream_text);
    };
    const finished = (reply: ClientReply): ClientReply => {
      release();
      return { reply: encodeForwardedReply(id, reply.reply), unordered: true };
    };
    let result: HandlerResult;
    try {
      result = this.handleCommand(inner, active.connection);
    } catch (error) {
      release();
      throw error;
    }
    if (isImmediateReply(result)) return finished(result);
    const forwarded = new DeferredReply();
    const settle = (reply: ClientReply | null, error: unknown): void => {
      if (reply !== null) forwarded.resolve(finished(reply));
      else {
        release();
        forwarded.reject(error);
      }
    };
    if (result instanceof DeferredReply) result.onSettled(settle);
    else
      result.then(
        (reply) => settle(reply, null),
        (error: unknown) => settle(null, error),
      );
    return forwarded;
  }

  private sessionOf(connection: ClientConnectionInfo): Session {
    let session = this.sessions.get(connection);
    if (session === undefined) {
      session = newSession(this.config.client_protocol);
      this.sessions.set(connection, session);
    }
    return session;
  }

  /** A Redis-view data command, served in connection order like the seed's SET and GET. */
  private dispatchRedis(
    request: RedisRequest,
    args: Buffer[],
    connection: ClientConnectionInfo,
    session: Session,
  ): Promise<Buffer> {
    if (!this.serving()) {
      return Promise.resolve(
        connection.tags.has(PROXIED_TAG)
          ? NOT_LEADER_REPLY
          : encodeError('TRYAGAIN shutting down; retry on another node'),
      );
    }
    const forwarder = this.redis_forwarders[session.resp === 3 ? 1 : 0];
    const started_ms = this.metrics?.requestStarted() ?? 0;
    return new Promise((resolve, reject) =>
      this.inConnectionOrder(request, args, connection, forwarder, (result) => {
        if (result instanceof Error) {
          reject(result);
          return;
        }
        this.metrics?.requestDone(args[0], result, started_ms);
        resolve(result);
      }),
    );
  }

  private connectionHost(connection: ClientConnectionInfo): ConnectionHost {
    return {
      config: this.config,
      connection_id: connection.id,
      connection_remote: connection.remote,
      leader: () => this.addressOf(this.core?.status().leader_id ?? NO_NODE),
      isLeader: () => this.core?.current_role === 'leader',
      // Without client_password_file the default user takes any password, as Redis's `nopass`
      // default user does.
      authenticate: (user, password) =>
        this.client_auth.authenticate(connection, Buffer.from(user, 'utf8'), password)
          ? null
          : WRONGPASS_TEXT,
    };
  }

  /** On the leader: proposes the deletion of keys whose deadline passed (bounded per tick). */
  private sweepExpired(): void {
    const replica = this.replica;
    if (replica === null || this.core?.current_role !== 'leader' || !this.serving()) return;
    const command = this.sweeper.next(replica.state, replica.stampNow());
    if (command === null) return;
    if (replica.write(command, () => this.sweeper.settled()) === null) this.sweeper.settled();
    this.driver?.schedule();
  }

  /** A seed-view read or write: the listener gets a DeferredReply, settled with the reply. */
  private answered(
    command: Dispatchable,
    args: Buffer[],
    connection: ClientConnectionInfo,
  ): DeferredReply {
    const started_ms = this.metrics?.requestStarted() ?? 0;
    const deferred = new DeferredReply();
    this.inConnectionOrder(command, args, connection, this.forwarder, deferred, started_ms);
    return deferred;
  }

  /** Dispatches `command` in its connection's order (ConnectionOrder); `reply` gets the reply. */
  private inConnectionOrder(
    command: Dispatchable,
    args: Buffer[],
    connection: ClientConnectionInfo,
    forwarder: LeaderForwarder,
    reply: RunReply,
    started_ms = 0,
  ): void {
    let order = this.connection_order.get(connection);
    if (order === undefined) {
      order = new ConnectionOrder();
      this.connection_order.set(connection, order);
    }
    const is_read = command.kind === 'read' || command.kind === 'redis_read';
    // Reads dispatched after a write (this burst) must count its value in their reply estimates.
    const uncount = is_read ? null : this.pending_writes.add(args);
    const run = new CommandRun(
      command,
      args,
      connection,
      forwarder,
      uncount,
      reply,
      this.run_hooks,
    );
    run.started_ms = started_ms;
    order.run(is_read, (done) => {
      run.order_done = done;
      this.dispatch(run);
    });
  }

  /** Shared by every CommandRun: no closure per request. */
  private readonly run_hooks: CommandRunHooks = {
    localSettled: (run, reply) => {
      if (reply !== null) this.finishRun(run, reply);
      else {
        run.requireLane().retrying(run.requireEntry());
        this.dispatchGeneral(run, true);
      }
    },
  };

  /** The final reply: the command leaves its lane and its connection's order, then is answered. */
  private finishRun(run: CommandRun, result: Buffer | Error): void {
    run.requireLane().release(run.requireEntry());
    run.uncount?.();
    run.order_done?.();
    const reply = run.reply;
    if (!(reply instanceof DeferredReply)) reply(result);
    else if (result instanceof Error) reply.reject(result);
    else {
      this.metrics?.requestDone(run.args[0], result, run.started_ms);
      reply.resolve({ reply: result });
    }
  }

  /**
   * The common case first, without a Promise: this node leads and nothing earlier of the
   * connection is elsewhere, so the command is proposed (or read) here at once. Otherwise, or if
   * leadership moved meanwhile, the general loop (dispatchInLane) takes over.
   */
  private dispatch(run: CommandRun): void {
    let lane = this.forward_lanes.get(run.connection);
    if (lane === undefined) {
      lane = new ForwardLane();
      this.forward_lanes.set(run.connection, lane);
    }
    const entry = lane.enter();
    run.lane = lane;
    run.entry = entry;
    const core = this.core;
    const serve_local_reads =
      run.command.kind === 'read' && this.config.test_faults.includes('serve_local_reads');
    if (
      !this.serving() ||
      core === null ||
      core.current_role !== 'leader' ||
      serve_local_reads ||
      !lane.mayGo(entry, LOCAL_TARGET)
    ) {
      this.dispatchGeneral(run, false);
      return;
    }
    lane.sent(entry, LOCAL_TARGET);
    this.executeLocal(run.command, Date.now() + this.config.request_timeout_ms, run);
  }

  private dispatchGeneral(run: CommandRun, local_failed: boolean): void {
    const { command, args, connection, forwarder } = run;
    const lane = run.requireLane();
    this.dispatchInLane(
      command,
      args,
      connection,
      forwarder,
      lane,
      run.requireEntry(),
      local_failed,
    ).then(
      (result) => this.finishRun(run, result),
      (error: unknown) =>
        this.finishRun(run, error instanceof Error ? error : new Error(String(error))),
    );
  }

  /**
   * Serves a read or write wherever the leader is: here, by forwarding, or
   * by a MOVED redirect. Waits a bounded time for a leader to be known.
   * `local_failed`: an attempt here just came back refused (leadership moved); wait before the
   * next one.
   */
  private async dispatchInLane(
    command: Dispatchable,
    args: Buffer[],
    connection: ClientConnectionInfo,
    forwarder: LeaderForwarder,
    lane: ForwardLane,
    entry: LaneEntry,
    local_failed: boolean,
  ): Promise<Buffer> {
    const started_ms = Date.now();
    const deadline_ms = started_ms + this.config.request_timeout_ms;
    let no_leader_since_ms: number | null = null;
    if (local_failed) await this.waitForLeaderChange(LEADER_RECHECK_MS);
    for (;;) {
      if (!this.serving()) return encodeError('TRYAGAIN shutting down; retry on another node');
      const core = this.requireCore();
      if (command.kind === 'read' && this.config.test_faults.includes('serve_local_reads')) {
        const value = this.requireReplica().state.get(command.key);
        return value === null ? REPLY_NIL : encodeBulkArray(value);
      }
      // Behind an earlier request of this connection that is being retried elsewhere: wait.
      let behind = false;
      if (core.current_role === 'leader') {
        behind = !lane.mayGo(entry, LOCAL_TARGET);
        if (!behind) {
          lane.sent(entry, LOCAL_TARGET);
          const local = await this.executeLocally(command, deadline_ms);
          if (local !== null) return local;
          lane.retrying(entry);
        }
      } else if (connection.tags.has(PROXIED_TAG)) {
        return NOT_LEADER_REPLY; // the forwarding node retries; never forward twice
      } else {
        const leader = this.addressOf(core.status().leader_id);
        if (leader === null && this.config.client_redirect === 'moved') {
          // A moved-mode client can ask another node at once; waiting here for an election this
          // node may not even hear of (partitioned away) only stalls it.
          return encodeError('CLUSTERDOWN this node knows no leader; retry on another node');
        }
        if (leader !== null) {
          no_leader_since_ms = null;
          if (this.config.client_redirect === 'moved') {
            const slot = 'slot' in command ? command.slot : 0;
            return encodeError(`MOVED ${slot} ${leader.host}:${leader.client_port}`);
          }
          const target = `${leader.host}:${leader.client_port}`;
          behind = !lane.mayGo(entry, target);
          if (!behind) {
            lane.sent(entry, target);
            this.metrics?.onForward();
            const result = await forwarder.forward(
              leader.host,
              leader.client_port,
              args,
              deadline_ms,
              connection.id,
            );
            if (result.kind === 'reply' && !isNotLeaderReply(result.bytes)) return result.bytes;
            const is_write = command.kind === 'write' || command.kind === 'redis_write';
            if (result.kind === 'unknown' && is_write) {
              return encodeError(
                'TIMEOUT outcome unknown: the link to the leader failed after the write was sent',
              );
            }
            lane.retrying(entry);
          }
        }
      }
      const now_ms = Date.now();
      if (now_ms >= deadline_ms) {
        // Every attempt was refused or never sent: certainly not executed, so not a TIMEOUT
        // (outcome unknown).
        return encodeError(
          `TRYAGAIN request not served within ${this.config.request_timeout_ms} ms; ` +
            'it was not executed',
        );
      }
      if (this.requireCore().status().leader_id === NO_NODE) {
        no_leader_since_ms ??= now_ms;
        if (now_ms - no_leader_since_ms >= this.config.no_leader_timeout_ms) {
          return encodeError(
            `CLUSTERDOWN no leader elected within ${this.config.no_leader_timeout_ms} ms; ` +
              'retry later',
          );
        }
      }
      if (behind) await lane.waitTurn(entry, Math.max(deadline_ms - Date.now(), 1));
      else await this.waitForLeaderChange(LEADER_RECHECK_MS);
    }
  }

  /** Runs the command on this node as leader; null means "leadership moved, dispatch again". */
  private executeLocally(command: Dispatchable, deadline_ms: number): Promise<Buffer | null> {
    return new Promise((resolve) => this.executeLocal(command, deadline_ms, { onLocal: resolve }));
  }

  /** executeLocally with a callback: `waiter` gets the reply, or null if leadership moved. */
  private executeLocal(command: Dispatchable, deadline_ms: number, waiter: LocalWaiter): void {
    const replica = this.requireReplica();
    const is_write = command.kind === 'write' || command.kind === 'redis_write';
    const request = new LocalCommand(deadline_ms, is_write, waiter, this.local_hooks);
    const handle = this.submit(replica, command, request);
    if (request.settled || handle === null) return;
    request.handle = handle;
    this.driver?.schedule();
    // A deposed leader learns the write's fate only once it hears the new leader, which may be
    // after a whole partition: a moved-mode client would rather know now and move on.
    if (is_write && this.config.client_redirect === 'moved') {
      request.on_step_down = () => {
        replica.cancelWrite(handle);
        this.finishLocal(request, encodeError(STEPPED_DOWN_TEXT));
      };
      this.step_down_waiters.add(request.on_step_down);
    }
    this.request_deadlines.add(request);
  }

  private readonly local_hooks: LocalCommandHooks = {
    expired: (request) => {
      const replica = this.requireReplica();
      const handle = request.handle;
      if (handle !== null) {
        if (request.is_write) replica.cancelWrite(handle);
        else replica.cancelRead(handle);
      }
      const timeout_ms = this.config.request_timeout_ms;
      this.finishLocal(
        request,
        encodeError(
          request.is_write
            ? `TIMEOUT outcome unknown: the write was not confirmed within ${timeout_ms} ms`
            : `TIMEOUT read not confirmed within ${timeout_ms} ms`,
        ),
      );
    },
  };

  /** The local attempt's outcome, once: it leaves the deadline list and goes to its waiter. */
  private finishLocal(request: LocalCommand, reply: Buffer | null): void {
    if (request.settled) return;
    request.settled = true;
    this.request_deadlines.remove(request);
    if (request.on_step_down !== null) this.step_down_waiters.delete(request.on_step_down);
    request.waiter.onLocal(reply);
  }

  /** Hands the command to the replica; its reply settles `request` (null: not leader any more). */
  private submit(replica: Replica, command: Dispatchable, request: LocalCommand): number | null {
    const settle = (reply: Buffer | null): void => this.finishLocal(request, reply);
    switch (command.kind) {
      case 'write':
        return replica.write(command.command, (outcome) => {
          this.metrics?.onProposal(outcome.ok ? 'ok' : outcome.error);
          settle(writeReply(outcome));
        });
      case 'redis_write':
        return replica.write(command.make(replica.stampNow()), (outcome) => {
          this.metrics?.onProposal(outcome.ok ? 'ok' : outcome.error);
          if (outcome.ok && outcome.result.kind === 'value')
            settle(encodeRedisValue(outcome.result.value, command.resp));
          else settle(writeReply(outcome));
        });
      case 'read':
        return replica.read(command.key, (outcome) => {
          this.metrics?.onRead(outcome.ok ? 'ok' : outcome.error);
          settle(readReply(outcome));
        });
      case 'redis_read':
        return replica.query(command.run, (outcome) => {
          this.metrics?.onRead(outcome.ok ? 'ok' : outcome.error);
          if (outcome.ok) settle(encodeRedisValue(outcome.value, command.resp));
          else if (outcome.error === 'too_many_reads')
            settle(encodeError('TRYAGAIN too many reads waiting; retry shortly'));
          else settle(null);
        });
    }
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

  /**
   * A command's reply size, known before it runs so the listener can charge it to the memory
   * budgets: a GET's from the value this node holds (a follower's copy is at most a little stale),
   * everything else small. Only GET replies can be large.
   */
  private estimateReplyBytes(args: readonly Buffer[]): number {
    // A follower's relayed request: its command starts after `RAFT.FWD stream id`.
    const at = isCommandName(args[0], FORWARD_COMMAND) ? 3 : 0;
    const name = args[at];
    const key = args[at + 1];
    if (name === undefined || key === undefined || name.length !== 3) return SMALL_REPLY_BYTES;
    if (!isCommandName(name, 'GET')) return SMALL_REPLY_BYTES;
    // lookupBytes: no copy of the word list for an estimate.
    const held = this.replica?.state.lookupBytes(key, 0, BULK_FRAMING_BYTES) ?? null;
    return SMALL_REPLY_BYTES + this.pending_writes.bytesFor(key) + (held ?? 0);
  }

  /** Whether requests may still be executed or forwarded (not draining, stopped or failed). */
  private serving(): boolean {
    return this.state === 'running' || this.state === 'stopping';
  }

  /** RAFT.NODES and RAFT.NODE (membership_commands.ts). */
  private membershipCommand(args: Buffer[]): ClientReply | Promise<ClientReply> {
    const core = this.core;
    const replica = this.replica;
    if (core === null || replica === null || !this.serving())
      return { reply: encodeError('TRYAGAIN this node is not serving; retry') };
    const host: MembershipCommandHost = {
      core,
      replica,
      addressOf: (id) => {
        const address = this.addressOf(id);
        return address === null ? null : `${address.host}:${address.client_port}`;
      },
      schedule: () => this.driver?.schedule(),
      cluster_fingerprint: this.requireFingerprint(),
    };
    return isCommandName(args[0], RAFT_NODES) ? nodesCommand(host) : nodeCommand(args, host);
  }

  /**
   * A node's addresses: from the configuration in the log (the one in use, else the committed
   * one, which still names a member being removed), else the config file (bootstrap members whose
   * entry has no address).
   */
  private addressOf(id: NodeId): NodeAddress | null {
    if (id === NO_NODE) return null;
    const core = this.core;
    const member =
      core === null
        ? undefined
        : (memberOf(core.current_membership, id) ??
          memberOf(core.membershipAt(core.commit_index), id));
    const parsed = member === undefined || member.address === '' ? null : parseMember(member);
    if (parsed !== null) return parsed;
    return this.config.nodes.find((n) => n.id === id) ?? null;
  }

  /**
   * The config as INFO, ROLE and the metrics show it: the nodes are the members of the
   * configuration in use (config.nodes are only the bootstrap list).
   */
  private liveConfig(): NodeConfig {
    const core = this.core;
    if (core === null) return this.config;
    const nodes: NodeAddress[] = [];
    for (const member of core.current_membership.members) {
      const address = this.addressOf(member.id);
      if (address !== null) nodes.push(address);
    }
    const self = this.config.self;
    if (!nodes.some((n) => n.id === self.id)) nodes.push(self);
    nodes.sort((a, b) => a.id - b.id);
    return { ...this.config, nodes, peers: nodes.filter((n) => n.id !== self.id) };
  }

  private requireFingerprint(): Buffer {
    assert(this.cluster_fingerprint !== null, 'the identity is resolved before Raft starts');
    return this.cluster_fingerprint;
  }

  private requireCore(): RaftCore {
    if (this.core === null) throw new Error('node not started');
    return this.core;
  }

  /** The config file's peers to start with; syncPeers then follows the log. */
  private peerTransportOptions(): PeerTransportOptions {
    const self = this.config.self;
    return {
      self_id: self.id,
      listen_host: self.host,
      listen_port: self.raft_port,
      peers: this.config.peers.map((p) => ({ id: p.id, host: p.host, raft_port: p.raft_port })),
      logger: this.logger,
      validate_message: invalidEntryReason,
      // Redial jitter from the node's one generator, as election jitter.
      random: () => this.random.float(),
      handshake: this.handshakeSettings(),
      tls: this.tls,
    };
  }

  /** This data directory's incarnation and those of the peers it has met (incarnation.ts). */
  private async openIncarnations(): Promise<IncarnationSettings> {
    const { incarnation, created, peers } = await openIncarnations(this.config.data_dir);
    this.logger.info(
      `data directory incarnation ${describeIncarnation(incarnation)} ` +
        `(${created ? 'new' : 'kept'}; ${peers.size} peer incarnations remembered)`,
    );
    const check = !this.config.test_faults.includes('skip_incarnation_check');
    return { own: incarnation, memory: peers, check };
  }

  /** Fingerprint, secret and incarnations for the peer handshake. */
  private handshakeSettings(): HandshakeSettings {
    const { config } = this;
    // Built without it, the handshake would silently skip the lost-data-directory check.
    assert(this.incarnation !== null, 'incarnations are loaded before the peer transport starts');
    const secret =
      config.cluster_secret_file === null ? null : loadClusterSecret(config.cluster_secret_file);
    return {
      self_id: config.self.id,
      // Fixed at bootstrap (node_identity.ts): membership changes and config edits leave it.
      fingerprint: this.requireFingerprint(),
      members:
        config.join === null
          ? describeMembers(config.nodes)
          : `node ${config.self.id}, joined via ${config.join}`,
      secret,
      peer_ids: new Set(config.peers.map((peer) => peer.id)),
      send_hello: config.peer_hello,
      incarnation: this.incarnation,
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
    if (result.kind === 'invalid') return encodeError(`ERR invalid command: ${result.reason}`);
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
        'TRYAGAIN write not committed: leadership changed before it was replicated; ' +
          'it was not executed',
      );
    case 'unknown':
      return encodeError(
        'TIMEOUT outcome unknown: this node stopped leading and installed a snapshot ' +
          'covering the write',
      );
  }
}

function readReply(outcome: ReadOutcome): Buffer | null {
  if (outcome.ok) return outcome.value === null ? REPLY_NIL : encodeBulkArray(outcome.value);
  if (outcome.error === 'too_many_reads')
    return encodeError('TRYAGAIN too many reads waiting; retry shortly');
  return null; // not leader any more: dispatch again
}

/** Whether `name` is the command `upper` (given in upper case), in any case. */
function isCommandName(name: Buffer | undefined, upper: string): boolean {
  if (name === undefined || name.length !== upper.length) return false;
  // Byte by byte, without a string per command: this runs several times for every request.
  for (let i = 0; i < upper.length; i++) {
    const byte = name[i] as number;
    const folded = byte >= 0x61 && byte <= 0x7a ? byte - 0x20 : byte;
    if (folded !== upper.charCodeAt(i)) return false;
  }
  return true;
}

function isNotLeaderReply(bytes: Buffer): boolean {
  return (
    bytes.length >= NOT_LEADER_PREFIX.length &&
    bytes.toString('latin1', 0, NOT_LEADER_PREFIX.length) === NOT_LEADER_PREFIX
  );
}

/** A member's client address as a NodeAddress (its Raft port 1000 below); null if malformed. */
function parseMember(member: Member): NodeAddress | null {
  const parsed = parseHostPort(member.address);
  if (!parsed.ok || parsed.address.port <= RAFT_PORT_OFFSET) return null;
  const { host, port } = parsed.address;
  return { id: member.id, host, client_port: port, raft_port: port - RAFT_PORT_OFFSET };
}

/** The state machine a node restarts with: the snapshot's, or empty. */
function stateFromSnapshot(
  snapshot: LoadedSnapshot<KvStateMachine> | null,
  logger: Logger,
): KvStateMachine {
  if (snapshot === null) return new KvStateMachine();
  const state = snapshot.state;
  assert(
    state.last_applied === snapshot.meta.index,
    `snapshot ${snapshot.file} holds state applied to ${state.last_applied}, ` +
      `not its index ${snapshot.meta.index}`,
  );
  logger.info(
    `loaded snapshot ${snapshot.file} (index ${snapshot.meta.index}, term ${snapshot.meta.term}, ` +
      `${state.key_count} keys, ${snapshot.file_bytes} bytes)`,
  );
  return state;
}

/** The driver's view of the storage's snapshot files and log compaction. */
function snapshotStorage(storage: RaftStorage): DriverSnapshotStorage {
  const asError = (error: unknown): Error =>
    error instanceof Error ? error : new Error(String(error));
  return {
    write: (meta, source, done) =>
      storage.snapshots.writeFrom(meta, source).then(
        (written) => done(null, written.file_bytes),
        (error: unknown) => done(asError(error), 0),
      ),
    compact: (point, entries, done) =>
      storage.compactLog(point, entries).then(
        () => done(null),
        (error: unknown) => done(asError(error)),
      ),
    transfer: snapshotTransferStorage(storage.snapshots),
    install: snapshotInstaller(storage.snapshots),
  };
}

/** Who waits for a local attempt's reply (null: this node stopped leading, dispatch again). */
interface LocalWaiter {
  onLocal(reply: Buffer | null): void;
}

/** Where a reply goes: a seed-view command's DeferredReply (no closure), or a callback. */
type RunReply = DeferredReply | ((result: Buffer | Error) => void);

interface CommandRunHooks {
  localSettled(run: CommandRun, reply: Buffer | null): void;
}

/**
 * One data command between its connection's order and its reply. Fields rather than a closure per
 * step (order, lane, local attempt): those closures were a good part of the garbage per request.
 */
class CommandRun implements LocalWaiter {
  lane: ForwardLane | null = null;
  entry: LaneEntry | null = null;
  /** When a seed-view command started, for its metrics. */
  started_ms = 0;
  /** Releases the command's place in its connection's order (ConnectionOrder). */
  order_done: (() => void) | null = null;

  constructor(
    readonly command: Dispatchable,
    readonly args: Buffer[],
    readonly connection: ClientConnectionInfo,
    readonly forwarder: LeaderForwarder,
    readonly uncount: (() => void) | null,
    readonly reply: RunReply,
    private readonly hooks: CommandRunHooks,
  ) {}

  onLocal(reply: Buffer | null): void {
    this.hooks.localSettled(this, reply);
  }

  requireLane(): ForwardLane {
    assert(this.lane !== null, 'a dispatched command has a lane');
    return this.lane;
  }

  requireEntry(): LaneEntry {
    assert(this.entry !== null, 'a dispatched command has a lane entry');
    return this.entry;
  }
}

interface LocalCommandHooks {
  expired(request: LocalCommand): void;
}

/** One attempt to run a command here as leader; its deadline answers through the shared hooks. */
class LocalCommand extends LocalRequest {
  /** The replica's handle (log index or read id) once submitted. */
  handle: number | null = null;

  constructor(
    deadline_ms: number,
    readonly is_write: boolean,
    readonly waiter: LocalWaiter,
    private readonly hooks: LocalCommandHooks,
  ) {
    super(deadline_ms);
  }

  override expire(): void {
    this.hooks.expired(this);
  }
}
