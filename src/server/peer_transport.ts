import type * as net from 'node:net';
import { encodeMessage, FrameDecoder } from '../wire/codec';
import { isRequest, MessageType, type RaftMessage } from '../raft/protocol';
import { assert } from '../util/assert';
import { backoffDelay } from '../util/backoff';
import { describeError, WireError } from '../util/errors';
import { MemoryBudget } from '../util/memory_budget';
import { connectedEvent, createServer, dial, type TlsSettings } from './tls_settings';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import { CorkedWriter } from '../util/corked_writer';
import { boundPort, listen } from './listen';
import { PeerHandshake, type HandshakeSettings } from './peer_handshake';

export interface PeerAddress {
  id: number;
  host: string;
  raft_port: number;
}

export interface PeerTransportOptions {
  self_id: number;
  listen_host: string;
  listen_port: number;
  /** Every other node of the cluster; an entry for self_id is ignored. */
  peers: PeerAddress[];
  logger: Logger;
  /** Bytes waiting to be written on one connection beyond which new messages are dropped. */
  queue_bytes_max?: number;
  backoff_base_ms?: number;
  backoff_max_ms?: number;
  /** Jitter source in [0, 1) for redial delays; inject a seeded one to replay a run. */
  random?: () => number;
  connect_timeout_ms?: number;
  frame_payload_bytes_max?: number;
  /** Default LIMITS.peer_inbound_frame_bytes_total_max. */
  frame_bytes_total_max?: number;
  /** Mutual TLS on every peer connection; null or absent: plain TCP. */
  tls?: TlsSettings | null;
  /**
   * Why a decoded message must not reach Raft (e.g. an entry that is not a valid command), or
   * null. A refused message closes its connection with a warning: the sender is broken or hostile.
   */
  validate_message?: (message: RaftMessage) => string | null;
  /**
   * Fingerprint exchange and, with a secret, authentication at the start of every connection (see
   * peer_handshake.ts). Absent: bare frames only, as the seed does.
   */
  handshake?: HandshakeSettings;
}

export interface PeerStatus {
  id: number;
  outbound: 'connected' | 'connecting' | 'backoff';
  /**
   * Whether we hold an inbound connection on which this peer sent a request, i.e. whether we can
   * answer it.
   */
  inbound_connected: boolean;
  /** Bytes written but not yet handed to the kernel, outbound plus response connection. */
  queued_bytes: number;
  dropped_messages: number;
  /** Dial attempts after the first one. */
  reconnects: number;
  /**
   * Whether an open inbound connection carries this peer's requests. A follower never sends its
   * leader requests, so from the leader's side `idle` is normal for a healthy follower.
   */
  inbound: 'connected' | 'idle';
  /** Milliseconds since any message from this peer arrived, either direction; null: never. */
  last_contact_age_ms: number | null;
}

const DEFAULT_BACKOFF_BASE_MS = 50;
const DEFAULT_BACKOFF_MAX_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
/**
 * Dead-peer detection for idle links is Raft's job (election timeouts); keep-alive only reaps
 * half-dead sockets.
 */
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;
/** A repeated handshake failure (a peer redialling every backoff) is logged this rarely. */
const HANDSHAKE_FAILURE_LOG_INTERVAL_MS = 60_000;
/** After a failed handshake, our answer gets this long to leave before the socket is destroyed. */
const HANDSHAKE_LINGER_MS = 500;
/** Distinct failure reasons remembered for that; a stranger cannot grow the map without bound. */
const HANDSHAKE_FAILURE_KEYS_MAX = 1024;

type Direction = 'inbound' | 'outbound';

/** One TCP connection to or from a peer, with its own frame decoder and write coalescing. */
class PeerConnection {
  readonly socket: net.Socket;
  readonly direction: Direction;
  readonly decoder: FrameDecoder;
  readonly remote: string;
  /**
   * Outbound: the peer we dialled. Inbound: the id its requests name, null until the first request.
   */
  peer_id: number | null;
  connected_at_ms = 0;
  /** Inbound: when this connection last carried a request, on the transport's request counter. */
  last_request_order = 0;
  last_error: Error | null = null;
  connect_timer: NodeJS.Timeout | null = null;
  /** Until it completes, received bytes go to the handshake, not the decoder. */
  handshake: PeerHandshake | null = null;
  /** Closes the connection if an authenticated handshake has not completed in time. */
  handshake_timer: NodeJS.Timeout | null = null;
  readonly closed: Promise<void>;
  private readonly writer: CorkedWriter;
  /** Decoder bytes charged to the transport's process-wide frame budget. */
  private frame_bytes_charged = 0;

