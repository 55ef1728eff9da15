import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import { encodeError } from '../resp/reply';
import { ConfigError } from '../util/errors';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import type { ClientConnectionInfo } from './client_listener';

const AUTHENTICATED_TAG = 'authenticated';
/** Redis 6's texts, so clients recognise them. */
export const NOAUTH_REPLY = encodeError('NOAUTH Authentication required.');
export const WRONGPASS_TEXT = 'WRONGPASS invalid username-password pair or user is disabled.';
const WRONGPASS_REPLY = encodeError(WRONGPASS_TEXT);
const AUTH_ARITY_REPLY = encodeError("ERR wrong number of arguments for 'auth' command");
const NO_PASSWORD_REPLY = encodeError(
  'ERR AUTH <password> called without any password configured for the default user. ' +
    'Are you sure your configuration is correct?',
);
const OK_REPLY = Buffer.from('+OK\r\n', 'latin1');
const DEFAULT_USER = 'default';

/** Reads `client_password_file`: its content without trailing line ends; it must not be empty. */
export function loadClientPassword(file_path: string): Buffer {
  let text: Buffer;
  try {
    if (fs.statSync(file_path).size > LIMITS.config_file_bytes_max)
      throw new ConfigError(file_path, null, 'client password file is too large');
    text = fs.readFileSync(file_path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(file_path, null, `cannot read client password: ${reason}`);
  }
  let end = text.length;
  while (end > 0 && (text[end - 1] === 0x0a || text[end - 1] === 0x0d)) end--;
  if (end === 0) throw new ConfigError(file_path, null, 'client password file is empty');
  return text.subarray(0, end);
}

/**
 * Client authentication (`client_password_file`): the Redis 6 `AUTH [default] password` form
 * for the one user, `default`. Comparison is constant-time (both sides hashed first, so that
 * not even the length leaks). Without a password every connection counts as authenticated.
 */
export class ClientAuth {
  private readonly password_digest: Buffer | null;

  constructor(
    password: Buffer | null,
    private readonly logger: Logger,
  ) {
    this.password_digest = password === null ? null : digest(password);
  }

  /** Whether `connection` may run commands other than AUTH. */
  allows(connection: ClientConnectionInfo): boolean {
    return this.password_digest === null || connection.tags.has(AUTHENTICATED_TAG);
  }

  /**
   * Checks a password for `connection` and marks it authenticated on success; a hook for other
   * commands that carry credentials (HELLO ... AUTH user password).
   */
  authenticate(connection: ClientConnectionInfo, user: Buffer, password: Buffer): boolean {
    const expected = this.password_digest;
    if (expected === null) return true;
    const user_ok = user.toString('latin1') === DEFAULT_USER;
    const password_ok = timingSafeEqual(digest(password), expected);
    if (user_ok && password_ok) {
      connection.tags.add(AUTHENTICATED_TAG);
      return true;
    }
    // The address without its port: repeats from one host fold into one line (log.ts).
    const host = connection.remote.replace(/:\d+$/, '');
    this.logger.warn(`client AUTH failed from ${host} (wrong user or password)`);
    return false;
  }

  /** The reply to `AUTH password` or `AUTH user password`. */
  handleAuth(args: readonly Buffer[], connection: ClientConnectionInfo): Buffer {
    if (args.length !== 2 && args.length !== 3) return AUTH_ARITY_REPLY;
    if (this.password_digest === null) return args.length === 2 ? NO_PASSWORD_REPLY : OK_REPLY;
    const user = args.length === 3 ? args[1] : Buffer.from(DEFAULT_USER);
    const password = args[args.length - 1];
    if (user === undefined || password === undefined) return AUTH_ARITY_REPLY;
    return this.authenticate(connection, user, password) ? OK_REPLY : WRONGPASS_REPLY;
  }
}

function digest(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
