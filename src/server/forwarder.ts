import type * as net from 'node:net';
import { encodeCommand, ReplyParser } from '../resp/client_codec';
import { CorkedWriter } from '../util/corked_writer';
import { LIMITS } from '../util/limits';
import { TurnBudget } from '../util/turn_budget';
import type { Logger } from '../util/log';
import { connectedEvent, dial, type TlsSettings } from './tls_settings';

/**
 * A follower's multiplexed link to the leader's client port. Each client request is relayed as
 * `RAFT.FWD <stream> <id> <command...>`: `stream` is the client connection's id on this node, `id`
 * numbers the request on this link. The leader serves each stream in its own order (one client's
 * pipeline keeps Redis order) but streams independently of each other, and answers each request as
 * soon as it is done with a RESP3 push `>2 :<id> <reply>`, so one client's slow request never
 * holds another client's reply (no head-of-line blocking across clients). Replies are matched by
 * id, so a reply can never be given to another request (redisraft #26).
 *
 * The first command on every link is `RAFT.PROXY`, which tells the leader
 * not to forward anything it receives there again: a node that is not the
 * leader answers such requests with `-TRYAGAIN not the leader` instead, so
 * two nodes with stale views can never bounce a request between them.
 */
export const PROXY_HELLO = 'RAFT.PROXY';
export const NOT_LEADER_PREFIX = '-TRYAGAIN not the leader';
/** A relayed request on a multiplexed link: `RAFT.FWD <stream> <id> <command...>`. */
export const FORWARD_COMMAND = 'RAFT.FWD';

/** The leader's answer to `RAFT.FWD ... <id> ...`: a RESP3 push of the id and the reply. */
export function encodeForwardedReply(id: Buffer, reply: Buffer): Buffer {
  const header = `>2\r\n:${id.toString('latin1')}\r\n`;
  return Buffer.concat([Buffer.from(header, 'latin1'), reply]);
}

const FORWARDED_REPLY_PREFIX = Buffer.from('>2\r\n:', 'latin1');

/**
 * The id and reply of a push `encodeForwardedReply` made (`bytes` is one whole parsed reply);
 * null if it is not one.
 */
export function decodeForwardedReply(bytes: Buffer): { id: number; reply: Buffer } | null {
  const prefix = FORWARDED_REPLY_PREFIX;
  if (
    bytes.length <= prefix.length ||
    bytes.compare(prefix, 0, prefix.length, 0, prefix.length) !== 0
  )
    return null;
  const end = bytes.indexOf('\r\n', prefix.length, 'latin1');
  if (end < 0) return null;
  const text = bytes.toString('latin1', prefix.length, end);
  if (!/^[0-9]{1,15}$/.test(text)) return null;
  return { id: Number(text), reply: bytes.subarray(end + 2) };
}

export type ForwardResult =
  /** The leader's reply, exactly as it sent it. */
  | { kind: 'reply'; bytes: Buffer }
  /** Certainly not executed: the request never left this node. */
  | { kind: 'not_sent' }
  /** The link failed after the request was written: it may or may not have run. */
  | { kind: 'unknown' };

interface PendingForward {
  resolve: (result: ForwardResult) => void;
  /** Written to a connected socket. */
  sent: boolean;
  timer: NodeJS.Timeout | null;
}

/** Replies all forwarding links of this process settle per event-loop turn. */
const REPLY_TURN_BUDGET = new TurnBudget(LIMITS.forward_replies_per_turn_max);
/** How long a deposed leader may still answer requests relayed to it before its link is closed. */
const LEADER_CHANGE_GRACE_MS = 1_000;
/** Keep-alive probes notice a leader host that vanished without closing the connection. */
const KEEPALIVE_INITIAL_DELAY_MS = 5_000;

class LeaderLink {
  private readonly socket: net.Socket;
  private readonly parser = new ReplyParser();
  /** Requests written (or to be written) and not yet answered, by request id. */
  private readonly pending = new Map<number, PendingForward>();
  private next_request_id = 1;
  private connected = false;
  /** Replies to the link's opening commands (AUTH, RAFT.PROXY) still to come. */
  private hello_replies_pending: number;
  private readonly writer: CorkedWriter;
  closed = false;

  constructor(
    readonly address: string,
    host: string,
    port: number,
    private readonly logger: Logger,
    private readonly on_closed: (link: LeaderLink) => void,
    client_password: Buffer | null,
    tls: TlsSettings | null,
    hello_args: readonly string[],
    local_address: string | undefined,
  ) {
    // From the node's own address, like Raft traffic: a partition cuts forwarding too.
    this.socket = dial(tls, host, port, local_address);
    this.socket.setNoDelay(true);
    this.writer = new CorkedWriter(this.socket);
    this.socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    this.socket.on(connectedEvent(tls), () => {
      this.connected = true;
      for (const item of this.pending.values()) item.sent = true;
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error) =>
      this.logger.debug(`forward link to ${address}: ${error.message}`),
    );
    this.socket.on('close', () => this.fail());
    // With client AUTH on, the leader asks this link for the password like any client's.
    const hello: (Buffer | string)[][] = [[PROXY_HELLO, ...hello_args]];
    if (client_password !== null) hello.unshift([Buffer.from('AUTH'), client_password]);
    this.hello_replies_pending = hello.length;
    this.socket.write(Buffer.concat(hello.map((command) => encodeCommand(command))));
  }

  get pending_count(): number {
    return this.pending.size;
  }