  constructor(
    socket: net.Socket,
    direction: Direction,
    peer_id: number | null,
    remote: string,
    frame_payload_bytes_max: number,
    private readonly frame_budget: MemoryBudget,
  ) {
    this.socket = socket;
    this.direction = direction;
    this.peer_id = peer_id;
    this.remote = remote;
    this.decoder = new FrameDecoder({ payload_bytes_max: frame_payload_bytes_max });
    this.writer = new CorkedWriter(socket);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => this.chargeFrameBytes(0));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    // A reset or broken pipe is an ordinary peer failure: remember it for the 'close' log line.
    socket.on('error', (error) => {
      this.last_error = error;
    });
  }

  get queued_bytes(): number {
    return this.socket.writableLength;
  }

  /**
   * Writes one frame unless that would take the connection's unsent bytes over
   * `queue_bytes_max`. Frames written in the same event-loop turn leave in one writev.
   */
  write(frame: Buffer, queue_bytes_max: number): 'written' | 'closed' | 'full' {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return 'closed';
    if (socket.writableLength + frame.length > queue_bytes_max) return 'full';
    this.writer.write(frame);
    return 'written';
  }

  /**
   * Charges what the decoder buffers for an incomplete frame (`buffered_bytes`) to the frame
   * budget; false when that takes the budget past its bound (the caller closes the connection).
   */
  chargeFrameBytes(buffered_bytes: number): boolean {
    this.frame_budget.release(this.frame_bytes_charged);
    this.frame_budget.charge(buffered_bytes);
    this.frame_bytes_charged = buffered_bytes;
    if (!this.frame_budget.exceeded) return true;
    this.frame_budget.release(buffered_bytes);
    this.frame_bytes_charged = 0;
    return false;
  }

  destroy(): void {
    if (this.connect_timer !== null) {
      clearTimeout(this.connect_timer);
      this.connect_timer = null;
    }
    this.clearHandshakeTimer();
    this.socket.destroy();
  }

  clearHandshakeTimer(): void {
    if (this.handshake_timer !== null) clearTimeout(this.handshake_timer);
    this.handshake_timer = null;
  }
}

interface PeerLink {
  readonly id: number;
  /**
   * Where to dial it; null for a peer known only by its inbound connections (a fresh joiner hears
   * from a leader before it knows the configuration): answered, never dialled.
   */
  address: PeerAddress | null;
  /** The socket we dialled, connecting or connected; null while backing off. */
  outbound: PeerConnection | null;
  outbound_state: PeerStatus['outbound'];
  backoff_timer: NodeJS.Timeout | null;
  /** Consecutive failed dials (or short-lived connections); drives the backoff cap. */
  failed_attempts: number;
  dial_count: number;
  dropped_messages: number;
  /**
   * Set while messages to this peer are being dropped for a full queue, so the warning is logged
   * once per episode.
   */
  queue_full: boolean;
  /**
   * The most recent inbound connection on which this peer sent a request: where its responses go.
   */
  response_route: PeerConnection | null;
  /** Date.now() when a message from this peer last arrived; 0: never. */
  last_contact_ms: number;
}

/**
 * The ids the handshake admits as peers: the current peer links, or any id while the transport
 * accepts unknown peers (a node that does not yet know its configuration). The handshake only asks
 * `has`; the fingerprint (and, with a secret, authentication) still has to pass.
 */
class AdmittedPeerIds extends Set<number> {
  accept_unknown = false;

  override has(id: number): boolean {
    return this.accept_unknown || super.has(id);
  }
}

/**
 * The sender id a request names; null for responses, which carry no sender id we trust for routing.
 */
