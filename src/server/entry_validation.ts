import { decodeCommand } from '../kv/command_codec';
import { CommandMalformedError } from '../util/errors';
import { MessageType, type RaftMessage } from '../raft/protocol';

/**
 * Why a received message carries an entry this node must never store, or null if it carries
 * none. Every entry is a KV command or empty (a leader's no-op); anything else came from a buggy
 * or hostile peer, and once stored it would be replicated, committed and applied everywhere. The
 * Raft core stays KV-agnostic: the transport asks this before handing a message to it.
 */
export function invalidEntryReason(message: RaftMessage): string | null {
  if (message.type !== MessageType.AppendEntriesRequest) return null;
  let index = message.prev_log_index;
  let previous_term = message.prev_log_term;
  for (const entry of message.entries) {
    index++;
    // A leader's log never holds a term above its own, and terms never decrease along a log.
    if (entry.term > message.term || entry.term < previous_term)
      return `entry ${index} has term ${entry.term} outside [${previous_term}, ${message.term}]`;
    previous_term = entry.term;
    try {
      decodeCommand(entry.data);
    } catch (error) {
      if (!(error instanceof CommandMalformedError)) throw error;
      return `entry ${index} is not a command: ${error.message}`;
    }
  }
  return null;
}
