/**
 * One pipelined TCP connection to one node. Requests are written in order
 * and replies matched to them first-in first-out. Requests enqueued in the
 * same tick go out in one corked socket write.
 *
 * The connection never retries: it reports each request's outcome (a reply,
 * or a failure that says whether the request reached the wire) and leaves
 * the decision to the caller.
 */
import net from 'node:net';
import { ReplyParser, type Reply, type ReplyParserOptions } from '../resp/client_codec';
import { RespProtocolError } from '../util/errors';
import { assert } from '../util/assert';
import { ConnectionError, type KvClientError, ProtocolError } from './errors';
import type { HostPort } from '../util/address';
import { Fifo } from '../util/fifo';

/** Batches up to this size are copied into one buffer before writing; larger ones use writev. */
const FLUSH_COPY_BYTES_MAX = 64 * 1024;

export type RequestOutcome =
  | { kind: 'reply'; reply: Reply }
  /** `written`: the request was handed to the socket, so the server may have acted on it. */
  | { kind: 'failed'; written: boolean; error: KvClientError };

export interface OutboundRequest {
  readonly bytes: Buffer;
  /** Set by the connection when the request is handed to the socket. */
  written: boolean;
  /**
   * Set through Connection.abandon when the owner no longer wants the outcome: an unsent request is
   * dropped, a reply discarded.
   */
  abandoned: boolean;
  /** Called exactly once unless abandoned first. */
  settle(outcome: RequestOutcome): void;
}

/** Hooks for the owner. Called synchronously; they must not throw. */
export interface ConnectionEvents {
  /** The connection failed or was closed; it will never be usable again. */
  closed(connection: Connection): void;
  /** Every request has been answered. */
  idle(connection: Connection): void;
  /** One batched socket write happened. */
  wrote(connection: Connection): void;
}

export interface ConnectionOptions {
  connect_timeout_ms: number;
  /**
   * Abandoned requests still owed a reply; beyond it the connection is
   * dropped, so a server that stopped answering cannot grow the queue forever.
   */
  abandoned_requests_max: number;
  parser?: ReplyParserOptions;
}

export class Connection {
  readonly address: string;
  private readonly socket: net.Socket;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  private readonly unsent = new Fifo<OutboundRequest>();
  /**
   * Written requests awaiting replies, oldest first; abandoned ones stay to keep the FIFO matching
   * right.
   */
  private readonly inflight = new Fifo<OutboundRequest>();
  private flush_scheduled = false;
  /** Abandoned requests still in unsent or inflight. */
  private abandoned_count = 0;
  private readonly abandoned_requests_max: number;
  private readonly parser: ReplyParser;
  private connect_timer: NodeJS.Timeout | null;
  private failure: KvClientError | null = null;
  private readonly closed: Promise<void>;
  private readonly events: ConnectionEvents;

  constructor(
    address: string,
    target: HostPort,
    options: ConnectionOptions,
    events: ConnectionEvents,
  ) {
    this.address = address;
    this.events = events;
    this.abandoned_requests_max = options.abandoned_requests_max;
    this.parser = new ReplyParser(options.parser);
    this.socket = net.connect({ host: target.host, port: target.port });
    this.socket.setNoDelay(true);
    this.connect_timer = setTimeout(() => {
      this.fail(
        new ConnectionError(address, `connect timed out after ${options.connect_timeout_ms} ms`),
      );
    }, options.connect_timeout_ms);
    this.socket.on('connect', () => this.onConnect());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // The server's FIN: no reply can follow, and Node refuses writes from here on while 'close'
    // is still a few ticks away, so a request enqueued now would be lost unsent yet look written.
    this.socket.on('end', () =>
      this.fail(new ConnectionError(address, 'connection closed by the server')),
    );
    this.socket.on('error', (error: Error) => {
      this.failure ??= new ConnectionError(address, error.message, { cause: error });
    });
    this.closed = new Promise((resolve) => {
      this.socket.on('close', () => {
        this.onSocketClosed();
        resolve();
      });
    });
  }

  isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Requests not yet answered, including abandoned ones still owed a reply. */
  outstanding(): number {
    return this.unsent.length + this.inflight.length;
  }