function requestSenderId(message: RaftMessage): number | null {
  switch (message.type) {
    case MessageType.RequestVoteRequest:
    case MessageType.PreVoteRequest:
    case MessageType.TransferVoteRequest:
      return message.candidate_id;
    case MessageType.AppendEntriesRequest:
    case MessageType.TimeoutNow:
    case MessageType.InstallSnapshotRequest:
      return message.leader_id;
    default:
      return null;
  }
}

function sameAddress(a: PeerAddress | null, b: PeerAddress): boolean {
  return a !== null && a.host === b.host && a.raft_port === b.raft_port;
}

function describeCloseCause(error: Error | null): string {
  return error === null ? 'connection closed' : describeError(error);
}

/**
 * The Raft port: one outbound connection we dial to every peer, plus the
 * inbound connections peers dial to us.
 *
 * Routing rule (both ends follow it, so each TCP connection carries traffic
 * in a fixed pattern):
 * - Requests (RequestVote 1, AppendEntries 3, PreVote 5, TimeoutNow 7, InstallSnapshot 13) to
 *   peer X go on our OUTBOUND connection to X.
 * - Responses (2, 4, 6) to X go back on the connection the request came in
 *   on: the most recent INBOUND connection on which X sent us a request.
 * - A message arriving on our outbound connection to X is from X.
 * - A message arriving on an inbound connection is from the id its request
 *   names (candidate_id for 1/5, leader_id for 3/7/13). An inbound connection
 *   that names an unconfigured id, changes id, or sends a response is
 *   misbehaving and is closed with a warning; so is one whose bytes do not
 *   decode (WireError).
 *
 * Sending never blocks and never throws for a dead or slow peer: a message
 * with no usable connection, or one that would take that connection's unsent
 * bytes over `queue_bytes_max`, is dropped and counted. Raft retransmits, so
 * dropping is the correct way to shed load.
 */
export class PeerTransport {
  private readonly options: PeerTransportOptions;
  private readonly on_message: (from: number, message: RaftMessage) => void;
  private readonly logger: Logger;
  private readonly queue_bytes_max: number;
  private readonly frame_budget: MemoryBudget;
  private readonly backoff_base_ms: number;
  private readonly backoff_max_ms: number;
  private readonly random: () => number;
  private readonly connect_timeout_ms: number;
  private readonly frame_payload_bytes_max: number;
  private readonly links = new Map<number, PeerLink>();
  /** The handshake's view of `links` (see AdmittedPeerIds). */
  private readonly admitted_ids = new AdmittedPeerIds();
  private readonly handshake: HandshakeSettings | undefined;
  private readonly inbound = new Set<PeerConnection>();
  private readonly server: net.Server;
  /**
   * The listen attempt, so that close() during start() waits for it and then closes the listener
   * too.
   */
  private listening: Promise<void> | null = null;
  private request_order = 0;
  /** start() is dialling (setPeers dials new peers at once from then on). */
  private started = false;
  private closing: Promise<void> | null = null;
  /** When each handshake failure was last logged at warn/error, by connection and reason. */
  private readonly handshake_failures_logged = new Map<string, number>();

  constructor(
    options: PeerTransportOptions,
    on_message: (from: number, message: RaftMessage) => void,
  ) {
    this.options = options;
    this.on_message = on_message;
    this.logger = options.logger;
    this.queue_bytes_max = options.queue_bytes_max ?? LIMITS.peer_write_queue_bytes_max;
    this.frame_budget = new MemoryBudget(
      'peer_inbound_frame_bytes_total_max',
      options.frame_bytes_total_max ?? LIMITS.peer_inbound_frame_bytes_total_max,
    );
    this.backoff_base_ms = options.backoff_base_ms ?? DEFAULT_BACKOFF_BASE_MS;
    this.backoff_max_ms = Math.max(
      this.backoff_base_ms,
      options.backoff_max_ms ?? DEFAULT_BACKOFF_MAX_MS,
    );
    this.random = options.random ?? Math.random;
    this.connect_timeout_ms = options.connect_timeout_ms ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.frame_payload_bytes_max =
      options.frame_payload_bytes_max ?? LIMITS.raft_frame_payload_bytes_max;
    for (const address of options.peers) {
      if (address.id === options.self_id) continue;
      assert(!this.links.has(address.id), `peer id ${address.id} is configured twice`);
      this.addLink(address.id, address);
    }
    if (options.handshake !== undefined) {
      // The configured ids merged in: the peer set changes at run time (setPeers).
      for (const id of options.handshake.peer_ids) this.admitted_ids.add(id);
      this.handshake = { ...options.handshake, peer_ids: this.admitted_ids };
    } else {
      this.handshake = undefined;
    }
    this.server = createServer(options.tls ?? null, { mutual: true }, (socket) =>
      this.acceptInbound(socket),
    );
  }

