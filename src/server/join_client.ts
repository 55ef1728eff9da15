/**
 * A new node's way into a running cluster (config `join host:port`, issue 15): it asks a member,
 * over the client protocol, `RAFT.NODE ADD <its own client address>` and gets back the id the
 * leader gave it and the cluster fingerprint, once the entry adding it as a learner committed:
 *
 *   +OK id=4 cluster=<64 hex digits>
 *
 * A follower answers `-TRYAGAIN ... (leader host:port)` (or `-MOVED <slot> host:port`): the next
 * attempt goes there. Unreachable nodes, TRYAGAIN and lost connections are retried with backoff
 * until LIMITS.join_wait_ms_max has passed; any other error (`-ERR`: the address belongs to a
 * voter, bad password, …) is final. With `client_password_file` the request is preceded by AUTH,
 * with TLS it goes over TLS, as a follower's forwarding link does.
 */
import type * as net from 'node:net';
import { encodeCommand, type Reply, ReplyParser } from '../resp/client_codec';
import { parseHostPort } from '../util/address';
import { backoffDelay } from '../util/backoff';
import { describeError } from '../util/errors';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import { connectedEvent, dial, type TlsSettings } from './tls_settings';

export interface JoinGrant {
  id: number;
  /** 32 bytes. */
  cluster_fingerprint: Buffer;
}

export interface JoinOptions {
  /** A member's client address (config `join`). */
  join_address: string;
  /** This node's client address: what the membership will record. */
  own_address: string;
  client_password: Buffer | null;
  tls: TlsSettings | null;
  logger: Logger;
  /** Default LIMITS.join_wait_ms_max. */
  wait_ms_max?: number;
  /** Longest wait for one attempt's reply (the leader answers once the entry committed). */
  attempt_timeout_ms?: number;
  random?: () => number;
}

/** The cluster refused the join for good (or never answered within the bound). */
export class JoinError extends Error {}

const REPLY_PATTERN = /^OK id=(\d{1,10}) cluster=([0-9a-f]{64})$/;
const LEADER_HINT = /\(leader ([^\s()]+)\)\s*$/;
const RETRY_BASE_MS = 100;
const DEFAULT_ATTEMPT_TIMEOUT_MS = 15_000;

/** The ADD reply's text (`OK id=4 cluster=<hex>`), or null if it is not one. */
export function parseAddReply(text: string): JoinGrant | null {
  const match = REPLY_PATTERN.exec(text.trim());
  if (match === null) return null;
  const id = Number(match[1]);
  if (!Number.isInteger(id) || id < 1 || id > 0x7fff_ffff) return null;
  return { id, cluster_fingerprint: Buffer.from(match[2] ?? '', 'hex') };
}

/** The ADD reply a leader sends. */
export function formatAddReply(grant: JoinGrant): string {
  return `OK id=${grant.id} cluster=${grant.cluster_fingerprint.toString('hex')}`;
}

type Outcome =
  | { kind: 'granted'; grant: JoinGrant }
  | { kind: 'retry'; reason: string; next: string | null }
  | { kind: 'final'; reason: string };

/** What one reply to ADD asks the joiner to do next. */
export function judgeAddReply(reply: Reply): Outcome {
  if (reply.type === 'simple') {
    const grant = parseAddReply(reply.value);
    if (grant !== null) return { kind: 'granted', grant };
    return { kind: 'final', reason: `unexpected reply ${JSON.stringify(reply.value)}` };
  }
  if (reply.type !== 'error') return { kind: 'final', reason: `unexpected ${reply.type} reply` };
  const message = reply.message;
  const word = message.split(' ', 1)[0]?.toUpperCase() ?? '';
  if (word === 'MOVED') {
    const words = message.trim().split(/\s+/);
    return { kind: 'retry', reason: message, next: words[words.length - 1] ?? null };
  }
  if (word === 'TRYAGAIN' || word === 'CLUSTERDOWN' || word === 'TIMEOUT')
    return { kind: 'retry', reason: message, next: LEADER_HINT.exec(message)?.[1] ?? null };
  return { kind: 'final', reason: message };
}

/** Asks the cluster to add this node, retrying within the bound; JoinError if it will not. */
export async function requestJoin(options: JoinOptions): Promise<JoinGrant> {
  const wait_ms_max = options.wait_ms_max ?? LIMITS.join_wait_ms_max;
  const random = options.random ?? Math.random;
  const deadline_ms = Date.now() + wait_ms_max;
  let target = options.join_address;
  for (let attempt = 1; ; attempt++) {
    const outcome = await attemptJoin(target, options);
    if (outcome.kind === 'granted') return outcome.grant;
    if (outcome.kind === 'final')
      throw new JoinError(`join via ${target} refused: ${outcome.reason}`);
    const next = outcome.next ?? options.join_address;
    const delay_ms =
      next !== target
        ? 0
        : backoffDelay(attempt, RETRY_BASE_MS, LIMITS.join_retry_delay_ms_max, random);
    if (Date.now() + delay_ms >= deadline_ms)
      throw new JoinError(
        `join via ${options.join_address}: not added within ${wait_ms_max} ms ` +
          `(last: ${target}: ${outcome.reason})`,
      );
    options.logger.info(
      `join: ${target}: ${outcome.reason}; ` +
        (next !== target ? `asking ${next}` : `retrying in ${Math.round(delay_ms)} ms`),
    );
    if (delay_ms > 0) await new Promise((resolve) => setTimeout(resolve, delay_ms));
    target = next;
  }
}

/** One connection: [AUTH], RAFT.NODE ADD, the replies judged. */
function attemptJoin(target: string, options: JoinOptions): Promise<Outcome> {
  const parsed = parseHostPort(target);
  if (!parsed.ok) return Promise.resolve({ kind: 'final', reason: parsed.problem });
  const timeout_ms = options.attempt_timeout_ms ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
  return new Promise((resolve) => {
    let settled = false;
    const socket: net.Socket = dial(options.tls, parsed.address.host, parsed.address.port);
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(
      () => finish({ kind: 'retry', reason: `no answer within ${timeout_ms} ms`, next: null }),
      timeout_ms,
    );
    const commands: Buffer[] = [];
    if (options.client_password !== null)
      commands.push(encodeCommand([Buffer.from('AUTH'), options.client_password]));
    commands.push(encodeCommand(['RAFT.NODE', 'ADD', options.own_address]));
    let auth_pending = options.client_password !== null;
    const parser = new ReplyParser();
    socket.once(connectedEvent(options.tls), () => socket.write(Buffer.concat(commands)));
    socket.on('data', (chunk: Buffer) => {
      let replies: Reply[];
      try {
        replies = parser.push(chunk);
      } catch (error) {
        finish({ kind: 'final', reason: `bad reply: ${describeError(error)}` });
        return;
      }
      for (const reply of replies) {
        if (auth_pending) {
          auth_pending = false;
          if (reply.type === 'error') finish({ kind: 'final', reason: `AUTH: ${reply.message}` });
          continue;
        }
        finish(judgeAddReply(reply));
      }
    });
    socket.on('error', (error) =>
      finish({ kind: 'retry', reason: describeError(error), next: null }),
    );
    socket.on('close', () => finish({ kind: 'retry', reason: 'connection closed', next: null }));
  });
}
