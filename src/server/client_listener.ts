import * as net from 'node:net';
import { RequestParser, type RequestParserOptions } from '../resp/request_parser';
import { encodeError } from '../resp/reply';
import { assert } from '../util/assert';
import { describeError, type RespProtocolError } from '../util/errors';
import { Fifo } from '../util/fifo';
import { boundPort, listen } from './listen';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';

export interface ClientReply {
  reply: Buffer;
  /** Close the connection once this reply (and every earlier one) is written, e.g. after QUIT. */
  close_after?: boolean;
}

export interface ClientConnectionInfo {
  id: number;
  remote: string;
  /** Set by the handler, e.g. to mark a follower's forwarding connection. */
  tags: Set<string>;
}

/**
 * Runs one command. Called in request order; the returned promises may settle
 * in any order, replies are still written in request order.
 */
export type ClientHandler = (
  args: Buffer[],
  connection: ClientConnectionInfo,
) => ClientReply | Promise<ClientReply>;

export interface ClientListenerOptions {
  host: string;
  port: number;
  logger: Logger;
  /**
   * Commands of one connection handed to the handler and not yet written back; beyond it reading
   * pauses.
   */
  pipeline_requests_max?: number;
  /** Reply bytes waiting in one socket's write buffer beyond which reading pauses. */
  write_queue_bytes_max?: number;
  connections_max?: number;
  parser_options?: RequestParserOptions;
}

/**
 * Ready replies are concatenated into writes of about this size; larger replies are written alone.
 */
const REPLY_COALESCE_BYTES_MAX = 256 * 1024;
const KEEPALIVE_INITIAL_DELAY_MS = 300_000;
/**
 * After we end a connection we keep reading (and discarding) until the client
 * closes its side, because closing with unread input makes the kernel send a
 * RST that can destroy our last reply in flight; a client that never closes
 * is cut off after this long.
 */
const END_LINGER_MS = 5_000;
const INTERNAL_ERROR_REPLY = encodeError('ERR internal error');
const MAX_CLIENTS_REPLY = encodeError('ERR max number of clients reached');

/** Where one command's reply will go; filled when its handler settles. */
interface ReplySlot {
  reply: Buffer | null;
  close_after: boolean;
}

/**
 * A connection's life, one state at a time. Flow control (reading paused, a flush scheduled) is
 * kept apart: it applies alike in several of these states.
 */
type ConnectionState =
  /** Reading and running commands. */
  | 'open'
  /** The client half-closed: run what it sent, write every reply, then end. */
  | 'input_ended'
  /** Its bytes stopped parsing: run the commands before the bad bytes, reply the error, end. */
  | 'protocol_error'
  /** A command replied close_after (QUIT): what was pipelined after it is never run (Redis). */
  | 'quitting'
  /** Our side is ended; input is read only to notice the client closing. */
  | 'ending'
  /** The socket is closed; late handler results are dropped. */
  | 'closed';

class ClientConnection {
  readonly info: ClientConnectionInfo;
  readonly socket: net.Socket;
  readonly parser: RequestParser;
  /** Dispatched commands in request order; written from the head as they become ready. */
  readonly slots = new Fifo<ReplySlot>();
  /** Parsed commands waiting for room in the pipeline. */
  readonly backlog = new Fifo<Buffer[]>();
  /** In 'protocol_error': the error reply to queue once every command before it is dispatched. */
  protocol_error_reply: Buffer | null = null;
  private current: ConnectionState = 'open';
  reading_paused = false;
  flush_scheduled = false;

