/**
 * A typed client for the cluster. One pipelined connection to the node it
 * believes leads; on MOVED, TRYAGAIN, no-leader errors or a lost connection
 * it moves on with exponential backoff and jitter, within each call's
 * deadline. Retries never risk applying a write twice: a non-idempotent
 * request that reached the wire without a definite answer fails with
 * OutcomeUnknownError instead (see errors.ts for the full scheme).
 */
import { performance } from 'node:perf_hooks';
import { encodeCommand, type Reply } from '../resp/client_codec';
import { LimitExceededError } from '../util/errors';
import { LIMITS } from '../util/limits';
import { formatHostPort, parseHostPort, type HostPort } from '../util/address';
import { backoffDelay } from '../util/backoff';
import { Connection, type OutboundRequest, type RequestOutcome } from './connection';
import { classifyErrorReply } from './error_reply';
import {
  ClientClosedError,
  ConnectionError,
  InvalidArgumentError,
  type KvClientError,
  NoLeaderError,
  OutcomeUnknownError,
  ProtocolError,
  QueueFullError,
  ServerError,
  TimeoutError,
} from './errors';

export interface KvClientOptions {
  /** Cluster client addresses, "host:port". MOVED targets are added as they are learnt. */
  nodes: readonly string[];
  /** Deadline of each call, retries included. */
  call_timeout_ms?: number;
  /** Calls pending at once; beyond it calls reject with QueueFullError. */
  pending_calls_max?: number;
  connect_timeout_ms?: number;
  backoff_base_ms?: number;
  backoff_max_ms?: number;
  /** Jitter source in [0, 1); inject a seeded one to replay a test. */
  random?: () => number;
}

export interface CallOptions {
  /** Safe to resend when the outcome is unknown. Defaults to true for GET, PING and INFO only. */
  idempotent?: boolean;
  /** Overrides call_timeout_ms for this call. */
  timeout_ms?: number;
}

export interface KvClientStats {
  pending_calls: number;
  open_connections: number;
  /** Batched socket writes since the client was made (one per flush, however many requests). */
  socket_writes: number;
  /** Attempts beyond the first, over all calls. */
  retries: number;
  /** MOVED replies followed. */
  redirects: number;
}

const IDEMPOTENT_COMMANDS: ReadonlySet<string> = new Set(['GET', 'PING', 'INFO']);

/**
 * Redirects a call follows at once; after these it backs off like any retry (guards against MOVED
 * ping-pong).
 */
const IMMEDIATE_REDIRECTS_MAX = 1;

interface Call {
  readonly bytes: Buffer;
  readonly idempotent: boolean;
  readonly timeout_ms: number;
  readonly deadline_ms: number;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (error: Error) => void;
  settled: boolean;
  /** The attempt in progress, if any, and the node it went to. */
  request: OutboundRequest | null;
  request_connection: Connection | null;
  request_address: string;
  deadline_timer: NodeJS.Timeout | null;
  retry_timer: NodeJS.Timeout | null;
  failures: number;
  redirects: number;
  last_error: KvClientError | null;
}

export class KvClient {
  private readonly node_list: string[] = [];
  private readonly targets = new Map<string, HostPort>();
  private current: string;
  private readonly connections = new Map<string, Connection>();
  private readonly pending = new Set<Call>();
  private closed = false;

  private readonly call_timeout_ms: number;
  private readonly pending_calls_max: number;
  private readonly connect_timeout_ms: number;
  private readonly backoff_base_ms: number;
  private readonly backoff_max_ms: number;
  private readonly random: () => number;

  private socket_writes = 0;
  private retries = 0;
  private redirects = 0;

  constructor(options: KvClientOptions) {
    if (options.nodes.length === 0)
      throw new InvalidArgumentError('KvClient needs at least one node address');
    for (const text of options.nodes) this.learnNode(text);
    this.current = this.node_list[0] as string;
    this.call_timeout_ms = positive('call_timeout_ms', options.call_timeout_ms ?? 5000);
    this.pending_calls_max = positive(
      'pending_calls_max',
      options.pending_calls_max ?? LIMITS.kv_client_pending_calls_max,
    );
    this.connect_timeout_ms = positive('connect_timeout_ms', options.connect_timeout_ms ?? 1000);
    this.backoff_base_ms = positive('backoff_base_ms', options.backoff_base_ms ?? 20);
    this.backoff_max_ms = Math.max(
      this.backoff_base_ms,
      positive('backoff_max_ms', options.backoff_max_ms ?? 1000),
    );
    this.random = options.random ?? Math.random;
  }

  /** The node the next request goes to. */
  currentNode(): string {
    return this.current;
  }

