/**
 * Prometheus metrics of one node (prom-client; names follow the Prometheus
 * conventions: `_total` counters, base units `_seconds` / `_bytes`).
 *
 * Two kinds:
 * - read from the node's status objects when scraped (`refresh`): term, role,
 *   indexes, peer links, WAL size, connections. Nothing on the hot path.
 * - counted by hooks where the event happens: role/leader changes, write and
 *   read outcomes, command results and latency, WAL batches and fsyncs,
 *   forwards.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { NodeConfig } from '../config/config';
import { NO_NODE, type SoftState } from '../raft/types';
import { type ClientHandler, isImmediateReply } from '../server/client_listener';
import type { InfoInputs } from '../server/info';
import { RequestStats, TurnClock } from './request_stats';

/** prom-client's exposition content type (text format 0.0.4). */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

const ROLES = ['follower', 'pre_candidate', 'candidate', 'leader'] as const;
const FSYNC_BUCKETS_SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];
const WAL_BATCH_BUCKETS_BYTES = [
  256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216,
];

/** Counters fed by events in the node. */
class EventMetrics {
  readonly leader_changes: Counter;
  readonly elections: Counter<'phase'>;
  /** Outcome counts kept in plain maps (per write/read); copied into the counters on scrape. */
  readonly proposal_outcomes = new Map<string, number>();
  readonly read_outcomes = new Map<string, number>();
  readonly forwarded: Counter;
  readonly fsync_seconds: Histogram;
  readonly wal_batch_bytes: Histogram;
  readonly wal_written_bytes: Counter;

  constructor(registers: Registry[]) {
    this.leader_changes = new Counter({
      name: 'kvstore_raft_leader_changes_seen_total',
      help: 'Times this node saw the leader change (including to "no leader").',
      registers,
    });
    this.elections = new Counter({
      name: 'kvstore_raft_elections_started_total',
      help: 'Campaigns this node started: phase="prevote" (pre-vote) or "vote" (a real election).',
      labelNames: ['phase'],
      registers,
    });
    outcomeCounter(
      'kvstore_raft_proposals_total',
      'Writes proposed on this node as leader, by outcome.',
      this.proposal_outcomes,
      registers,
    );
    outcomeCounter(
      'kvstore_raft_read_index_requests_total',
      'Linearizable reads served through ReadIndex on this node as leader, by outcome.',
      this.read_outcomes,
      registers,
    );
    this.forwarded = new Counter({
      name: 'kvstore_requests_forwarded_total',
      help: 'Client requests this follower relayed to the leader.',
      registers,
    });
    this.fsync_seconds = new Histogram({
      name: 'kvstore_wal_fsync_duration_seconds',
      help: 'fdatasync latency of WAL batches.',
      buckets: FSYNC_BUCKETS_SECONDS,
      registers,
    });
    this.wal_batch_bytes = new Histogram({
      name: 'kvstore_wal_write_bytes',
      help: 'Bytes written to the WAL per batch (one batch, one fsync).',
      buckets: WAL_BATCH_BUCKETS_BYTES,
      registers,
    });
    this.wal_written_bytes = new Counter({
      name: 'kvstore_wal_written_bytes_total',
      help: 'Bytes written to the WAL.',
      registers,
    });
  }
}

/** A counter by `result` whose values live in `counts` until a scrape copies them. */
function outcomeCounter(
  name: string,
  help: string,
  counts: Map<string, number>,
  registers: Registry[],
): void {
  new Counter({
    name,
    help,
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      for (const [result, count] of counts) this.inc({ result }, count);
    },
  });
}

/** Gauges set from the node's status when scraped. */
class StatusMetrics {
  readonly term: Gauge;
  readonly role: Gauge<'role'>;
  readonly leader_id: Gauge;
  readonly commit_index: Gauge;
  readonly applied_index: Gauge;
  readonly last_log_index: Gauge;
  readonly uncommitted_bytes: Gauge;
  readonly pending_writes: Gauge;
  readonly pending_reads: Gauge;
  readonly keys: Gauge;
  readonly data_bytes: Gauge;
  readonly wal_file_bytes: Gauge;
  readonly wal_queued_bytes: Gauge;
  readonly client_connections: Gauge;
  readonly peer_up: Gauge<'peer' | 'direction'>;
  readonly peer_queued_bytes: Gauge<'peer'>;
  readonly peer_dropped: Counter<'peer'>;
  readonly peer_last_contact_seconds: Gauge<'peer'>;
  readonly replication_lag: Gauge<'peer'>;