  constructor(id: number, remote: string, socket: net.Socket, parser: RequestParser) {
    this.socket = socket;
    this.parser = parser;
    this.info = { id, remote, tags: new Set() };
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** Whether backlog commands may still be handed to the handler. */
  get runs_commands(): boolean {
    const state = this.current;
    return state === 'open' || state === 'input_ended' || state === 'protocol_error';
  }

  /** The client sent FIN. Later states already end the connection once their replies are out. */
  inputEnded(): void {
    if (this.current === 'open') this.current = 'input_ended';
  }

  protocolError(reply: Buffer): void {
    assert(this.current === 'open', `protocol error in state ${this.current}`);
    this.current = 'protocol_error';
    this.protocol_error_reply = reply;
  }

  /** A close_after reply came back synchronously: nothing pipelined after it runs. */
  quit(): void {
    assert(this.runs_commands, `quit in state ${this.current}`);
    this.current = 'quitting';
    this.backlog.clear();
    this.protocol_error_reply = null;
  }

  /** Enters 'ending': what is written so far is all the client gets. */
  end(): void {
    assert(this.current !== 'ending' && this.current !== 'closed', `end in ${this.current}`);
    this.current = 'ending';
    this.slots.clear();
    this.backlog.clear();
    this.protocol_error_reply = null;
    this.reading_paused = false;
  }

  closed(): void {
    this.current = 'closed';
    this.slots.clear();
    this.backlog.clear();
    this.protocol_error_reply = null;
  }
}

/** Ends our side, then discards input until the client closes too (or END_LINGER_MS passes). */
function endGracefully(socket: net.Socket, last_bytes?: Buffer): void {
  if (last_bytes === undefined) socket.end();
  else socket.end(last_bytes);
  const linger = setTimeout(() => socket.destroy(), END_LINGER_MS);
  socket.once('close', () => clearTimeout(linger));
  socket.on('data', () => undefined);
  socket.resume();
}

function isPromiseLike(value: ClientReply | Promise<ClientReply>): value is Promise<ClientReply> {
  return typeof (value as Partial<Promise<ClientReply>>).then === 'function';
}

function protocolErrorReply(error: RespProtocolError): Buffer {
  const message = error.message.startsWith('Protocol error')
    ? error.message
    : `Protocol error: ${error.message}`;
  return encodeError(`ERR ${message}`);
}

/**
 * The RESP port. Each connection's bytes go through a RequestParser; every
 * command is handed to the handler in request order and gets a reply slot in
 * a FIFO, so replies that complete out of order are still written in order,
 * and replies that are ready together leave in one write.
 *
 * Memory per connection is bounded without errors: when
 * `pipeline_requests_max` commands await their replies, or the socket's
 * unsent bytes exceed `write_queue_bytes_max`, the listener stops reading
 * from that socket (TCP then pushes back on the client) until the replies
 * drain.
 */
export class ClientListener {
  private readonly options: ClientListenerOptions;
  private readonly handler: ClientHandler;
  private readonly logger: Logger;
  private readonly pipeline_requests_max: number;
  private readonly write_queue_bytes_max: number;
  private readonly connections_max: number;
  private readonly server: net.Server;
  private readonly server_closed: Promise<void>;
  private readonly connections = new Set<ClientConnection>();
  /**
   * Every open socket, including ones refused for the connection limit, so that close() reaches
   * them all.
   */
  private readonly sockets = new Set<net.Socket>();
  private next_connection_id = 1;
  /** server.close() was called; its 'close' event follows once every connection is gone. */
  private server_close_requested = false;
  /**
   * The listen attempt, so that close() during start() waits for it and then closes the listener
   * too.
   */
  private listening: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(options: ClientListenerOptions, handler: ClientHandler) {
    this.options = options;
    this.handler = handler;
    this.logger = options.logger;
    this.pipeline_requests_max =
      options.pipeline_requests_max ?? LIMITS.client_pipeline_requests_max;
    this.write_queue_bytes_max =
      options.write_queue_bytes_max ?? LIMITS.client_write_queue_bytes_max;
    this.connections_max = options.connections_max ?? LIMITS.client_connections_max;
    assert(this.pipeline_requests_max >= 1, 'pipeline_requests_max must be at least 1');
    // Half-open lets a client send its commands and FIN (`printf ... | nc`) and still get every
    // reply.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server_closed = new Promise((resolve) => this.server.once('close', () => resolve()));
  }

  get connection_count(): number {
    return this.connections.size;
  }

  /** The port the listener is bound to (useful when port is 0). */
  get bound_port(): number {
    return boundPort(this.server);
  }

