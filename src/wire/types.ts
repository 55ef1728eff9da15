/**
 * Raft peer messages as the core sees them. The byte layouts are in
 * codec.ts and the README; every integer is a 32-bit little-endian value on
 * the wire, so every number here must fit in an int32 (terms, indexes, ids)
 * or a uint32 (lengths).
 */
export const MessageType = {
  RequestVoteRequest: 1,
  RequestVoteResponse: 2,
  AppendEntriesRequest: 3,
  AppendEntriesResponse: 4,
  /** Same layout as RequestVoteRequest; term is the term the sender would campaign in. */
  PreVoteRequest: 5,
  /** Same layout as RequestVoteResponse. */
  PreVoteResponse: 6,
  /** Leadership transfer: the receiver should campaign at once. */
  TimeoutNow: 7,
  /**
   * Same layout as RequestVoteRequest: a campaign started by leadership transfer (TimeoutNow), the
   * one kind of vote request a node answers while it still hears from a live leader (thesis
   * §4.2.3). Not part of the seed protocol: a seed peer closes the link on it.
   */
  TransferVoteRequest: 8,
} as const;

export type MessageTypeNumber = (typeof MessageType)[keyof typeof MessageType];

export interface LogEntry {
  term: number;
  data: Uint8Array;
}

export interface RequestVoteRequest {
  type:
    | typeof MessageType.RequestVoteRequest
    | typeof MessageType.PreVoteRequest
    | typeof MessageType.TransferVoteRequest;
  term: number;
  candidate_id: number;
  last_log_index: number;
  last_log_term: number;
}

export interface RequestVoteResponse {
  type: typeof MessageType.RequestVoteResponse | typeof MessageType.PreVoteResponse;
  term: number;
  vote_granted: boolean;
}

export interface AppendEntriesRequest {
  type: typeof MessageType.AppendEntriesRequest;
  term: number;
  leader_id: number;
  prev_log_index: number;
  prev_log_term: number;
  leader_commit: number;
  seq: number;
  entries: LogEntry[];
}

export interface AppendEntriesResponse {
  type: typeof MessageType.AppendEntriesResponse;
  term: number;
  follower_id: number;
  /**
   * On success: the index of the last entry the follower now matches. On rejection: a hint where
   * the leader should resume (see raft core).
   */
  log_index: number;
  success: boolean;
  follower_commit: number;
  /** Echo of the request's seq. */
  ack: number;
}

export interface TimeoutNow {
  type: typeof MessageType.TimeoutNow;
  term: number;
  leader_id: number;
}

export type RaftMessage =
  | RequestVoteRequest
  | RequestVoteResponse
  | AppendEntriesRequest
  | AppendEntriesResponse
  | TimeoutNow;
