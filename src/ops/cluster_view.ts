/**
 * The live cluster view: polls `INFO raft` on every node once a second and
 * renders one table row per node. Starting from any one address, the peer
 * lines of INFO name every other node, so the whole cluster is found.
 *
 * Columns: node id and address, role, term, commit and applied index, lag
 * (the highest commit index any node reports minus this node's applied
 * index), the links to each peer (`out/in`: our request link and the peer's
 * request link to us; `-` down, `~` connecting, `+` connected, `.` idle, a
 * normal state for a follower seen from its leader), and writes/s (applied
 * entries per second since the previous poll).
 */
import { KvClient } from '../client/kv_client';

/** How long one INFO may take before the node is shown as unreachable. */
const POLL_TIMEOUT_MS = 800;

export interface PeerLinkView {
  id: number;
  address: string;
  out: string;
  in: string;
  last_contact_ms: string;
}

export interface NodeView {
  address: string;
  reachable: boolean;
  error: string;
  node_id: number;
  role: string;
  term: number;
  leader_id: number;
  commit_index: number;
  applied_index: number;
  peers: PeerLinkView[];
  writes_per_second: number | null;
}

interface Sample {
  at_ms: number;
  applied_index: number;
}

/** Parses `key=value,...` of an INFO peer line. */
function parsePeerLine(text: string): PeerLinkView | null {
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    const equals = part.indexOf('=');
    if (equals > 0) fields.set(part.slice(0, equals), part.slice(equals + 1));
  }
  const id = Number(fields.get('id'));
  const address = fields.get('addr');
  if (!Number.isInteger(id) || address === undefined) return null;
  return {
    id,
    address,
    out: fields.get('out') ?? 'unknown',
    in: fields.get('in') ?? 'unknown',
    last_contact_ms: fields.get('last_contact_ms') ?? 'never',
  };
}

export function nodeViewFromInfo(address: string, info: Record<string, string>): NodeView {
  const number = (key: string): number => {
    const value = Number(info[key]);
    return Number.isFinite(value) ? value : 0;
  };
  const peers: PeerLinkView[] = [];
  for (const [key, value] of Object.entries(info)) {
    if (!/^peer\d+$/.test(key)) continue;
    const peer = parsePeerLine(value);
    if (peer !== null) peers.push(peer);
  }
  peers.sort((a, b) => a.id - b.id);
  return {
    address,
    reachable: true,
    error: '',
    node_id: number('node_id'),
    role: info.role ?? '?',
    term: number('term'),
    leader_id: number('leader_id'),
    commit_index: number('commit_index'),
    applied_index: number('last_applied'),
    peers,
    writes_per_second: null,
  };
}

function unreachable(address: string, error: unknown, previous: NodeView | undefined): NodeView {
  return {
    address,
    reachable: false,
    error: describeFailure(error),
    node_id: previous?.node_id ?? 0,
    role: 'down',
    term: previous?.term ?? 0,
    leader_id: 0,
    commit_index: previous?.commit_index ?? 0,
    applied_index: previous?.applied_index ?? 0,
    peers: [],
    writes_per_second: null,
  };
}

/** Short: the errno code when there is one ("ECONNREFUSED"), else the message. */
function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  const cause = (error as { cause?: unknown }).cause;
  if (typeof code === 'string' && code.startsWith('E')) return code;
  if (cause instanceof Error) return describeFailure(cause);
  return error.message;
}

/** Polls every known node; learns new addresses from the peer lines. */
export class ClusterWatcher {
  private readonly clients = new Map<string, KvClient>();
  private readonly samples = new Map<string, Sample>();
  private readonly last = new Map<string, NodeView>();

  constructor(seeds: readonly string[]) {
    for (const address of seeds) this.clientFor(address);
  }

  /** One poll of every known node, in parallel; rows sorted by node id, then address. */
  async poll(): Promise<NodeView[]> {
    const addresses = [...this.clients.keys()];
    const views = await Promise.all(addresses.map((address) => this.pollOne(address)));
    for (const view of views)
      for (const peer of view.peers)
        if (!this.clients.has(peer.address)) this.clientFor(peer.address);
    return views.sort((a, b) => a.node_id - b.node_id || a.address.localeCompare(b.address));
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((client) => client.close()));
    this.clients.clear();
  }

  private clientFor(address: string): KvClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new KvClient({ nodes: [address], call_timeout_ms: POLL_TIMEOUT_MS });
      this.clients.set(address, client);
    }
    return client;
  }

  private async pollOne(address: string): Promise<NodeView> {
    let view: NodeView;
    try {
      view = nodeViewFromInfo(address, await this.clientFor(address).info());
    } catch (error) {
      view = unreachable(address, error, this.last.get(address));
    }
    const now_ms = Date.now();
    const sample = this.samples.get(address);
    if (view.reachable && sample !== undefined && now_ms > sample.at_ms) {
      const applied = view.applied_index - sample.applied_index;
      view.writes_per_second = Math.max(0, (applied * 1000) / (now_ms - sample.at_ms));
    }
    if (view.reachable)
      this.samples.set(address, { at_ms: now_ms, applied_index: view.applied_index });
    else this.samples.delete(address);
    this.last.set(address, view);
    return view;
  }
}

const LINK_SYMBOL: Record<string, string> = {
  connected: '+',
  connecting: '~',
  down: '-',
  idle: '.',
};

function linkText(peer: PeerLinkView): string {
  return `${peer.id}:${LINK_SYMBOL[peer.out] ?? '?'}${LINK_SYMBOL[peer.in] ?? '?'}`;
}

/** The table as lines (no trailing newline), widest cell per column. */
export function renderClusterTable(views: readonly NodeView[]): string[] {
  const top_commit = Math.max(0, ...views.filter((v) => v.reachable).map((v) => v.commit_index));
  const header = ['ID', 'ADDRESS', 'ROLE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'LINKS', 'W/S'];
  const rows = views.map((view) => [
    view.node_id === 0 ? '?' : String(view.node_id),
    view.address,
    view.role,
    String(view.term),
    view.reachable ? String(view.commit_index) : '-',
    view.reachable ? String(view.applied_index) : '-',
    view.reachable ? String(Math.max(0, top_commit - view.applied_index)) : '-',
    view.reachable ? view.peers.map(linkText).join(' ') : view.error.slice(0, 40),
    view.writes_per_second === null ? '-' : view.writes_per_second.toFixed(0),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const format = (cells: string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [format(header), ...rows.map(format)];
}

/** A one-line summary under the table: who leads, and whether the nodes agree. */
export function leaderSummary(views: readonly NodeView[]): string {
  const leaders = views.filter((v) => v.reachable && v.role === 'leader');
  const down = views.filter((v) => !v.reachable).length;
  const leader_text =
    leaders.length === 0
      ? 'no leader'
      : leaders.map((v) => `leader: node ${v.node_id} (${v.address}, term ${v.term})`).join('; ');
  return `${leader_text}; ${views.length - down}/${views.length} nodes up`;
}

export const LINK_LEGEND =
  'links peer:out/in  + connected  ~ connecting  - down  . idle (no requests from that peer)';
