import type { NodeAddress, NodeConfig } from '../config/config';
import { clusterFingerprint } from '../config/fingerprint';
import type { RaftStatus } from '../raft/core';
import type { StorageStats } from '../storage';
import type { PeerStatus } from './peer_transport';

export interface InfoInputs {
  config: NodeConfig;
  status: RaftStatus;
  last_applied: number;
  key_count: number;
  data_bytes: number;
  pending_writes: number;
  pending_reads: number;
  peers: PeerStatus[];
  storage: StorageStats | null;
  connected_clients: number;
}

type InfoField = [string, string | number];
type InfoSection = [string, InfoField[]];

/**
 * The INFO reply: `# Section` headers and `key:value` lines joined by CRLF,
 * as Redis formats it. `INFO raft` (or any one section name) limits it to
 * that section; `INFO` and `INFO all` give every section.
 */
export function formatInfo(section: string | null, inputs: InfoInputs): string {
  const sections: InfoSection[] = [
    ['raft', raftFields(inputs)],
    ['storage', storageFields(inputs)],
    [
      'clients',
      [
        ['connected_clients', inputs.connected_clients],
        ['client_redirect', inputs.config.client_redirect],
      ],
    ],
    [
      'keyspace',
      [
        ['keys', inputs.key_count],
        ['data_bytes', inputs.data_bytes],
      ],
    ],
  ];
  const wanted =
    section === null || section === 'all' || section === 'everything'
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
    ['cluster_fingerprint', clusterFingerprint(config.nodes, config.cluster_name).toString('hex')],
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