  /** Known node addresses: the configured ones, then MOVED targets. */
  nodes(): string[] {
    return [...this.node_list];
  }

  stats(): KvClientStats {
    return {
      pending_calls: this.pending.size,
      open_connections: this.connections.size,
      socket_writes: this.socket_writes,
      retries: this.retries,
      redirects: this.redirects,
    };
  }

  async set(key: string, ...words: string[]): Promise<void> {
    if (words.length === 0) throw new InvalidArgumentError('SET needs at least one value word');
    expectOk('SET', await this.command(['SET', key, ...words]));
  }

  async setBuffer(key: Buffer, words: readonly Buffer[]): Promise<void> {
    if (words.length === 0) throw new InvalidArgumentError('SET needs at least one value word');
    expectOk('SET', await this.command(['SET', key, ...words]));
  }

  /**
   * The stored words, or null for a missing key. The server answers a missing
   * key with the one-word array ["nil"], so a value that is exactly the single
   * word "nil" also reads back as null: the protocol cannot tell them apart.
   */
  async get(key: string): Promise<string[] | null> {
    const words = decodeGet(await this.command(['GET', key]));
    return words === null ? null : words.map((word) => word.toString('utf8'));
  }

  /** Like get, as raw bytes; the same "nil" ambiguity applies. */
  async getBuffer(key: Buffer): Promise<Buffer[] | null> {
    return decodeGet(await this.command(['GET', key]));
  }

  /** Returns how many of the keys existed. */
  async del(...keys: string[]): Promise<number> {
    if (keys.length === 0) throw new InvalidArgumentError('DEL needs at least one key');
    return expectInteger('DEL', await this.command(['DEL', ...keys]));
  }

  async delBuffer(...keys: Buffer[]): Promise<number> {
    if (keys.length === 0) throw new InvalidArgumentError('DEL needs at least one key');
    return expectInteger('DEL', await this.command(['DEL', ...keys]));
  }

  async ping(): Promise<string> {
    const reply = await this.command(['PING']);
    if (reply.type === 'simple') return reply.value;
    if (reply.type === 'bulk' && reply.value !== null) return reply.value.toString('utf8');
    throw unexpected('PING', reply);
  }

  /** INFO's `key:value` lines as an object; `#` section headers and blank lines are skipped. */
  async info(): Promise<Record<string, string>> {
    const reply = await this.command(['INFO']);
    if (reply.type !== 'bulk' || reply.value === null) throw unexpected('INFO', reply);
    return parseInfo(reply.value.toString('utf8'));
  }

  /**
   * Sends any command. Error replies reject with ServerError (after the
   * failover handling); every other reply resolves as parsed.
   */
  command(args: readonly (Buffer | string)[], options: CallOptions = {}): Promise<Reply> {
    if (this.closed) return Promise.reject(new ClientClosedError(false));
    const name = args[0];
    if (name === undefined) return Promise.reject(new InvalidArgumentError('empty command'));
    if (this.pending.size >= this.pending_calls_max)
      return Promise.reject(new QueueFullError(this.pending_calls_max));
    const timeout_ms = options.timeout_ms ?? this.call_timeout_ms;
    if (!(timeout_ms > 0))
      return Promise.reject(
        new InvalidArgumentError(`timeout_ms must be positive, got ${timeout_ms}`),
      );
    let bytes: Buffer;
    try {
      bytes = encodeCommand(args);
    } catch (error) {
      return Promise.reject(
        error instanceof LimitExceededError ? new InvalidArgumentError(error.message) : error,
      );
    }
    const idempotent = options.idempotent ?? IDEMPOTENT_COMMANDS.has(name.toString().toUpperCase());
    return new Promise<Reply>((resolve, reject) => {
      const call: Call = {
        bytes,
        idempotent,
        timeout_ms,
        deadline_ms: performance.now() + timeout_ms,
        resolve,
        reject,
        settled: false,
        request: null,
        request_connection: null,
        request_address: this.current,
        deadline_timer: null,
        retry_timer: null,
        failures: 0,
        redirects: 0,
        last_error: null,
      };
      call.deadline_timer = setTimeout(() => this.onDeadline(call), timeout_ms);
      this.pending.add(call);
      this.attempt(call);
    });
  }

