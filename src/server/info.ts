import type { NodeAddress, NodeConfig } from '../config/config';
import { clusterFingerprint } from '../config/fingerprint';
import type { RaftStatus } from '../raft/core';
import type { SnapshotStats } from '../driver/ready_driver';
import type { StorageStats } from '../storage';
import type { PeerStatus } from './peer_transport';

export interface InfoInputs {
  config: NodeConfig;
  /** The node's stored cluster fingerprint (node_identity.ts); null: from the config's list. */
  cluster_fingerprint?: Buffer | null;
  status: RaftStatus;
  last_applied: number;
  key_count: number;
  data_bytes: number;
  pending_writes: number;
  pending_reads: number;
  peers: PeerStatus[];
  storage: StorageStats | null;
  /** Snapshot figures from the driver; absent before it runs. */
  snapshots?: SnapshotStats;
  connected_clients: number;
  /** Keys with a deadline (counted by Redis as `expires`). */
  expiring_keys: number;
  started_ms: number;
  /** Commands handled since start. */
  commands_processed: number;
}

/** The Redis version clients are told (the command set and reply formats follow Redis 7.2). */
export const REDIS_COMPAT_VERSION = '7.2.0';

type InfoField = [string, string | number];
type InfoSection = [string, InfoField[]];

/**
 * The INFO reply: `# Section` headers and `key:value` lines joined by CRLF,
 * as Redis formats it. `INFO raft` (or any one section name) limits it to
 * that section; `INFO` and `INFO all` give every section.
 */
export function formatInfo(section: string | null, inputs: InfoInputs): string {
  // Standard Redis sections first, then ours: a parser where the last field wins (KvClient's)
  // sees raft's `role:leader` rather than replication's `role:master`.
  const sections: InfoSection[] = [
    ['server', serverFields(inputs)],
    [
      'clients',
      [
        ['connected_clients', inputs.connected_clients],
        ['blocked_clients', 0],
        ['client_redirect', inputs.config.client_redirect],
        ['client_protocol', inputs.config.client_protocol],
      ],
    ],
    ['memory', memoryFields(inputs)],
    ['persistence', persistenceFields(inputs)],
    ['stats', statsFields(inputs)],
    ['replication', replicationFields(inputs)],
    ['raft', raftFields(inputs)],
    ['storage', storageFields(inputs)],
    ['keyspace', keyspaceFields(inputs)],
  ];
  const wanted =
    section === null || ['all', 'everything', 'default'].includes(section.toLowerCase())
      ? null
      : section.toLowerCase();
  const lines: string[] = [];
  for (const [name, fields] of sections) {
    if (wanted !== null && wanted !== name) continue;
    if (lines.length > 0) lines.push('');
    lines.push(`# ${name[0]!.toUpperCase()}${name.slice(1)}`);
    for (const [key, value] of fields) lines.push(`${key}:${value}`);
  }
  return `${lines.join('\r\n')}\r\n`;
}

function serverFields(inputs: InfoInputs): InfoField[] {
  const uptime_s = Math.floor((Date.now() - inputs.started_ms) / 1000);
  return [
    ['redis_version', REDIS_COMPAT_VERSION],
    ['redis_mode', 'standalone'],
    ['server_name', 'raft-kv'],
    ['os', `${process.platform} ${process.arch}`],
    ['arch_bits', 64],
    ['process_id', process.pid],
    ['tcp_port', inputs.config.self.client_port],
    ['uptime_in_seconds', uptime_s],
    ['uptime_in_days', Math.floor(uptime_s / 86_400)],
    ['executable', process.argv[1] ?? ''],
  ];
}

function memoryFields(inputs: InfoInputs): InfoField[] {
  const memory = process.memoryUsage();
  return [
    ['used_memory', memory.heapUsed + memory.external],
    ['used_memory_human', `${((memory.heapUsed + memory.external) / 1048576).toFixed(2)}M`],
    ['used_memory_rss', memory.rss],
    ['used_memory_dataset', inputs.data_bytes],
    ['maxmemory', 0],
    ['maxmemory_policy', 'noeviction'],
  ];
}

function persistenceFields(inputs: InfoInputs): InfoField[] {
  return [
    ['loading', 0],
    ['rdb_changes_since_last_save', 0],
    ['rdb_bgsave_in_progress', 0],
    ['rdb_last_bgsave_status', 'ok'],
    // Every acknowledged write is in the fsync'd Raft log: always on, in Redis's terms.
    ['aof_enabled', 1],
    ['aof_rewrite_in_progress', 0],
    ['aof_last_write_status', 'ok'],
    ['raft_log_index', inputs.status.last_log_index],
  ];
}

function statsFields(inputs: InfoInputs): InfoField[] {
  return [
    ['total_connections_received', 0],
    ['total_commands_processed', inputs.commands_processed],
    ['instantaneous_ops_per_sec', 0],
    ['rejected_connections', 0],
    ['expired_keys', 0],
    ['evicted_keys', 0],
    ['keyspace_hits', 0],
    ['keyspace_misses', 0],
  ];
}

/** Redis names: the leader is the master, the other nodes are its replicas. */
function replicationFields(inputs: InfoInputs): InfoField[] {
  const { config, status } = inputs;
  if (status.role === 'leader') {
    const replicas = config.peers.map((peer, i): InfoField => {
      const progress = status.peers.find((p) => p.id === peer.id);
      const online = inputs.peers.find((p) => p.id === peer.id)?.outbound === 'connected';
      return [
        `slave${i}`,
        `ip=${peer.host},port=${peer.client_port},state=${online ? 'online' : 'offline'},` +
          `offset=${progress?.match ?? 0},lag=0`,
      ];
    });
    return [
      ['role', 'master'],
      ['connected_slaves', config.peers.length],
      ...replicas,
      ['master_repl_offset', status.commit_index],
    ];
  }
  const leader = config.nodes.find((n) => n.id === status.leader_id);
  return [
    ['role', 'slave'],
    ['master_host', leader?.host ?? ''],
    ['master_port', leader?.client_port ?? 0],
    ['master_link_status', leader === undefined ? 'down' : 'up'],
    ['slave_repl_offset', inputs.last_applied],
    ['slave_read_only', 1],
    ['master_repl_offset', status.commit_index],
  ];
}