  /** Listens on the client port; rejects with the listen error (e.g. EADDRINUSE). */
  async start(): Promise<void> {
    assert(this.listening === null, 'ClientListener.start called twice');
    this.listening = listen(this.server, this.options.host, this.options.port, (error) =>
      this.logger.error(`client listener error: ${describeError(error)}`),
    );
    await this.listening;
    if (this.closing !== null) return;
    this.logger.info(`client listener on ${this.options.host}:${this.bound_port}`);
  }

  /** Closes the listening socket at once; existing connections keep being served. */
  async stopAccepting(): Promise<void> {
    this.closeServer();
  }

  /** Destroys every connection and the listener; pending replies are dropped. */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    // A listen still in flight would otherwise finish after we looked and leave the port open.
    await this.listening?.catch(() => undefined);
    const closed: Promise<void>[] = [];
    for (const socket of this.sockets) {
      closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
      socket.destroy();
    }
    this.closeServer();
    if (this.server_close_requested) closed.push(this.server_closed);
    await Promise.all(closed);
  }

  private closeServer(): void {
    if (!this.server.listening) return;
    this.server.close();
    this.server_close_requested = true;
  }

  private accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    // Resets and broken pipes are the client's business; 'close' follows and cleans up.
    socket.on('error', (error) =>
      this.logger.debug(`client ${remote} socket error: ${describeError(error)}`),
    );
    if (this.closing !== null) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.connections_max) {
      this.logger.warn(`client ${remote} refused: ${this.connections_max} connections open`);
      // Refused sockets linger briefly to deliver the error; past as many again, just drop them.
      if (this.sockets.size - this.connections.size >= this.connections_max) {
        socket.destroy();
        return;
      }
      this.track(socket);
      endGracefully(socket, MAX_CLIENTS_REPLY);
      return;
    }
    this.track(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
    const connection = new ClientConnection(
      this.next_connection_id++,
      remote,
      socket,
      new RequestParser(this.options.parser_options),
    );
    this.connections.add(connection);
    this.logger.debug(`client ${connection.info.id} connected from ${remote}`);
    socket.on('data', (chunk: Buffer) => this.receive(connection, chunk));
    socket.on('end', () => {
      connection.inputEnded();
      this.flush(connection);
    });
    socket.on('drain', () => this.dispatch(connection));
    socket.once('close', () => {
      connection.closed();
      this.connections.delete(connection);
      this.logger.debug(`client ${connection.info.id} disconnected`);
    });
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private receive(connection: ClientConnection, chunk: Buffer): void {
    // Paused reading can still deliver the chunk in hand; 'ending' discards input by design.
    if (connection.state !== 'open') {
      assert(connection.state !== 'input_ended', 'data after the client FIN');
      return;
    }
    const batch = connection.parser.push(chunk);
    for (const command of batch.commands) connection.backlog.push(command);
    if (batch.error !== null) {
      connection.protocolError(protocolErrorReply(batch.error));
      this.logger.debug(
        `client ${connection.info.id} protocol error, closing: ${batch.error.message}`,
      );
    }
    this.dispatch(connection);
  }

  /**
   * Hands backlog commands to the handler while the pipeline has room and the
   * write queue is under its bound, then re-evaluates reading. So a socket's
   * unsent bytes stay under write_queue_bytes_max plus the replies of one
   * full pipeline.
   */
  private dispatch(connection: ClientConnection): void {
    while (
      connection.runs_commands &&
      connection.slots.length < this.pipeline_requests_max &&
      connection.socket.writableLength <= this.write_queue_bytes_max
    ) {
      const args = connection.backlog.shift();
      if (args === undefined) break;
      this.runHandler(connection, args);
    }
    if (connection.backlog.length === 0 && connection.protocol_error_reply !== null) {
      connection.slots.push({ reply: connection.protocol_error_reply, close_after: true });
      connection.protocol_error_reply = null;
      this.scheduleFlush(connection);
    }
    this.updateReading(connection);
  }

  private runHandler(connection: ClientConnection, args: Buffer[]): void {
    const slot: ReplySlot = { reply: null, close_after: false };
    connection.slots.push(slot);
    let result: ClientReply | Promise<ClientReply>;
    try {
      result = this.handler(args, connection.info);
    } catch (error) {
      this.failSlot(connection, slot, error);
      return;
    }
    if (isPromiseLike(result)) {
      result.then(
        (reply) => this.fillSlot(connection, slot, reply),
        (error: unknown) => this.failSlot(connection, slot, error),
      );
    } else {
      if (result.close_after === true) connection.quit();
      this.fillSlot(connection, slot, result);
    }
  }

  private fillSlot(connection: ClientConnection, slot: ReplySlot, result: ClientReply): void {
    if (connection.state === 'closed') return;
    slot.reply = result.reply;
    slot.close_after = result.close_after === true;
    this.scheduleFlush(connection);
  }

  private failSlot(connection: ClientConnection, slot: ReplySlot, error: unknown): void {
    this.logger.error(
      `client ${connection.info.id} command handler failed: ${describeError(error)}`,
    );
    this.fillSlot(connection, slot, { reply: INTERNAL_ERROR_REPLY });
  }

  /**
   * Replies filled in the same turn (a parsed chunk, or promises settling together) go out in one
   * flush.
   */
  private scheduleFlush(connection: ClientConnection): void {
    if (connection.flush_scheduled) return;
    connection.flush_scheduled = true;
    queueMicrotask(() => {
      connection.flush_scheduled = false;
      this.flush(connection);
    });
  }

  /** Writes every ready reply at the head of the FIFO, in order. */
  private flush(connection: ClientConnection): void {
    if (connection.state === 'closed') return;
    const ready: Buffer[] = [];
    let close_after = false;
    for (
      let slot = connection.slots.peek();
      slot !== undefined && slot.reply !== null;
      slot = connection.slots.peek()
    ) {
      connection.slots.shift();
      ready.push(slot.reply);
      if (slot.close_after) {
        close_after = true;
        break;
      }
    }
    if (ready.length > 0) this.write(connection, ready);
    if (close_after) {
      this.finish(connection);
      return;
    }
    if (
      connection.state === 'input_ended' &&
      connection.slots.length === 0 &&
      connection.backlog.length === 0
    ) {
      this.finish(connection);
      return;
    }
    if (ready.length > 0) this.dispatch(connection);
  }

  /** Ends the connection after what is written so far; later replies are dropped. */
  private finish(connection: ClientConnection): void {
    if (connection.state === 'ending') return;
    connection.end();
    endGracefully(connection.socket);
  }

  private write(connection: ClientConnection, replies: Buffer[]): void {
    const socket = connection.socket;
    if (socket.destroyed || !socket.writable) return;
    // Re-check the pipeline whenever a write reaches the kernel: 'drain' alone is not enough
    // when write_queue_bytes_max is below the socket's high-water mark.
    const onWritten = (): void => this.dispatch(connection);
    const only = replies[0];
    if (replies.length === 1 && only !== undefined) {
      socket.write(only, onWritten);
      return;
    }
    socket.cork();
    let group: Buffer[] = [];
    let group_bytes = 0;
    const writeGroup = (callback?: () => void): void => {
      const first = group[0];
      if (first === undefined) return;
      socket.write(group.length === 1 ? first : Buffer.concat(group, group_bytes), callback);
      group = [];
      group_bytes = 0;
    };
    for (const reply of replies) {
      if (group_bytes + reply.length > REPLY_COALESCE_BYTES_MAX) writeGroup();
      group.push(reply);
      group_bytes += reply.length;
    }
    writeGroup(onWritten);
    socket.uncork();
  }

  /**
   * Pauses reading while the pipeline or the write queue is full (or input is no longer wanted);
   * resumes otherwise.
   */
  private updateReading(connection: ClientConnection): void {
    if (connection.state === 'closed' || connection.state === 'ending') return;
    const should_pause =
      connection.state === 'protocol_error' ||
      connection.state === 'quitting' ||
      connection.backlog.length > 0 ||
      connection.slots.length >= this.pipeline_requests_max ||
      connection.socket.writableLength > this.write_queue_bytes_max;
    if (should_pause && !connection.reading_paused) {
      connection.reading_paused = true;
      connection.socket.pause();
    } else if (!should_pause && connection.reading_paused) {
      connection.reading_paused = false;
      connection.socket.resume();
    }
  }
}
