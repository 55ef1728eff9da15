/**
 * PeerTransport nodes on real loopback sockets for the tests of the Raft port's connection start
 * (fingerprint, cluster secret, incarnations): members on free ports, their handshake settings,
 * nodes that record what reaches Raft and what they log, raw sockets posing as peers, and the
 * cleanup that closes all of it after each test (call `closeAll` from the file's afterEach).
 */
import * as net from 'node:net';
import { clusterFingerprint, describeMembers } from '../../src/config/fingerprint';
import type { RaftMessage } from '../../src/raft/protocol';
import { MessageType } from '../../src/raft/protocol';
import type { HandshakeSettings, PeerIncarnationMemory } from '../../src/server/peer_handshake';
import { type PeerAddress, PeerTransport } from '../../src/server/peer_transport';
import type { Logger } from '../../src/util/log';
import { freePort } from './ports';
import { leakedHandles, waitFor } from './wait';

export const HOST = '127.0.0.1';
export const SECRET = Buffer.from('a cluster secret for the tests');

/** Everything a test opened, closed after it so that a failing test leaves no handles either. */
const cleanups: Array<() => Promise<void>> = [];

export function onCleanup(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}

/** Closes what the test opened (last first) and checks that nothing is left open. */
export async function closeAll(): Promise<void> {
  while (cleanups.length > 0) await cleanups.pop()?.();
  await waitFor('no sockets, servers or timers left', () => leakedHandles().length === 0);
}

/** A logger that keeps `LEVEL message` lines (debug dropped) for the test to search. */
export function capturingLogger(lines: string[]): Logger {
  const push = (level: string) => (message: string) => lines.push(`${level} ${message}`);
  return {
    error: push('ERROR'),
    warn: push('WARN'),
    info: push('INFO'),
    debug: () => undefined,
    enabled: () => true,
  };
}

export interface PeerNode {
  transport: PeerTransport;
  received: { from: number; message: RaftMessage }[];
  log: string[];
}

/** Ids 1..count, each on a free Raft port. */
export async function members(count: number): Promise<PeerAddress[]> {
  const list: PeerAddress[] = [];
  for (let id = 1; id <= count; id++) list.push({ id, host: HOST, raft_port: await freePort() });
  return list;
}

/**
 * The settings of node `self_id` whose config names `list` (client port = Raft port + 1000);
 * with `incarnation`, it sends its own and checks its peers' against `memory`.
 */
export function handshakeFor(
  self_id: number,
  list: PeerAddress[],
  secret: Buffer | null,
  incarnation?: { own: Buffer; memory: PeerIncarnationMemory },
): HandshakeSettings {
  const nodes = list.map((m) => ({ ...m, client_port: m.raft_port + 1000 }));
  return {
    self_id,
    fingerprint: clusterFingerprint(nodes, ''),
    members: describeMembers(nodes),
    secret,
    peer_ids: new Set(list.map((m) => m.id).filter((id) => id !== self_id)),
    ...(incarnation === undefined ? {} : { incarnation: { ...incarnation, check: true } }),
  };
}

/** Node `self_id` listening on its port in `list`, dialling the others in it. */
export async function startPeerNode(
  self_id: number,
  list: PeerAddress[],
  handshake: HandshakeSettings,
  options: {
    validate_message?: (message: RaftMessage) => string | null;
    /** Called after each message reached Raft (recorded in `received`). */
    on_message?: (node: PeerNode) => void;
  } = {},
): Promise<PeerNode> {
  const self = list.find((m) => m.id === self_id);
  if (self === undefined) throw new Error(`node ${self_id} is not in the list`);
  const log: string[] = [];
  const received: PeerNode['received'] = [];
  const transport = new PeerTransport(
    {
      self_id,
      listen_host: HOST,
      listen_port: self.raft_port,
      peers: list,
      logger: capturingLogger(log),
      backoff_base_ms: 10,
      backoff_max_ms: 100,
      handshake,
      validate_message: options.validate_message,
    },
    (from, message) => {
      received.push({ from, message });
      options.on_message?.(node);
    },
  );
  const node: PeerNode = { transport, received, log };
  onCleanup(() => transport.close());
  await transport.start();
  return node;
}

/** A plain TCP connection to a Raft port, posing as a peer or a stranger; closed after the test. */
export class RawSocket {
  readonly socket: net.Socket;
  closed = false;
  constructor(port: number) {
    this.socket = net.connect({ host: HOST, port });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
    });
    onCleanup(async () => {
      this.socket.destroy();
      await waitFor('raw socket closed', () => this.closed);
    });
  }
  async connected(): Promise<void> {
    if (!this.socket.connecting) return;
    await new Promise<void>((resolve) => this.socket.once('connect', () => resolve()));
  }
}

export const vote = (candidate_id: number, term = 1): RaftMessage => ({
  type: MessageType.RequestVoteRequest,
  term,
  candidate_id,
  last_log_index: 0,
  last_log_term: 0,
});
