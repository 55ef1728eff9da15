/**
 * Errors a KvClient call can reject with. Each has a stable `code`.
 *
 * The scheme for "did my write happen?" — the question a caller must answer
 * after a failure (Jepsen's ok / fail / info):
 *  - EOUTCOMEUNKNOWN (OutcomeUnknownError): a non-idempotent request reached
 *    the wire and no definite answer came back (the connection died after
 *    the write, the per-call deadline passed after the write, or the server
 *    replied `-TIMEOUT outcome unknown`). It may or may not have taken
 *    effect. `reason` says which of the three happened.
 *  - Every other code means the call did NOT take effect, or the call was
 *    idempotent so that it does not matter: ETIMEOUT (the deadline passed
 *    while the request was unsent, backing off, or idempotent),
 *    ECONNECTION / ENOLEADER (retries gave up before the deadline: the last
 *    attempt could not connect / found no leader; ENOLEADER also when the
 *    deadline passed unsent after nodes said there is no leader), ESERVER (the server
 *    refused it), EQUEUEFULL, ECLOSED (unless `request_sent` is true and the
 *    call was not idempotent), EINVALID, EPROTOCOL.
 */
export type ClientErrorCode =
  | 'ECONNECTION'
  | 'ETIMEOUT'
  | 'EOUTCOMEUNKNOWN'
  | 'ENOLEADER'
  | 'ESERVER'
  | 'EQUEUEFULL'
  | 'ECLOSED'
  | 'EINVALID'
  | 'EPROTOCOL';

export class KvClientError extends Error {
  readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Could not connect, or the connection broke before the request was written. */
export class ConnectionError extends KvClientError {
  /** The node address ("host:port") involved. */
  readonly address: string;
  constructor(address: string, message: string, options?: { cause?: unknown }) {
    super('ECONNECTION', `${address}: ${message}`, options);
    this.address = address;
  }
}

/**
 * The per-call deadline passed; the call had no effect or was idempotent. `cause` is the last
 * retry's error, if any.
 */
export class TimeoutError extends KvClientError {
  readonly timeout_ms: number;
  constructor(timeout_ms: number, message: string, options?: { cause?: unknown }) {
    super('ETIMEOUT', message, options);
    this.timeout_ms = timeout_ms;
  }
}

export type OutcomeUnknownReason = 'connection_lost' | 'timeout' | 'server';

/** A non-idempotent request was sent and may or may not have taken effect. */
export class OutcomeUnknownError extends KvClientError {
  readonly reason: OutcomeUnknownReason;
  constructor(reason: OutcomeUnknownReason, message: string, options?: { cause?: unknown }) {
    super('EOUTCOMEUNKNOWN', `${message}; the outcome is unknown`, options);
    this.reason = reason;
  }
}

/** The cluster has no leader that this client could reach before the deadline. */
export class NoLeaderError extends KvClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ENOLEADER', message, options);
  }
}

/**
 * The server replied with an error. `reply` is the text after '-', `prefix` its first word (ERR,
 * TRYAGAIN, ...).
 */
export class ServerError extends KvClientError {
  readonly reply: string;
  readonly prefix: string;
  constructor(reply: string) {
    super('ESERVER', reply);
    this.reply = reply;
    this.prefix = errorPrefix(reply);
  }
}

/** pending_calls_max calls are already pending. */
export class QueueFullError extends KvClientError {
  constructor(pending_calls_max: number) {
    super('EQUEUEFULL', `${pending_calls_max} calls are already pending (pending_calls_max)`);
  }
}

/** close() was called. If `request_sent`, the request had reached the wire before. */
export class ClientClosedError extends KvClientError {
  readonly request_sent: boolean;
  constructor(request_sent: boolean) {
    super(
      'ECLOSED',
      request_sent ? 'the client was closed after the request was sent' : 'the client is closed',
    );
    this.request_sent = request_sent;
  }
}

/** A bad argument or option; nothing was sent. */
export class InvalidArgumentError extends KvClientError {
  constructor(message: string) {
    super('EINVALID', message);
  }
}

/** The server sent bytes we cannot parse, or a reply of the wrong type for the command. */
export class ProtocolError extends KvClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EPROTOCOL', message, options);
  }
}

/** First word of an error reply, e.g. "MOVED" for "MOVED 0 10.0.0.1:8001". */
export function errorPrefix(reply: string): string {
  const space = reply.indexOf(' ');
  return space === -1 ? reply : reply.slice(0, space);
}
