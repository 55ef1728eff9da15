import { type AppendEntriesRequest, MessageType } from '../../src/raft/protocol';

/**
 * An AppendEntries request as the tests write them: term 1 from leader 1 at the start of the log
 * (prev 0/0), commit 0, seq 1 and no entries, except for what `fields` sets.
 */
export function appendEntriesRequest(
  fields: Partial<Omit<AppendEntriesRequest, 'type'>> = {},
): AppendEntriesRequest {
  return {
    type: MessageType.AppendEntriesRequest,
    term: 1,
    leader_id: 1,
    prev_log_index: 0,
    prev_log_term: 0,
    leader_commit: 0,
    seq: 1,
    entries: [],
    ...fields,
  };
}