  /**
   * Rejects every pending call with ClientClosedError and closes every
   * connection; no timer or socket is left behind.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const call of [...this.pending]) {
      const request_sent = call.request?.written ?? false;
      this.settle(call);
      call.reject(new ClientClosedError(request_sent));
    }
    await Promise.all([...this.connections.values()].map((connection) => connection.close()));
  }

  private attempt(call: Call): void {
    const address = this.current;
    const request: OutboundRequest = {
      bytes: call.bytes,
      written: false,
      abandoned: false,
      settle: (outcome) => this.onOutcome(call, request, address, outcome),
    };
    const connection = this.connectionTo(address);
    call.request = request;
    call.request_connection = connection;
    call.request_address = address;
    connection.enqueue(request);
  }

  private onOutcome(
    call: Call,
    request: OutboundRequest,
    address: string,
    outcome: RequestOutcome,
  ): void {
    if (call.settled || call.request !== request) return;
    call.request = null;
    call.request_connection = null;
    if (outcome.kind === 'failed') {
      // Whatever happens to this call, later calls try another node: the next
      // connect to a node that is dying can still be accepted and then reset,
      // turning one more write into an unknown outcome.
      this.leaveNode(address);
      if (outcome.written && !call.idempotent) {
        this.fail(
          call,
          new OutcomeUnknownError(
            'connection_lost',
            `${address}: the connection was lost after the ` +
              `request was sent (${outcome.error.message})`,
            { cause: outcome.error },
          ),
        );
        return;
      }
      this.retry(call, outcome.error);
      return;
    }
    const reply = outcome.reply;
    if (reply.type !== 'error') {
      this.settle(call);
      call.resolve(reply);
      return;
    }
    const verdict = classifyErrorReply(reply.message);
    switch (verdict.kind) {
      case 'moved': {
        let target: string;
        try {
          target = this.learnNode(verdict.address);
        } catch {
          this.leaveNode(address);
          this.retry(
            call,
            new NoLeaderError(`${address} replied with an unusable redirect: ${reply.message}`),
          );
          return;
        }
        this.redirects += 1;
        call.redirects += 1;
        this.moveTo(target);
        if (call.redirects <= IMMEDIATE_REDIRECTS_MAX) {
          this.retries += 1;
          this.attempt(call);
        } else {
          this.retry(
            call,
            new NoLeaderError(
              `redirected ${call.redirects} times, last from ${address} to ${target}`,
            ),
          );
        }
        return;
      }
      case 'try_again':
        // The node answered, so it is alive; if it stops leading it will say MOVED.
        this.retry(call, new ServerError(reply.message));
        return;
      case 'no_leader':
        this.leaveNode(address);
        this.retry(call, new NoLeaderError(`${address}: ${reply.message}`));
        return;
      case 'outcome_unknown':
        if (!call.idempotent) {
          this.fail(call, new OutcomeUnknownError('server', `${address} replied ${reply.message}`));
        } else {
          this.retry(call, new ServerError(reply.message));
        }
        return;
      case 'final':
        this.fail(call, new ServerError(reply.message));
        return;
    }
  }

  /**
   * Schedules another attempt after a backoff, or gives up with `error` if that would pass the
   * deadline.
   */
  private retry(call: Call, error: KvClientError): void {
    call.last_error = error;
    call.failures += 1;
    const delay_ms = backoffDelay(
      call.failures,
      this.backoff_base_ms,
      this.backoff_max_ms,
      this.random,
    );
    if (performance.now() + delay_ms >= call.deadline_ms) {
      this.fail(call, error);
      return;
    }
    this.retries += 1;
    call.retry_timer = setTimeout(() => {
      call.retry_timer = null;
      if (!call.settled) this.attempt(call);
    }, delay_ms);
  }

  private onDeadline(call: Call): void {
    call.deadline_timer = null;
    if (call.settled) return;
    const request = call.request;
    const connection = call.request_connection;
    if (request?.written) {
      // A node that sat on a request for the whole deadline is treated as failed: later calls try
      // another.
      this.leaveNode(call.request_address);
      if (!call.idempotent) {
        this.fail(
          call,
          new OutcomeUnknownError(
            'timeout',
            `${call.request_address}: no reply within ` +
              `${call.timeout_ms} ms after the request was sent`,
          ),
        );
        this.closeIfUseless(connection);
        return;
      }
    }
    const last_error = call.last_error;
    const unsent = request === null || !request.written;
    if (last_error instanceof NoLeaderError || (unsent && last_error instanceof ConnectionError)) {
      // Unsent when time ran out, and every node said there is no leader, or the last attempt
      // could not connect (a refusal that arrives after the deadline timer on a busy machine):
      // that is the more useful answer, the one retry() gives when the next backoff would pass
      // the deadline.
      this.fail(call, last_error);
      this.closeIfUseless(connection);
      return;
    }
    const last = call.last_error === null ? '' : `; last error: ${call.last_error.message}`;
    this.fail(
      call,
      new TimeoutError(call.timeout_ms, `no reply within ${call.timeout_ms} ms${last}`, {
        cause: call.last_error ?? undefined,
      }),
    );
    this.closeIfUseless(connection);
  }