  constructor(registers: Registry[]) {
    const gauge = <T extends string = string>(
      name: string,
      help: string,
      labelNames: T[] = [],
    ): Gauge<T> => new Gauge<T>({ name, help, labelNames, registers });
    this.term = gauge('kvstore_raft_term', 'Current Raft term.');
    this.role = gauge('kvstore_raft_role', 'Current role: 1 for the role held, 0 for others.', [
      'role',
    ]);
    this.leader_id = gauge('kvstore_raft_leader_id', 'Node id of the known leader; 0: none.');
    this.commit_index = gauge('kvstore_raft_commit_index', 'Highest log index known committed.');
    this.applied_index = gauge('kvstore_raft_applied_index', 'Highest log index applied.');
    this.last_log_index = gauge('kvstore_raft_last_log_index', 'Index of the last log entry.');
    this.uncommitted_bytes = gauge(
      'kvstore_raft_uncommitted_bytes',
      'Entry bytes proposed by this leader and not yet committed.',
    );
    this.pending_writes = gauge('kvstore_pending_writes', 'Writes waiting to commit.');
    this.pending_reads = gauge('kvstore_pending_reads', 'Reads waiting for a ReadIndex round.');
    this.keys = gauge('kvstore_keys', 'Keys in the state machine.');
    this.data_bytes = gauge('kvstore_data_bytes', 'Bytes of keys and values stored.');
    this.wal_file_bytes = gauge('kvstore_wal_file_bytes', 'Size of the WAL file.');
    this.wal_queued_bytes = gauge('kvstore_wal_queued_bytes', 'Bytes waiting behind a batch.');
    this.client_connections = gauge('kvstore_client_connections', 'Open client connections.');
    this.peer_up = gauge('kvstore_peer_link_up', '1 if the link to a peer is connected.', [
      'peer',
      'direction',
    ]);
    this.peer_queued_bytes = gauge(
      'kvstore_peer_queued_bytes',
      'Bytes queued for a peer, not yet handed to the kernel.',
      ['peer'],
    );
    this.peer_dropped = new Counter({
      name: 'kvstore_peer_dropped_messages_total',
      help: 'Raft messages to a peer dropped (no connection or a full queue).',
      labelNames: ['peer'],
      registers,
    });
    this.peer_last_contact_seconds = gauge(
      'kvstore_peer_last_contact_seconds',
      'Seconds since a message from the peer arrived (absent: never).',
      ['peer'],
    );
    this.replication_lag = gauge(
      'kvstore_raft_replication_lag_entries',
      'On the leader: entries a follower is behind the leader log (last index - match).',
      ['peer'],
    );
  }
}

export interface NodeMetricsOptions {
  config: NodeConfig;
  version: string;
  /** The node's status now; null before the node has started. */
  snapshot: () => InfoInputs | null;
}