  /**
   * Relays one request of client stream `stream`. A leader that stops answering without closing
   * the connection (paused, partitioned) must not hold the request forever: at `deadline_ms` this
   * request alone settles (outcome unknown) and its late reply, matched by id, is dropped; the
   * other requests on the link are unaffected.
   */
  forward(args: readonly Buffer[], deadline_ms: number, stream: number): Promise<ForwardResult> {
    if (this.closed) return Promise.resolve({ kind: 'not_sent' });
    if (this.pending.size >= LIMITS.forward_pending_requests_max)
      return Promise.resolve({ kind: 'not_sent' });
    // A leader that stopped reading must not make us buffer without bound.
    if (this.socket.writableLength > LIMITS.client_write_queue_bytes_max)
      return Promise.resolve({ kind: 'not_sent' });
    const id = this.next_request_id++;
    return new Promise((resolve) => {
      const item: PendingForward = { resolve, sent: this.connected, timer: null };
      item.timer = setTimeout(() => this.abandon(id, item), Math.max(deadline_ms - Date.now(), 1));
      this.pending.set(id, item);
      // Requests relayed in the same turn leave in one write, as the client pipelined them.
      this.writer.write(encodeCommand([FORWARD_COMMAND, String(stream), String(id), ...args]));
    });
  }

  close(): void {
    this.socket.destroy();
    this.fail();
  }

  private abandon(id: number, item: PendingForward): void {
    // Never written: closing the link is the only way to be sure it never runs.
    if (!item.sent) {
      this.logger.warn(`forward link to ${this.address}: not connected by the request deadline`);
      this.close();
      return;
    }
    this.logger.debug(`forward link to ${this.address}: no reply before the request deadline`);
    this.pending.delete(id);
    item.timer = null;
    item.resolve({ kind: 'unknown' });
  }

  private onData(chunk: Buffer): void {
    let replies: Buffer[];
    try {
      replies = this.parser.pushRaw(chunk);
    } catch (error) {
      this.refuse(`bad reply bytes (${(error as Error).message})`);
      return;
    }
    // One poll can hand us megabytes of replies: past a turn's share, read on in the next turn.
    if (!REPLY_TURN_BUDGET.take(replies.length, () => this.socket.resume())) this.socket.pause();
    for (const bytes of replies) {
      const forwarded = decodeForwardedReply(bytes);
      if (forwarded !== null) {
        const item = this.pending.get(forwarded.id);
        if (item === undefined) continue; // its deadline passed: the caller was answered
        this.pending.delete(forwarded.id);
        if (item.timer !== null) clearTimeout(item.timer);
        item.resolve({ kind: 'reply', bytes: forwarded.reply });
        continue;
      }
      if (this.hello_replies_pending === 0) {
        this.refuse('a reply that answers no request');
        return;
      }
      this.hello_replies_pending -= 1;
      if (bytes[0] === 0x2d) {
        this.refuse(`opening refused (${bytes.toString('latin1', 1).trimEnd()})`);
        return;
      }
    }
  }

  private refuse(why: string): void {
    this.logger.warn(`forward link to ${this.address}: ${why}; closing`);
    this.close();
  }

  private fail(): void {
    if (this.closed) return;
    this.closed = true;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const item of pending) {
      if (item.timer !== null) clearTimeout(item.timer);
      item.resolve(item.sent ? { kind: 'unknown' } : { kind: 'not_sent' });
    }
    this.on_closed(this);
  }
}

export class LeaderForwarder {
  private readonly links = new Map<string, LeaderLink>();
  private readonly grace_timers = new Set<NodeJS.Timeout>();
  private retained: string | null = null;

  /**
   * `hello_args` follow RAFT.PROXY on every link: the view and protocol (e.g. `redis 3`) the
   * leader answers this forwarder's requests in.
   */
  constructor(
    private readonly logger: Logger,
    private readonly client_password: Buffer | null = null,
    private readonly tls: TlsSettings | null = null,
    private readonly hello_args: readonly string[] = [],
    /** The address to dial from (the node's own); undefined lets the OS choose. */
    private readonly local_address?: string,
  ) {}

  /**
   * Relays a request on one of a small pool of links to the leader, chosen by `client_id`: one
   * client's requests always share a link, which keeps their order (the leader serves each
   * client's stream in order), while other clients' requests, on this link or another, are
   * answered independently of them.
   */
  forward(
    host: string,
    port: number,
    args: readonly Buffer[],
    deadline_ms: number,
    client_id: number,
  ): Promise<ForwardResult> {
    const address = `${host}:${port}`;
    const key = `${address}#${client_id % LIMITS.forward_links_per_leader_max}`;
    let link = this.links.get(key);
    if (link === undefined || link.closed) {
      const opened = new LeaderLink(
        address,
        host,
        port,
        this.logger,
        () => {
          if (this.links.get(key) === opened) this.links.delete(key);
        },
        this.client_password,
        this.tls,
        this.hello_args,
        this.local_address,
      );
      link = opened;
      this.links.set(key, link);
    }
    return link.forward(args, deadline_ms, client_id);
  }

  /**
   * Closes links to nodes that are no longer the leader: idle ones at once,
   * busy ones after a grace period in which a deposed leader that is alive
   * still answers what it already took (a paused or cut-off one does not,
   * and its requests then settle: reads are retried at the new leader,
   * writes already sent report an unknown outcome).
   */
  retainOnly(address: string | null): void {
    this.retained = address;
    for (const link of this.links.values()) {
      const key = link.address;
      if (key === address) continue;
      if (link.pending_count === 0) {
        link.close();
        continue;
      }
      const timer = setTimeout(() => {
        this.grace_timers.delete(timer);
        if (this.retained !== key) link.close(); // unless it became the leader again meanwhile
      }, LEADER_CHANGE_GRACE_MS);
      this.grace_timers.add(timer);
    }
  }

  close(): void {
    for (const timer of this.grace_timers) clearTimeout(timer);
    this.grace_timers.clear();
    for (const link of [...this.links.values()]) link.close();
    this.links.clear();
  }
}