  /** Requests not yet answered whose owner still wants the answer. */
  liveOutstanding(): number {
    return this.outstanding() - this.abandoned_count;
  }

  /** The owner gives up on a request it enqueued here that has not been settled yet. */
  abandon(request: OutboundRequest): void {
    if (request.abandoned || this.state === 'closed') return;
    request.abandoned = true;
    this.abandoned_count += 1;
    if (this.abandoned_count > this.abandoned_requests_max) {
      // Deferred: the owner is in the middle of settling a call.
      process.nextTick(() =>
        this.fail(
          new ConnectionError(
            this.address,
            `${this.abandoned_count} requests abandoned without a reply`,
          ),
        ),
      );
    }
  }

  enqueue(request: OutboundRequest): void {
    assert(this.state !== 'closed', 'enqueue on a closed connection');
    this.unsent.push(request);
    if (this.state === 'open' && !this.flush_scheduled) {
      this.flush_scheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  /** Fails every request and closes the socket; resolves once it is closed. */
  close(
    reason: KvClientError = new ConnectionError(this.address, 'connection closed by the client'),
  ): Promise<void> {
    this.fail(reason);
    return this.closed;
  }

  private onConnect(): void {
    if (this.state !== 'connecting') return;
    this.state = 'open';
    this.clearConnectTimer();
    this.flush();
  }

  private flush(): void {
    this.flush_scheduled = false;
    if (this.state !== 'open') return;
    const batch: Buffer[] = [];
    let batch_bytes = 0;
    for (let request = this.unsent.shift(); request !== undefined; request = this.unsent.shift()) {
      if (request.abandoned) {
        this.abandoned_count -= 1;
        continue;
      }
      request.written = true;
      this.inflight.push(request);
      batch.push(request.bytes);
      batch_bytes += request.bytes.length;
    }
    if (batch.length === 0) return;
    if (batch_bytes <= FLUSH_COPY_BYTES_MAX) {
      // Copying small requests together is cheaper than a writev of many tiny buffers.
      this.socket.write(
        batch.length === 1 ? (batch[0] as Buffer) : Buffer.concat(batch, batch_bytes),
      );
    } else {
      // Corked writes leave as one writev: one syscall, no copy of large values.
      this.socket.cork();
      for (const bytes of batch) this.socket.write(bytes);
      this.socket.uncork();
    }
    this.events.wrote(this);
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    let replies: Reply[];
    try {
      replies = this.parser.push(chunk);
    } catch (error) {
      if (!(error instanceof RespProtocolError)) throw error;
      this.fail(
        new ProtocolError(`${this.address}: unparsable reply: ${error.message}`, { cause: error }),
      );
      return;
    }
    for (const reply of replies) {
      const request = this.inflight.shift();
      if (request === undefined) {
        this.fail(new ProtocolError(`${this.address}: reply received with no request outstanding`));
        return;
      }
      if (request.abandoned) this.abandoned_count -= 1;
      else request.settle({ kind: 'reply', reply });
      if (this.isClosed()) return;
    }
    if (replies.length > 0 && this.liveOutstanding() === 0) this.events.idle(this);
  }

  private fail(error: KvClientError): void {
    if (this.state === 'closed') return;
    this.failure ??= error;
    this.state = 'closed';
    this.clearConnectTimer();
    this.socket.destroy();
    // Tell the owner first, so that a retry triggered by a settle below opens a fresh connection.
    this.events.closed(this);
    const failure = this.failure;
    this.abandoned_count = 0;
    for (const request of this.inflight.drain()) {
      if (!request.abandoned) request.settle({ kind: 'failed', written: true, error: failure });
    }
    for (const request of this.unsent.drain()) {
      if (!request.abandoned) request.settle({ kind: 'failed', written: false, error: failure });
    }
  }

  private onSocketClosed(): void {
    this.fail(this.failure ?? new ConnectionError(this.address, 'connection closed by the server'));
  }

  private clearConnectTimer(): void {
    if (this.connect_timer !== null) {
      clearTimeout(this.connect_timer);
      this.connect_timer = null;
    }
  }
}