/** The metrics of one node and the hooks the node calls. */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly events: EventMetrics;
  private readonly status: StatusMetrics;
  private readonly options: NodeMetricsOptions;
  private readonly requests = new RequestStats();
  private readonly clock = new TurnClock();

  constructor(options: NodeMetricsOptions) {
    this.options = options;
    const registers = [this.registry];
    this.events = new EventMetrics(registers);
    this.status = new StatusMetrics(registers);
    const info = new Gauge({
      name: 'kvstore_node_info',
      help: 'Constant 1; labels identify the node.',
      labelNames: ['node_id', 'address', 'version'],
      registers,
    });
    const self = options.config.self;
    info.set(
      { node_id: self.id, address: `${self.host}:${self.client_port}`, version: options.version },
      1,
    );
    // process_resident_memory_bytes, nodejs_eventloop_lag_seconds, heap and GC metrics.
    collectDefaultMetrics({ register: this.registry });
  }

  onSoftState(previous: SoftState, next: SoftState): void {
    if (previous.leader_id !== next.leader_id) this.events.leader_changes.inc();
    if (previous.role !== next.role || previous.term !== next.term) {
      if (next.role === 'pre_candidate') this.events.elections.inc({ phase: 'prevote' });
      if (next.role === 'candidate') this.events.elections.inc({ phase: 'vote' });
    }
  }

  onProposal(result: string): void {
    const counts = this.events.proposal_outcomes;
    counts.set(result, (counts.get(result) ?? 0) + 1);
  }

  onRead(result: string): void {
    const counts = this.events.read_outcomes;
    counts.set(result, (counts.get(result) ?? 0) + 1);
  }

  onForward(): void {
    this.events.forwarded.inc();
  }

  onWalBatch(bytes: number, fsync_ms: number | null): void {
    this.events.wal_batch_bytes.observe(bytes);
    this.events.wal_written_bytes.inc(bytes);
    if (fsync_ms !== null) this.events.fsync_seconds.observe(fsync_ms / 1000);
  }

  /**
   * Wraps the client handler to count replies given at once (PING, INFO, errors). Replies that
   * take a promise (reads, writes) are counted by the node with requestStarted / requestDone, in
   * the continuation it already has: one more `.then` per request costs more than the rest.
   */
  instrument(handler: ClientHandler): ClientHandler {
    return (args, connection) => {
      const result = handler(args, connection);
      if (isImmediateReply(result)) this.requests.observe(args[0], result.reply, 0);
      return result;
    };
  }

  requestStarted(): number {
    return this.clock.now_ms();
  }

  requestDone(name: Buffer | undefined, reply: Buffer, started_ms: number): void {
    this.requests.observe(name, reply, (this.clock.now_ms() - started_ms) / 1000);
  }

  /** The exposition text, with the status gauges read now. */
  async scrape(): Promise<string> {
    this.refresh();
    return `${await this.registry.metrics()}\n${this.requests.render()}`;
  }

  private refresh(): void {
    const inputs = this.options.snapshot();
    if (inputs === null) return;
    const s = this.status;
    const raft = inputs.status;
    s.term.set(raft.term);
    for (const role of ROLES) s.role.set({ role }, raft.role === role ? 1 : 0);
    s.leader_id.set(raft.leader_id === NO_NODE ? 0 : raft.leader_id);
    s.commit_index.set(raft.commit_index);
    s.applied_index.set(inputs.last_applied);
    s.last_log_index.set(raft.last_log_index);
    s.uncommitted_bytes.set(raft.uncommitted_bytes);
    s.pending_writes.set(inputs.pending_writes);
    s.pending_reads.set(inputs.pending_reads);
    s.keys.set(inputs.key_count);
    s.data_bytes.set(inputs.data_bytes);
    s.wal_file_bytes.set(inputs.storage?.log_file_bytes ?? 0);
    s.wal_queued_bytes.set(inputs.storage?.queued_bytes ?? 0);
    s.client_connections.set(inputs.connected_clients);
    this.refreshPeers(inputs);
  }

  private refreshPeers(inputs: InfoInputs): void {
    const s = this.status;
    s.peer_dropped.reset();
    s.peer_last_contact_seconds.reset();
    s.replication_lag.reset();
    for (const link of inputs.peers) {
      const peer = String(link.id);
      s.peer_up.set({ peer, direction: 'out' }, link.outbound === 'connected' ? 1 : 0);
      s.peer_up.set({ peer, direction: 'in' }, link.inbound === 'connected' ? 1 : 0);
      s.peer_queued_bytes.set({ peer }, link.queued_bytes);
      s.peer_dropped.inc({ peer }, link.dropped_messages);
      if (link.last_contact_age_ms !== null)
        s.peer_last_contact_seconds.set({ peer }, link.last_contact_age_ms / 1000);
    }
    if (inputs.status.role !== 'leader') return;
    for (const progress of inputs.status.peers) {
      s.replication_lag.set(
        { peer: String(progress.id) },
        inputs.status.last_log_index - progress.match,
      );
    }
  }
}