  private addLink(id: number, address: PeerAddress | null): PeerLink {
    const link: PeerLink = {
      id,
      address,
      outbound: null,
      outbound_state: 'backoff',
      backoff_timer: null,
      failed_attempts: 0,
      dial_count: 0,
      dropped_messages: 0,
      queue_full: false,
      response_route: null,
      last_contact_ms: 0,
    };
    this.links.set(id, link);
    this.admitted_ids.add(id);
    return link;
  }

  /**
   * The peer set follows the configuration in the log (issue 15): dials new members, redials one
   * whose address changed, stops dialling removed ones and closes their connections (an address a
   * removed node used may now belong to a new id: links are by id). `accept_unknown`: admit
   * inbound connections from ids not in `peers` (a node that does not yet know its
   * configuration must answer the leader that adds it); they are answered, not dialled.
   */
  setPeers(peers: readonly PeerAddress[], accept_unknown = false): void {
    if (this.closing !== null) return;
    this.admitted_ids.accept_unknown = accept_unknown;
    const wanted = new Map<number, PeerAddress>();
    for (const address of peers)
      if (address.id !== this.options.self_id) wanted.set(address.id, address);
    for (const link of [...this.links.values()]) {
      const address = wanted.get(link.id);
      if (address === undefined) {
        if (!accept_unknown || link.address !== null) this.removeLink(link);
      } else if (!sameAddress(link.address, address)) {
        this.logger.info(`peer ${link.id} now at ${address.host}:${address.raft_port}`);
        this.stopDialling(link);
        link.address = address;
        if (this.dialling) this.dial(link);
      }
    }
    for (const [id, address] of wanted) {
      if (this.links.has(id)) continue;
      this.logger.info(`peer ${id} added (${address.host}:${address.raft_port})`);
      const link = this.addLink(id, address);
      if (this.dialling) this.dial(link);
    }
  }

  /** Whether start() has begun dialling and close() has not been called. */
  private get dialling(): boolean {
    return this.started && this.closing === null;
  }

  private removeLink(link: PeerLink): void {
    this.logger.info(`peer ${link.id} removed: no longer a member`);
    this.links.delete(link.id);
    this.admitted_ids.delete(link.id);
    this.stopDialling(link);
    for (const connection of this.inbound) if (connection.peer_id === link.id) connection.destroy();
  }

  /** Cancels a pending redial and closes the outbound connection (its close handler ignores it). */
  private stopDialling(link: PeerLink): void {
    if (link.backoff_timer !== null) clearTimeout(link.backoff_timer);
    link.backoff_timer = null;
    const outbound = link.outbound;
    link.outbound = null;
    link.outbound_state = 'backoff';
    outbound?.destroy();
  }

  /** The port the Raft listener is bound to (useful when listen_port is 0). */
  get bound_port(): number {
    return boundPort(this.server);
  }

  /**
   * Listens on the Raft port, then starts dialling every peer. Rejects with the listen error (e.g.
   * EADDRINUSE).
   */
  async start(): Promise<void> {
    assert(this.listening === null, 'PeerTransport.start called twice');
    this.listening = listen(
      this.server,
      this.options.listen_host,
      this.options.listen_port,
      (error) => this.logger.error(`raft listener error: ${describeError(error)}`),
    );
    await this.listening;
    if (this.closing !== null) return;
    this.logger.info(`raft listener on ${this.options.listen_host}:${this.bound_port}`);
    this.started = true;
    for (const link of this.links.values()) this.dial(link);
  }

