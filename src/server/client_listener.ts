import type * as net from 'node:net';
import { RequestParser, type RequestParserOptions } from '../resp/request_parser';
import { encodeError } from '../resp/reply';
import { assert } from '../util/assert';
import { describeError, type RespProtocolError } from '../util/errors';
import { Fifo } from '../util/fifo';
import { boundPort, listen } from './listen';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import { MemoryBudget } from '../util/memory_budget';
import { createServer, type TlsSettings } from './tls_settings';

export interface ClientReply {
  reply: Buffer;
  /** Close the connection once this reply (and every earlier one) is written, e.g. after QUIT. */
  close_after?: boolean;
  /**
   * Write this reply as soon as it is ready, ahead of earlier unfinished ones: for a multiplexed
   * link whose replies carry their request's id (a follower's RAFT.FWD).
   */
  unordered?: boolean;
}

export interface ClientConnectionInfo {
  id: number;
  remote: string;
  /** Set by the handler, e.g. to mark a follower's forwarding connection. */
  tags: Set<string>;
}

/**
 * A reply that comes later, settled by whoever computes it: the hot path's alternative to a
 * Promise (a Promise, its reaction and their closures per SET or GET were a visible share of the
 * leader's CPU). Settle it exactly once; later calls are ignored.
 */
export class DeferredReply {
  private outcome: ClientReply | null = null;
  private error: unknown = null;
  private settled = false;
  private sink: ((reply: ClientReply | null, error: unknown) => void) | null = null;

  resolve(reply: ClientReply): void {
    if (this.settled) return;
    this.settled = true;
    this.outcome = reply;
    this.sink?.(reply, null);
  }

  reject(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.error = error;
    this.sink?.(null, error);
  }

  /** The listener's side: `sink` gets the reply (or null and the error) once it is settled. */
  onSettled(sink: (reply: ClientReply | null, error: unknown) => void): void {
    this.sink = sink;
    if (this.settled) sink(this.outcome, this.error);
  }
}

export type HandlerResult = ClientReply | Promise<ClientReply> | DeferredReply;

/**
 * Runs one command. Called in request order; the returned promises may settle
 * in any order, replies are still written in request order.
 */
export type ClientHandler = (args: Buffer[], connection: ClientConnectionInfo) => HandlerResult;

/** Whether a handler's result is the reply itself (not one still to come). */
export function isImmediateReply(result: HandlerResult): result is ClientReply {
  return !(result instanceof DeferredReply) && !(result instanceof Promise);
}

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
  /**
   * Reply bytes a command will produce, charged to the reply budgets before it runs (a GET of a
   * large value must not be run when its reply cannot be held). Default: a small constant.
   */
  estimate_reply_bytes?: (args: readonly Buffer[]) => number;
  /** Close a connection with nothing in flight after this long without traffic; 0: never. */
  idle_timeout_ms?: number;
  /** Default LIMITS.client_input_bytes_total_max. */
  input_bytes_total_max?: number;
  /** Default LIMITS.client_reply_bytes_total_max. */
  reply_bytes_total_max?: number;
  /** Default LIMITS.client_connections_before_first_command_max. */
  connections_before_first_command_max?: number;
  /** TLS for every client connection; null or absent: plain TCP. */
  tls?: TlsSettings | null;
}

/** Reply size assumed for a command when the handler gives no estimate (most replies are tiny). */
const REPLY_ESTIMATE_DEFAULT_BYTES = 64;

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
/** What an unordered reply leaves in its slot: nothing more to write in order. */
const WRITTEN_OUT_OF_ORDER = Buffer.alloc(0);

