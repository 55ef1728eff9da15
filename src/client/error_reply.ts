/**
 * What an error reply from the cluster asks the client to do. The server's
 * vocabulary follows Redis Cluster and redisraft:
 *   MOVED <slot> <host:port>   the leader is elsewhere: go there
 *   TRYAGAIN ...               transient (e.g. leadership changing): retry
 *   CLUSTERDOWN ... / "no leader"   no leader known yet: retry elsewhere, later
 *   TIMEOUT outcome unknown ...     the server cannot tell whether a write committed
 * Anything else is an answer for the caller.
 */
import { errorPrefix } from './errors';

export type ErrorReplyVerdict =
  | { kind: 'moved'; address: string }
  | { kind: 'try_again' }
  | { kind: 'no_leader' }
  | { kind: 'outcome_unknown' }
  | { kind: 'final' };

export function classifyErrorReply(message: string): ErrorReplyVerdict {
  const prefix = errorPrefix(message).toUpperCase();
  switch (prefix) {
    case 'MOVED': {
      // The address is the last word, so both "MOVED 0 host:port" and "MOVED host:port" work.
      const words = message.trim().split(/\s+/);
      const address = words.length >= 2 ? words[words.length - 1] : undefined;
      return address === undefined ? { kind: 'no_leader' } : { kind: 'moved', address };
    }
    case 'TRYAGAIN':
      return { kind: 'try_again' };
    case 'CLUSTERDOWN':
    case 'NOLEADER':
      return { kind: 'no_leader' };
    case 'TIMEOUT':
      return { kind: 'outcome_unknown' };
    default:
      return /\bno leader\b/i.test(message) ? { kind: 'no_leader' } : { kind: 'final' };
  }
}
