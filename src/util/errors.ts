/**
 * Typed errors with stable codes. Expected conditions (bad input, a full
 * queue, no leader) are errors of these classes; broken invariants are
 * assertion failures (see assert.ts) and stop the process.
 */
export type ErrorCode =
  | 'WIRE_UNKNOWN_TYPE'
  | 'WIRE_MALFORMED'
  | 'WIRE_FRAME_TOO_LARGE'
  | 'RESP_PROTOCOL'
  | 'RESP_TOO_LARGE'
  | 'CONFIG_INVALID'
  | 'RAFT_CONFIG_INVALID'
  | 'LIMIT_EXCEEDED'
  | 'STORAGE_CORRUPT'
  | 'STORAGE_IO'
  | 'KV_COMMAND_MALFORMED'
  | 'STORAGE_LOCKED'
  | 'NODE_IDENTITY'
  | 'INCARNATION_MISMATCH';

export class KvError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The Raft peer byte stream cannot be decoded; the connection must be closed. */
export class WireError extends KvError {}

/** The client byte stream cannot be parsed further; reply with an error and close. */
export class RespProtocolError extends KvError {}

/** The configuration file is invalid; `file` and `line` locate the problem. */
export class ConfigError extends KvError {
  readonly file: string;
  readonly line: number | null;
  constructor(file: string, line: number | null, problem: string) {
    super('CONFIG_INVALID', `${file}${line === null ? '' : `:${line}`}: ${problem}`);
    this.file = file;
    this.line = line;
  }
}

/** A Raft core configuration (see raft/config.ts) breaks a rule; `field` names the field. */
export class RaftConfigError extends KvError {
  readonly field: string;
  constructor(field: string, problem: string) {
    super('RAFT_CONFIG_INVALID', `raft config ${field}: ${problem}`);
    this.field = field;
  }
}

/** A named limit from limits.ts was exceeded. */
export class LimitExceededError extends KvError {
  readonly limit: string;
  constructor(limit: string, message: string) {
    super('LIMIT_EXCEEDED', message);
    this.limit = limit;
  }
}

/** Persistent state is damaged in a way we must not paper over. */
export class StorageCorruptError extends KvError {
  constructor(message: string) {
    super('STORAGE_CORRUPT', message);
  }
}

/** A log entry's data is not a valid KV command encoding (see kv/command_codec.ts). */
export class CommandMalformedError extends KvError {
  constructor(message: string) {
    super('KV_COMMAND_MALFORMED', message);
  }
}

/**
 * Reading or writing persistent state failed (or the storage is closed); after a failed fsync
 * nothing written since the last good one can be trusted.
 */
export class StorageIoError extends KvError {
  constructor(message: string) {
    super('STORAGE_IO', message);
  }
}

/** The data directory belongs to another node id than the config files give this node. */
export class NodeIdentityError extends KvError {
  constructor(message: string) {
    super('NODE_IDENTITY', message);
  }
}

/** Another live process (or another open in this process) holds the data directory. */
export class StorageLockedError extends KvError {
  constructor(message: string) {
    super('STORAGE_LOCKED', message);
  }
}

/**
 * One line about a thrown value, for a log line or a wrapping error's message: the message,
 * prefixed by the class name unless it is a plain Error, and followed by an errno-style code that
 * the message does not already contain.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const prefix = error.name === 'Error' ? '' : `${error.name}: `;
  const suffix = typeof code === 'string' && !error.message.includes(code) ? ` (${code})` : '';
  return `${prefix}${error.message}${suffix}`;
}