/** Where one command's reply will go; filled when its handler settles. */
interface ReplySlot {
  reply: Buffer | null;
  close_after: boolean;
  /** Bytes charged for this reply: the estimate until it is filled, then its length. */
  reserved: number;
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
  /** Parser bytes charged to the input budget. */
  input_charged = 0;
  /** Reply bytes charged for slots not yet written (estimates or filled replies). */
  reply_pending_bytes = 0;
  /** Reply bytes handed to the socket whose write has not completed. */
  reply_written_bytes = 0;
  /**
   * One entry per socket write not yet completed, in write order (a socket completes its writes
   * in order): its bytes times 2, plus 1 if the pipeline is re-checked after it.
   */
  readonly writes_in_flight = new Fifo<number>();
  /** The write callback, one per connection rather than a closure per write. */
  on_written: () => void = () => undefined;

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

function isPromiseLike(value: HandlerResult): value is Promise<ClientReply> {
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
  private readonly input_budget: MemoryBudget;
  private readonly reply_budget: MemoryBudget;
  /** Connections that stopped taking commands because the process-wide reply budget was full. */
  private readonly reply_waiters = new Set<ClientConnection>();
  private reply_wake_scheduled = false;
  /** Commands handed to the handler in this event-loop turn (client_commands_per_turn_max). */
  private commands_this_turn = 0;
  /**
   * Connections with replies to flush, in the order they were scheduled: one microtask flushes
   * them all (a microtask and its closure per connection and turn was a visible share of the
   * allocation per request).
   */
  private flush_queue: ClientConnection[] = [];
  private flush_queued = false;
  /** Connections that stopped dispatching at the per-turn bound; resumed next turn, in order. */
  private readonly turn_waiters = new Set<ClientConnection>();
  /** Connections that have not sent a full command yet, oldest first. */
  private readonly before_first_command = new Set<ClientConnection>();
  private readonly before_first_command_max: number;
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
    this.input_budget = new MemoryBudget(
      'client_input_bytes_total_max',
      options.input_bytes_total_max ?? LIMITS.client_input_bytes_total_max,
    );
    this.reply_budget = new MemoryBudget(
      'client_reply_bytes_total_max',
      options.reply_bytes_total_max ?? LIMITS.client_reply_bytes_total_max,
    );
    this.before_first_command_max =
      options.connections_before_first_command_max ??
      LIMITS.client_connections_before_first_command_max;
    assert(this.pipeline_requests_max >= 1, 'pipeline_requests_max must be at least 1');
    // Half-open lets a client send its commands and FIN (`printf ... | nc`) and still get every
    // reply.
    this.server = createServer(options.tls ?? null, { allowHalfOpen: true, mutual: false }, (s) =>
      this.accept(s),
    );
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
    connection.on_written = () => this.written(connection);
    this.connections.add(connection);
    this.admitBeforeFirstCommand(connection);
    this.logger.debug(`client ${connection.info.id} connected from ${remote}`);
    const idle_timeout_ms = this.options.idle_timeout_ms ?? 0;
    if (idle_timeout_ms > 0) {
      socket.setTimeout(idle_timeout_ms);
      socket.on('timeout', () => {
        // A reply still due is not idleness: look again a full period after it.
        if (connection.slots.length > 0) socket.setTimeout(idle_timeout_ms);
        else {
          this.logger.debug(`client ${connection.info.id} idle ${idle_timeout_ms} ms, closing`);
          socket.destroy();
        }
      });
    }
    socket.on('data', (chunk: Buffer) => this.receive(connection, chunk));
    socket.on('end', () => {
      connection.inputEnded();
      this.flush(connection);
    });
    socket.on('drain', () => this.dispatch(connection));
    socket.once('close', () => {
      connection.closed();
      this.releaseAll(connection);
      this.connections.delete(connection);
      this.logger.debug(`client ${connection.info.id} disconnected`);
    });
  }

  /** A slow or silent client cannot hold more than its share of the connection slots. */
  private admitBeforeFirstCommand(connection: ClientConnection): void {
    if (this.before_first_command.size >= this.before_first_command_max) {
      const oldest = this.before_first_command.values().next().value;
      if (oldest !== undefined) {
        this.before_first_command.delete(oldest);
        this.logger.warn(
          `client ${oldest.info.id} closed: ${this.before_first_command_max} connections ` +
            'have not sent a command (client_connections_before_first_command_max)',
        );
        oldest.socket.destroy();
      }
    }
    this.before_first_command.add(connection);
  }

  /** The connection is gone: everything it held goes back to the budgets. */
  private releaseAll(connection: ClientConnection): void {
    this.before_first_command.delete(connection);
    this.reply_waiters.delete(connection);
    this.turn_waiters.delete(connection);
    this.input_budget.release(connection.input_charged);
    connection.input_charged = 0;
    this.releasePendingReplies(connection);
    this.reply_budget.release(connection.reply_written_bytes);
    connection.reply_written_bytes = 0;
    this.wakeReplyWaiters();
  }

  private releasePendingReplies(connection: ClientConnection): void {
    this.reply_budget.release(connection.reply_pending_bytes);
    connection.reply_pending_bytes = 0;
  }