  /**
   * Encodes and enqueues `message` for peer `to`; false (and a counted drop) when it cannot be
   * queued now.
   */
  send(to: number, message: RaftMessage): boolean {
    const link = this.links.get(to);
    if (link === undefined || this.closing !== null) return false;
    const connection = isRequest(message.type)
      ? link.outbound_state === 'connected'
        ? link.outbound
        : null
      : link.response_route;
    if (connection === null) {
      link.dropped_messages++;
      return false;
    }
    const written = connection.write(encodeMessage(message), this.queue_bytes_max);
    if (written !== 'written') {
      link.dropped_messages++;
      // 'closed': the link broke and its close handler will say so; the queue is not the cause.
      if (written === 'full' && !link.queue_full) {
        link.queue_full = true;
        this.logger.warn(
          `peer ${to}: ${connection.direction} write queue full ` +
            `(${connection.queued_bytes} bytes), dropping messages`,
        );
      }
      return false;
    }
    link.queue_full = false;
    return true;
  }

  status(): PeerStatus[] {
    const statuses: PeerStatus[] = [];
    const now_ms = Date.now();
    for (const [id, link] of this.links) {
      statuses.push({
        id,
        outbound: link.outbound_state,
        inbound_connected: link.response_route !== null,
        queued_bytes: (link.outbound?.queued_bytes ?? 0) + (link.response_route?.queued_bytes ?? 0),
        dropped_messages: link.dropped_messages,
        reconnects: Math.max(0, link.dial_count - 1),
        inbound: link.response_route === null ? 'idle' : 'connected',
        last_contact_age_ms: link.last_contact_ms === 0 ? null : now_ms - link.last_contact_ms,
      });
    }
    return statuses;
  }