function keyspaceFields(inputs: InfoInputs): InfoField[] {
  const fields: InfoField[] = [
    ['keys', inputs.key_count],
    ['data_bytes', inputs.data_bytes],
  ];
  if (inputs.key_count > 0)
    fields.push(['db0', `keys=${inputs.key_count},expires=${inputs.expiring_keys},avg_ttl=0`]);
  return fields;
}

function raftFields(inputs: InfoInputs): InfoField[] {
  const { config, status } = inputs;
  const address = (id: number): string => {
    const node = config.nodes.find((n) => n.id === id);
    return node === undefined ? '' : `${node.host}:${node.client_port}`;
  };
  return [
    ['node_id', status.id],
    ['address', address(status.id)],
    ['role', status.role === 'pre_candidate' ? 'candidate' : status.role],
    ['term', status.term],
    ['voted_for', status.vote],
    ['leader', address(status.leader_id)],
    ['leader_id', status.leader_id],
    ['commit_index', status.commit_index],
    ['last_applied', inputs.last_applied],
    ['last_log_index', status.last_log_index],
    ['last_log_term', status.last_log_term],
    ['stable_index', status.stable_index],
    ['uncommitted_bytes', status.uncommitted_bytes],
    ['pending_writes', inputs.pending_writes],
    ['pending_reads', inputs.pending_reads],
    ['nodes', config.nodes.length],
    [
      'cluster_fingerprint',
      (
        inputs.cluster_fingerprint ?? clusterFingerprint(config.nodes, config.cluster_name)
      ).toString('hex'),
    ],
    ['peer_auth', config.cluster_secret_file === null ? 'open' : 'secret'],
    ...config.peers.map((peer): InfoField => [`peer${peer.id}`, peerLine(inputs, peer)]),
  ];
}

/** One peer's link and, on a leader, its replication progress, as `key=value,...`. */
function peerLine(inputs: InfoInputs, peer: NodeAddress): string {
  const { status } = inputs;
  const link = inputs.peers.find((p) => p.id === peer.id);
  const progress = status.peers.find((p) => p.id === peer.id);
  const fields = [
    `id=${peer.id}`,
    `addr=${peer.host}:${peer.client_port}`,
    `raft_port=${peer.raft_port}`,
    ...linkFields(link),
    `queued_bytes=${link?.queued_bytes ?? 0}`,
    `dropped=${link?.dropped_messages ?? 0}`,
  ];
  if (status.role === 'leader' && progress !== undefined) {
    fields.push(
      `match=${progress.match}`,
      `next=${progress.next}`,
      `state=${progress.state}`,
      `inflight=${progress.inflight_messages}`,
    );
  }
  return fields.join(',');
}

function storageFields(inputs: InfoInputs): InfoField[] {
  const storage = inputs.storage;
  if (storage === null) return [];
  return [
    ['data_dir', inputs.config.data_dir],
    ['wal_bytes', storage.log_file_bytes],
    ['wal_saves', storage.saves],
    ['wal_fsyncs', storage.fsyncs],
    ['wal_fsync_last_ms', storage.fsync_last_ms.toFixed(3)],
    ['wal_fsync_avg_ms', storage.fsync_avg_ms.toFixed(3)],
    ['wal_fsync_max_ms', storage.fsync_max_ms.toFixed(3)],
    ['wal_queued_bytes', storage.queued_bytes],
    ...snapshotFields(inputs),
  ];
}

function snapshotFields(inputs: InfoInputs): InfoField[] {
  const snapshots = inputs.snapshots;
  return [
    ['snapshot_index', snapshots?.snapshot_index ?? inputs.status.snapshot_index],
    ['snapshot_term', snapshots?.snapshot_term ?? inputs.status.snapshot_term],
    ['snapshot_bytes', snapshots?.snapshot_bytes ?? 0],
    ['snapshot_last_duration_ms', (snapshots?.snapshot_last_duration_ms ?? 0).toFixed(3)],
    ['snapshot_serialize_max_ms', (snapshots?.snapshot_serialize_max_ms ?? 0).toFixed(3)],
    ['snapshot_in_progress', snapshots?.snapshot_in_progress === true ? 1 : 0],
    ['snapshots_sent', snapshots?.snapshots_sent ?? 0],
    ['snapshots_received', snapshots?.snapshots_received ?? 0],
    ['snapshots_installed', snapshots?.snapshots_installed ?? 0],
    ['log_first_index', inputs.status.snapshot_index + 1],
  ];
}

/**
 * `out`: our connection for requests to the peer. `in`: an inbound connection carrying its
 * requests (`idle` is normal for a follower seen from its leader). `last_contact_ms`: age of
 * the newest message from the peer either way.
 */
function linkFields(link: PeerStatus | undefined): string[] {
  if (link === undefined) return ['out=unknown', 'in=unknown', 'last_contact_ms=never'];
  const out = link.outbound === 'backoff' ? 'down' : link.outbound;
  const age = link.last_contact_age_ms === null ? 'never' : String(link.last_contact_age_ms);
  return [`out=${out}`, `in=${link.inbound}`, `last_contact_ms=${age}`];
}