  /**
   * Charges the parser's buffered bytes to the process-wide input budget; a connection that takes
   * it past its bound loses its partial request and is closed with an error. True if so.
   */
  private chargeInput(connection: ClientConnection): boolean {
    const buffered = connection.parser.buffered_bytes;
    this.input_budget.release(connection.input_charged);
    this.input_budget.charge(buffered);
    connection.input_charged = buffered;
    if (!this.input_budget.exceeded || connection.state !== 'open') return false;
    connection.parser.discard();
    this.input_budget.release(buffered);
    connection.input_charged = 0;
    this.logger.warn(
      `client ${connection.info.id} closed: unparsed input of all clients would exceed ` +
        `client_input_bytes_total_max (${this.input_budget.bytes_max} bytes)`,
    );
    connection.protocolError(
      encodeError('ERR client input memory budget exceeded (client_input_bytes_total_max)'),
    );
    return true;
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
    if (batch.commands.length > 0) this.before_first_command.delete(connection);
    for (const command of batch.commands) connection.backlog.push(command);
    if (batch.error !== null) {
      connection.protocolError(protocolErrorReply(batch.error));
      this.logger.debug(
        `client ${connection.info.id} protocol error, closing: ${batch.error.message}`,
      );
    }
    this.chargeInput(connection);
    this.dispatch(connection);
  }

  /**
   * Hands backlog commands to the handler while the pipeline has room and the command's estimated
   * reply fits both this connection's share (write_queue_bytes_max) and the process-wide reply
   * budget, then re-evaluates reading. A reply is charged before its command runs, so a pipeline
   * of GETs of a large value holds at most one share of reply bytes, plus one reply.
   */
  private dispatch(connection: ClientConnection): void {
    while (connection.runs_commands && connection.slots.length < this.pipeline_requests_max) {
      const args = connection.backlog.peek();
      if (args === undefined) break;
      if (!this.takeTurnShare(connection)) break;
      const estimate = this.options.estimate_reply_bytes?.(args) ?? REPLY_ESTIMATE_DEFAULT_BYTES;
      if (!this.replyFits(connection, estimate)) break;
      connection.backlog.shift();
      this.runHandler(connection, args, estimate);
    }
    const error_reply = connection.protocol_error_reply;
    if (connection.backlog.length === 0 && error_reply !== null) {
      this.chargeReply(connection, error_reply.length);
      connection.slots.push({
        reply: error_reply,
        close_after: true,
        reserved: error_reply.length,
      });
      connection.protocol_error_reply = null;
      this.scheduleFlush(connection);
    }
    this.updateReading(connection);
  }

  /**
   * Counts one command against this turn's bound; past it, `connection` waits for the next turn
   * (its backlog is kept and its reading paused), after timers have had their chance to run.
   */
  private takeTurnShare(connection: ClientConnection): boolean {
    if (this.commands_this_turn === 0) setImmediate(() => this.nextTurn());
    if (this.commands_this_turn >= LIMITS.client_commands_per_turn_max) {
      this.turn_waiters.add(connection);
      return false;
    }
    this.commands_this_turn++;
    return true;
  }

  private nextTurn(): void {
    this.commands_this_turn = 0;
    const waiting = [...this.turn_waiters];
    this.turn_waiters.clear();
    for (const connection of waiting) if (connection.state !== 'closed') this.dispatch(connection);
  }

  /**
   * Whether a reply of `estimate` bytes may be taken on. A connection holding nothing may always
   * take one unless the process-wide budget is full; when the budget is empty anything fits, so
   * that one reply larger than the budget still goes (alone).
   */
  private replyFits(connection: ClientConnection, estimate: number): boolean {
    if (this.reply_budget.used_bytes === 0) return true;
    if (!this.reply_budget.fits(estimate)) {
      this.reply_waiters.add(connection);
      return false;
    }
    const held = connection.reply_pending_bytes + connection.reply_written_bytes;
    return held === 0 || held + estimate <= this.write_queue_bytes_max;
  }

  private chargeReply(connection: ClientConnection, bytes: number): void {
    this.reply_budget.charge(bytes);
    connection.reply_pending_bytes += bytes;
  }

  /** Written reply bytes left the process (or the socket failed): their charge is returned. */
  private releaseWritten(connection: ClientConnection, bytes: number): void {
    if (connection.state === 'closed') return; // releaseAll returned everything
    connection.reply_written_bytes -= bytes;
    this.reply_budget.release(bytes);
    this.wakeReplyWaiters();
  }

  /** Connections blocked on the process-wide reply budget retry once bytes were released. */
  private wakeReplyWaiters(): void {
    if (this.reply_waiters.size === 0 || this.reply_wake_scheduled) return;
    this.reply_wake_scheduled = true;
    queueMicrotask(() => {
      this.reply_wake_scheduled = false;
      const waiting = [...this.reply_waiters];
      this.reply_waiters.clear();
      for (const connection of waiting)
        if (connection.state !== 'closed') this.dispatch(connection);
    });
  }

