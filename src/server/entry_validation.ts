import { decodeCommand, OPCODE_SET } from '../kv/command_codec';
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
    if (isWellFormedSet(entry.data)) continue;
    try {
      decodeCommand(entry.data);
    } catch (error) {
      if (!(error instanceof CommandMalformedError)) throw error;
      return `entry ${index} is not a command: ${error.message}`;
    }
  }
  return null;
}

const U32_BYTES = 4;

/**
 * True only for a SET entry that decodeCommand accepts (opcode, length-prefixed key, a non-zero
 * count of length-prefixed words, nothing after): walks the lengths without decoding, so a
 * follower does not build a command per entry twice (here and at apply). False means "not
 * known good": the caller decodes it fully, which names the fault or accepts another kind.
 */
export function isWellFormedSet(data: Uint8Array): boolean {
  const end = data.length;
  if (end < 1 + 2 * U32_BYTES || data[0] !== OPCODE_SET) return false;
  let at = 1;
  const key_bytes = u32At(data, at);
  at += U32_BYTES;
  if (key_bytes > end - at) return false;
  at += key_bytes;
  if (end - at < U32_BYTES) return false;
  const words = u32At(data, at);
  at += U32_BYTES;
  if (words === 0 || words > (end - at) / U32_BYTES) return false;
  for (let i = 0; i < words; i++) {
    if (end - at < U32_BYTES) return false;
    const word_bytes = u32At(data, at);
    at += U32_BYTES;
    if (word_bytes > end - at) return false;
    at += word_bytes;
  }
  return at === end;
}

/** The little-endian u32 at `at` (the caller checked that four bytes are there). */
function u32At(data: Uint8Array, at: number): number {
  return (
    ((data[at] ?? 0) | ((data[at + 1] ?? 0) << 8) | ((data[at + 2] ?? 0) << 16)) +
    (data[at + 3] ?? 0) * 0x1000000
  );
}