  /** Closes a connection that is not the current one, or that only owes replies nobody wants. */
  private closeIfUseless(connection: Connection | null): void {
    if (connection === null || connection.isClosed() || connection.liveOutstanding() > 0) return;
    if (connection.address !== this.current || connection.outstanding() > 0)
      void connection.close();
  }

  private fail(call: Call, error: KvClientError): void {
    this.settle(call);
    call.reject(error);
  }

  private settle(call: Call): void {
    call.settled = true;
    if (call.deadline_timer !== null) clearTimeout(call.deadline_timer);
    if (call.retry_timer !== null) clearTimeout(call.retry_timer);
    call.deadline_timer = null;
    call.retry_timer = null;
    if (call.request !== null && call.request_connection !== null)
      call.request_connection.abandon(call.request);
    call.request = null;
    call.request_connection = null;
    this.pending.delete(call);
  }

  private connectionTo(address: string): Connection {
    const existing = this.connections.get(address);
    if (existing !== undefined && !existing.isClosed()) return existing;
    const target = this.targets.get(address) ?? parseNodeAddress(address);
    const options = {
      connect_timeout_ms: this.connect_timeout_ms,
      abandoned_requests_max: this.pending_calls_max,
    };
    const connection = new Connection(address, target, options, {
      closed: (closed) => {
        if (this.connections.get(closed.address) === closed)
          this.connections.delete(closed.address);
      },
      idle: (idle) => {
        if (idle.address !== this.current) void idle.close();
      },
      wrote: () => {
        this.socket_writes += 1;
      },
    });
    this.connections.set(address, connection);
    return connection;
  }

  /** Adds an address to the known nodes (bounded) and returns its canonical form. */
  private learnNode(text: string): string {
    const target = parseNodeAddress(text);
    const address = formatHostPort(target);
    if (!this.targets.has(address) && this.node_list.length < LIMITS.kv_client_nodes_max) {
      this.targets.set(address, target);
      this.node_list.push(address);
    }
    return address;
  }

  /** Stops using a node that failed, unless another call already moved on. */
  private leaveNode(address: string): void {
    if (this.current !== address) return;
    const index = this.node_list.indexOf(address);
    const next = this.node_list[(index + 1) % this.node_list.length];
    if (next !== undefined) this.moveTo(next);
  }

  private moveTo(address: string): void {
    if (address === this.current) return;
    const previous = this.current;
    this.current = address;
    const connection = this.connections.get(previous);
    if (connection !== undefined && connection.liveOutstanding() === 0) void connection.close();
  }
}

function parseNodeAddress(text: string): HostPort {
  const parsed = parseHostPort(text);
  if (!parsed.ok)
    throw new InvalidArgumentError(`bad node address ${JSON.stringify(text)}: ${parsed.problem}`);
  return parsed.address;
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value))
    throw new InvalidArgumentError(`${name} must be a positive number, got ${value}`);
  return value;
}

function decodeGet(reply: Reply): Buffer[] | null {
  if (reply.type === 'bulk') return reply.value === null ? null : [reply.value];
  if (reply.type !== 'array') throw unexpected('GET', reply);
  if (reply.items === null) return null;
  const words: Buffer[] = [];
  for (const item of reply.items) {
    if (item.type !== 'bulk' || item.value === null) throw unexpected('GET', reply);
    words.push(item.value);
  }
  const only = words[0];
  if (words.length === 1 && only !== undefined && only.equals(NIL_WORD)) return null;
  return words;
}

const NIL_WORD = Buffer.from('nil');

function expectOk(command: string, reply: Reply): void {
  if (reply.type !== 'simple' || reply.value !== 'OK') throw unexpected(command, reply);
}

function expectInteger(command: string, reply: Reply): number {
  if (reply.type !== 'integer') throw unexpected(command, reply);
  return reply.value;
}

function unexpected(command: string, reply: Reply): ProtocolError {
  return new ProtocolError(`unexpected reply to ${command}: ${describeReply(reply)}`);
}

function describeReply(reply: Reply): string {
  switch (reply.type) {
    case 'simple':
      return `+${reply.value}`;
    case 'error':
      return `-${reply.message}`;
    case 'integer':
      return `:${reply.value}`;
    case 'bulk':
      return reply.value === null
        ? 'null bulk string'
        : `bulk string of ${reply.value.length} bytes`;
    case 'array':
      return reply.items === null ? 'null array' : `array of ${reply.items.length}`;
  }
}

export function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}