  private runHandler(connection: ClientConnection, args: Buffer[], estimate: number): void {
    const slot: ReplySlot = { reply: null, close_after: false, reserved: estimate };
    this.chargeReply(connection, estimate);
    connection.slots.push(slot);
    let result: HandlerResult;
    try {
      result = this.handler(args, connection.info);
    } catch (error) {
      this.failSlot(connection, slot, error);
      return;
    }
    if (result instanceof DeferredReply) {
      result.onSettled((reply, error) => {
        if (reply !== null) this.fillSlot(connection, slot, reply);
        else this.failSlot(connection, slot, error);
      });
    } else if (isPromiseLike(result)) {
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
    // Once ending, the slot left the FIFO and its charge was returned.
    if (connection.state === 'closed' || connection.state === 'ending') return;
    this.reply_budget.release(slot.reserved);
    connection.reply_pending_bytes -= slot.reserved;
    if (result.unordered === true) {
      // Charged as written until the kernel takes it, like an ordered reply once flushed.
      this.reply_budget.charge(result.reply.length);
      connection.reply_written_bytes += result.reply.length;
      this.writeOne(connection, result.reply);
      slot.reserved = 0;
      slot.reply = WRITTEN_OUT_OF_ORDER;
    } else {
      this.chargeReply(connection, result.reply.length);
      slot.reserved = result.reply.length;
      slot.reply = result.reply;
      slot.close_after = result.close_after === true;
    }
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
    this.flush_queue.push(connection);
    if (this.flush_queued) return;
    this.flush_queued = true;
    queueMicrotask(this.flushQueued);
  }

  private readonly flushQueued = (): void => {
    this.flush_queued = false;
    const queue = this.flush_queue;
    this.flush_queue = [];
    for (const connection of queue) {
      connection.flush_scheduled = false;
      this.flush(connection);
    }
  };

  /** Writes every ready reply at the head of the FIFO, in order. */
  private flush(connection: ClientConnection): void {
    if (connection.state === 'closed') return;
    // The usual flush writes one reply: no array for it.
    let first: Buffer | null = null;
    let ready: Buffer[] | null = null;
    let close_after = false;
    for (
      let slot = connection.slots.peek();
      slot !== undefined && slot.reply !== null;
      slot = connection.slots.peek()
    ) {
      connection.slots.shift();
      connection.reply_pending_bytes -= slot.reserved;
      connection.reply_written_bytes += slot.reserved;
      if (slot.reply.length > 0) {
        if (first === null) first = slot.reply;
        else if (ready === null) ready = [first, slot.reply];
        else ready.push(slot.reply);
      }
      if (slot.close_after) {
        close_after = true;
        break;
      }
    }
    if (ready !== null) this.write(connection, ready);
    else if (first !== null) this.writeOne(connection, first);
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
    if (first !== null) this.dispatch(connection);
  }

  /** Ends the connection after what is written so far; later replies are dropped. */
  private finish(connection: ClientConnection): void {
    if (connection.state === 'ending') return;
    this.releasePendingReplies(connection);
    connection.end();
    endGracefully(connection.socket);
  }

  /** Each write's callback returns its bytes to the reply budget and re-checks the pipeline. */
  private write(connection: ClientConnection, replies: Buffer[]): void {
    const socket = connection.socket;
    if (socket.destroyed || !socket.writable) return; // the charge goes back at 'close'
    socket.cork();
    let group: Buffer[] = [];
    let group_bytes = 0;
    const writeGroup = (last: boolean): void => {
      const first = group[0];
      if (first === undefined) return;
      this.writeBytes(
        connection,
        group.length === 1 ? first : Buffer.concat(group, group_bytes),
        last,
      );
      group = [];
      group_bytes = 0;
    };
    for (const reply of replies) {
      if (group_bytes + reply.length > REPLY_COALESCE_BYTES_MAX) writeGroup(false);
      group.push(reply);
      group_bytes += reply.length;
    }
    writeGroup(true);
    socket.uncork();
  }

  private writeOne(connection: ClientConnection, reply: Buffer): void {
    const socket = connection.socket;
    if (socket.destroyed || !socket.writable) return; // the charge goes back at 'close'
    this.writeBytes(connection, reply, true);
  }

  /**
   * Re-checks the pipeline (when `last`) once the write reaches the kernel: 'drain' alone is not
   * enough when write_queue_bytes_max is below the socket's high-water mark.
   */
  private writeBytes(connection: ClientConnection, bytes: Buffer, last: boolean): void {
    connection.writes_in_flight.push(bytes.length * 2 + (last ? 1 : 0));
    connection.socket.write(bytes, connection.on_written);
  }

  /** A write of `connection` completed (or failed): the oldest one, as writes complete in order. */
  private written(connection: ClientConnection): void {
    const entry = connection.writes_in_flight.shift();
    if (entry === undefined) return;
    this.releaseWritten(connection, Math.floor(entry / 2));
    if (entry % 2 === 1) this.dispatch(connection);
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