  /**
   * Stops dialling and closes every socket and the listener; resolves once all of them are closed.
   */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    // A listen still in flight would otherwise finish after we looked and leave the port open.
    await this.listening?.catch(() => undefined);
    const closed: Promise<void>[] = [];
    for (const link of this.links.values()) {
      if (link.backoff_timer !== null) clearTimeout(link.backoff_timer);
      link.backoff_timer = null;
      if (link.outbound !== null) {
        closed.push(link.outbound.closed);
        link.outbound.destroy();
      }
    }
    for (const connection of this.inbound) {
      closed.push(connection.closed);
      connection.destroy();
    }
    if (this.server.listening) {
      closed.push(new Promise<void>((resolve) => this.server.close(() => resolve())));
    }
    await Promise.all(closed);
  }

  private dial(link: PeerLink): void {
    link.backoff_timer = null;
    if (this.closing !== null || link.address === null || this.links.get(link.id) !== link) return;
    const { id, host, raft_port } = link.address;
    link.outbound_state = 'connecting';
    link.dial_count++;
    // From our own address, so peers (and firewall rules) see which node a connection comes from.
    const socket = dial(this.options.tls ?? null, host, raft_port, this.options.listen_host);
    const connection = new PeerConnection(
      socket,
      'outbound',
      id,
      `${host}:${raft_port}`,
      this.frame_payload_bytes_max,
      this.frame_budget,
    );
    link.outbound = connection;
    this.startHandshake(connection, id);
    connection.connect_timer = setTimeout(() => {
      connection.connect_timer = null;
      connection.last_error = new Error(`connect timeout after ${this.connect_timeout_ms} ms`);
      socket.destroy();
    }, this.connect_timeout_ms);
    socket.once(connectedEvent(this.options.tls ?? null), () => {
      if (connection.connect_timer !== null) clearTimeout(connection.connect_timer);
      connection.connect_timer = null;
      connection.connected_at_ms = Date.now();
      this.flushHandshake(connection);
      if (connection.handshake?.may_send_raft === false) return; // up once authenticated
      this.outboundUp(link, connection);
    });
    socket.on('data', (chunk: Buffer) => {
      const messages = this.receive(connection, chunk);
      if (messages.length > 0) link.last_contact_ms = Date.now();
      for (const message of messages) {
        if (socket.destroyed || !this.admissible(connection, message)) return;
        this.on_message(id, message);
      }
    });
    socket.once('close', () => {
      if (connection.connect_timer !== null) clearTimeout(connection.connect_timer);
      connection.connect_timer = null;
      connection.clearHandshakeTimer();
      if (link.outbound !== connection) return;
      link.outbound = null;
      link.outbound_state = 'backoff';
      if (this.closing !== null) return;
      const was_connected = connection.connected_at_ms !== 0;
      if (was_connected) {
        this.logger.info(
          `peer ${id} down (${connection.remote}): ${describeCloseCause(connection.last_error)}`,
        );
      } else {
        this.logger.debug(
          `peer ${id} dial ${connection.remote} failed: ` +
            `${describeCloseCause(connection.last_error)}`,
        );
      }
      // A connection that lived a while was healthy: start backing off from the base again.
      const lived_ms = was_connected ? Date.now() - connection.connected_at_ms : 0;
      if (lived_ms >= this.backoff_max_ms) link.failed_attempts = 0;
      this.scheduleDial(link);
    });
  }

  private scheduleDial(link: PeerLink): void {
    link.failed_attempts++;
    const delay_ms = backoffDelay(
      link.failed_attempts,
      this.backoff_base_ms,
      this.backoff_max_ms,
      this.random,
    );
    link.backoff_timer = setTimeout(() => this.dial(link), delay_ms);
  }

  private acceptInbound(socket: net.Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.closing === null && this.inbound.size >= LIMITS.peer_inbound_connections_max)
      this.evictAnonymousInbound();
    if (this.closing !== null || this.inbound.size >= LIMITS.peer_inbound_connections_max) {
      socket.on('error', () => undefined);
      socket.destroy();
      if (this.closing === null) {
        this.logger.warn(
          `raft inbound from ${remote} refused: ` +
            `${LIMITS.peer_inbound_connections_max} inbound connections open`,
        );
      }
      return;
    }
    const connection = new PeerConnection(
      socket,
      'inbound',
      null,
      remote,
      this.frame_payload_bytes_max,
      this.frame_budget,
    );
    this.inbound.add(connection);
    this.logger.debug(`raft inbound connection from ${remote}`);
    this.startHandshake(connection, null);
    socket.on('data', (chunk: Buffer) => {
      const messages = this.receive(connection, chunk);
      for (const message of messages) {
        if (socket.destroyed || !this.admissible(connection, message)) return;
        const from = this.attributeInbound(connection, message);
        if (from === null) return;
        this.on_message(from, message);
      }
    });
    socket.once('close', () => {
      connection.clearHandshakeTimer();
      this.inbound.delete(connection);
      this.logger.debug(
        `raft inbound connection from ${remote} closed: ` +
          `${describeCloseCause(connection.last_error)}`,
      );
      if (connection.peer_id === null) return;
      const link = this.links.get(connection.peer_id);
      if (link === undefined || link.response_route !== connection) return;
      link.response_route = this.newestInboundFrom(connection.peer_id);
    });
  }

  /**
   * At the inbound limit, make room by closing the oldest connection that has
   * never sent a request: silent sockets (scanners, half-dead peers) must not
   * lock real peers out. (A follower's own outbound link is silent too until
   * it campaigns, so silence alone is no reason to close a connection.)
   */
  private evictAnonymousInbound(): void {
    for (const connection of this.inbound) {
      if (connection.peer_id !== null) continue;
      this.logger.warn(
        `raft inbound ${connection.remote} closed to make room: it never sent a request`,
      );
      this.inbound.delete(connection);
      connection.destroy();
      return;
    }
  }

  /**
   * Applies the inbound half of the routing rule; returns the sender, or null after closing a
   * misbehaving connection.
   */
  private attributeInbound(connection: PeerConnection, message: RaftMessage): number | null {
    const sender = requestSenderId(message);
    const problem =
      sender === null
        ? `sent response type ${message.type} on an inbound connection`
        : !this.links.has(sender) && !this.admitted_ids.accept_unknown
          ? `request names unknown node id ${sender}`
          : connection.peer_id !== null && connection.peer_id !== sender
            ? `request names node id ${sender} on a connection from node ${connection.peer_id}`
            : null;
    const link =
      sender === null ? undefined : (this.links.get(sender) ?? this.answerOnly(sender, problem));
    if (problem !== null || sender === null || link === undefined) {
      this.logger.warn(
        `raft inbound ${connection.remote} closed: ${problem ?? 'unroutable request'}`,
      );
      connection.destroy();
      return null;
    }
    if (connection.peer_id === null) {
      connection.peer_id = sender;
      this.logger.debug(`raft inbound ${connection.remote} is peer ${sender}`);
      // The peer is evidently back: stop waiting out the backoff and dial it now.
      if (
        link.outbound_state === 'backoff' &&
        link.backoff_timer !== null &&
        this.closing === null
      ) {
        clearTimeout(link.backoff_timer);
        link.failed_attempts = 0;
        this.dial(link);
      }
    }
    connection.last_request_order = ++this.request_order;
    link.response_route = connection;
    link.last_contact_ms = Date.now();
    return sender;
  }

  /** While unknown peers are accepted: a link to answer `sender` on, never dialled. */
  private answerOnly(sender: number, problem: string | null): PeerLink | undefined {
    if (problem !== null || sender === this.options.self_id) return undefined;
    this.logger.info(`peer ${sender} admitted before this node knows its configuration`);
    return this.addLink(sender, null);
  }

  /**
   * After the response route closes, fall back to the open inbound connection on which that peer
   * last sent a request.
   */
  private newestInboundFrom(peer_id: number): PeerConnection | null {
    let newest: PeerConnection | null = null;
    for (const connection of this.inbound) {
      if (connection.peer_id !== peer_id || connection.socket.destroyed) continue;
      if (newest === null || connection.last_request_order > newest.last_request_order)
        newest = connection;
    }
    return newest;
  }

  private outboundUp(link: PeerLink, connection: PeerConnection): void {
    link.outbound_state = 'connected';
    link.queue_full = false;
    this.logger.info(`peer ${link.id} up (${connection.remote})`);
  }

  private startHandshake(connection: PeerConnection, dialled_id: number | null): void {
    const settings = this.handshake;
    if (settings === undefined) return;
    const role = connection.direction === 'outbound' ? 'dialer' : 'acceptor';
    connection.handshake = new PeerHandshake(settings, role, dialled_id);
    if (connection.direction === 'inbound') this.flushHandshake(connection);
    // Open mode waits for no answer (a seed peer never sends one); authentication must finish soon.
    if (settings.secret === null) return;
    connection.handshake_timer = setTimeout(() => {
      connection.handshake_timer = null;
      if (connection.handshake === null) return;
      this.logHandshakeFailure(
        connection,
        `no authenticated handshake within ${LIMITS.peer_handshake_timeout_ms} ms`,
        false,
      );
      connection.destroy();
    }, LIMITS.peer_handshake_timeout_ms);
  }

  /** Writes the handshake frames waiting to go out (handshake bytes are never dropped). */
  private flushHandshake(connection: PeerConnection): void {
    const handshake = connection.handshake;
    if (handshake === null) return;
    for (const frame of handshake.takeOutgoing()) connection.socket.write(frame);
  }

  /**
   * Bytes from the socket: to the handshake until it completes, then to the decoder. Returns the
   * Raft messages received.
   */
  private receive(connection: PeerConnection, chunk: Buffer): RaftMessage[] {
    const handshake = connection.handshake;
    if (handshake === null) return this.decode(connection, chunk);
    const result = handshake.push(chunk);
    this.flushHandshake(connection);
    if (result.kind === 'pending') return [];
    if (result.kind === 'failed') {
      this.logHandshakeFailure(connection, result.reason, result.mismatch);
      // Let our answer (which names our members) reach the peer before closing.
      connection.clearHandshakeTimer();
      connection.socket.end();
      connection.socket.once('finish', () => connection.destroy());
      setTimeout(() => connection.destroy(), HANDSHAKE_LINGER_MS).unref();
      return [];
    }
    connection.handshake = null;
    connection.clearHandshakeTimer();
    if (connection.direction === 'inbound' && result.peer_id !== null) {
      connection.peer_id = result.peer_id;
      this.logger.debug(`raft inbound ${connection.remote} is peer ${result.peer_id}`);
    }
    if (connection.direction === 'outbound' && this.options.handshake?.secret != null) {
      const link = connection.peer_id === null ? undefined : this.links.get(connection.peer_id);
      if (link !== undefined && link.outbound === connection) this.outboundUp(link, connection);
    }
    if (
      this.holdUntilIncarnationDurable(
        connection,
        result.peer_id,
        result.peer_incarnation,
        result.rest,
      )
    )
      return [];
    return result.rest.length === 0 ? [] : this.decode(connection, result.rest);
  }

  /**
   * A peer's first sighting is written to peer_incarnations before any Raft frame of it is read:
   * reading pauses, `rest` goes back in front of the socket's buffer, and reading resumes once
   * the write is durable (a failed write closes the connection). False when nothing waits.
   */
  private holdUntilIncarnationDurable(
    connection: PeerConnection,
    peer_id: number | null,
    incarnation: Buffer | null,
    rest: Buffer,
  ): boolean {
    const settings = this.options.handshake?.incarnation;
    if (settings === undefined || peer_id === null || incarnation === null) return false;
    const memory = settings.memory;
    // The test fault: another incarnation is let in and the remembered one kept.
    if (!settings.check && memory.recall(peer_id) !== null) return false;
    const durable = memory.remember(peer_id, incarnation);
    if (durable === 'durable') return false;
    const socket = connection.socket;
    socket.pause();
    if (rest.length > 0) socket.unshift(rest);
    durable.then(
      () => {
        if (!socket.destroyed) socket.resume();
      },
      (error: unknown) => {
        this.logger.error(
          `raft ${connection.direction} ${connection.remote} closed: cannot remember the ` +
            `incarnation of node ${peer_id}: ${describeError(error)}`,
        );
        connection.destroy();
      },
    );
    return true;
  }

  /**
   * A config mismatch is logged as an error (someone must fix a file); other failures (strangers,
   * timeouts) as warnings. Either is logged at most once a minute per peer and reason.
   */
  private logHandshakeFailure(connection: PeerConnection, reason: string, mismatch: boolean): void {
    const who =
      connection.direction === 'outbound'
        ? `raft outbound to peer ${connection.peer_id} (${connection.remote})`
        : `raft inbound ${connection.remote}`;
    const key = `${connection.direction} ${connection.peer_id} ${reason}`;
    const now_ms = Date.now();
    const last_ms = this.handshake_failures_logged.get(key);
    if (last_ms !== undefined && now_ms - last_ms < HANDSHAKE_FAILURE_LOG_INTERVAL_MS) {
      this.logger.debug(`${who} closed: handshake failed: ${reason}`);
      return;
    }
    if (this.handshake_failures_logged.size >= HANDSHAKE_FAILURE_KEYS_MAX)
      this.handshake_failures_logged.clear();
    this.handshake_failures_logged.set(key, now_ms);
    const line = `${who} closed: handshake failed: ${reason}`;
    if (mismatch) this.logger.error(line);
    else this.logger.warn(line);
  }

  /** False after closing the connection when validate_message refuses `message`. */
  private admissible(connection: PeerConnection, message: RaftMessage): boolean {
    const problem = this.options.validate_message?.(message) ?? null;
    if (problem === null) return true;
    this.logger.warn(
      `raft ${connection.direction} ${connection.remote} closed: ` +
        `refused message type ${message.type}: ${problem}`,
    );
    connection.destroy();
    return false;
  }

  /** Decodes a chunk; on malformed bytes closes just this connection and returns nothing. */
  private decode(connection: PeerConnection, chunk: Buffer): RaftMessage[] {
    try {
      const messages = connection.decoder.push(chunk);
      if (connection.chargeFrameBytes(connection.decoder.buffered_bytes)) return messages;
      this.logger.warn(
        `raft ${connection.direction} ${connection.remote} closed: incomplete frames of all ` +
          `peer connections would exceed peer_inbound_frame_bytes_total_max ` +
          `(${this.frame_budget.bytes_max} bytes)`,
      );
      connection.destroy();
      return [];
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.logger.warn(
        `raft ${connection.direction} ${connection.remote} ` +
          `closed: malformed frame: ${error.message}`,
      );
      connection.destroy();
      return [];
    }
  }
}
