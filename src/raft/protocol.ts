/**
 * The vocabulary of the Raft core (etcd's raftpb plays this part): log
 * entries, peer messages and what the rest of the tree needs to know about
 * them. A leaf module: the core, the wire codec, storage and the simulator
 * import it; it imports nothing.
 *
 * The byte layouts are in wire/codec.ts and the README; every integer is a
 * 32-bit little-endian value on the wire, so every number here must fit in an
 * int32 (terms, indexes, ids) or a uint32 (lengths).
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
  /** One chunk of the leader's newest snapshot file (9-12 are the connection handshake). */
  InstallSnapshotRequest: 13,
  /** A follower's answer to a chunk: the next offset it wants, installed, or rejected. */
  InstallSnapshotResponse: 14,
} as const;

export type MessageTypeNumber = (typeof MessageType)[keyof typeof MessageType];

/**
 * Whether a message of this type is a request. Requests travel on the sender's outbound
 * connection; responses go back on the connection the request came in on.
 */
export function isRequest(type: MessageTypeNumber): boolean {
  return (
    type === MessageType.RequestVoteRequest ||
    type === MessageType.AppendEntriesRequest ||
    type === MessageType.PreVoteRequest ||
    type === MessageType.TimeoutNow ||
    type === MessageType.TransferVoteRequest ||
    type === MessageType.InstallSnapshotRequest
  );
}

/** Whether a message of this type answers a request (every type is exactly one of the two). */
export function isResponse(type: MessageTypeNumber): boolean {
  return (
    type === MessageType.RequestVoteResponse ||
    type === MessageType.AppendEntriesResponse ||
    type === MessageType.PreVoteResponse ||
    type === MessageType.InstallSnapshotResponse
  );
}

export interface LogEntry {
  term: number;
  data: Uint8Array;
}

/**
 * Bytes in front of each entry's data inside an AppendEntriesRequest on the wire ([term i32]
 * [data_length u32]). Flow control counts them, so the core's byte limits match frame sizes.
 */
export const LOG_ENTRY_HEADER_BYTES = 8;

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

/**
 * One chunk of a snapshot file the leader streams to a follower behind its first retained entry.
 * The core looks only at the header fields (term, leader, which snapshot); the server writes
 * `data` to a temporary file (the core never holds snapshot bytes).
 */
export interface InstallSnapshotRequest {
  type: typeof MessageType.InstallSnapshotRequest;
  term: number;
  leader_id: number;
  /** The last index and term the snapshot covers. */
  snapshot_index: number;
  snapshot_term: number;
  /** Byte offset of `data` in the snapshot file. */
  offset: number;
  /** Size of the whole snapshot file. */
  total_bytes: number;
  /** CRC-32 (IEEE) of `data`. */
  chunk_crc: number;
  data: Uint8Array;
}

export const InstallSnapshotStatus = {
  /** The follower holds the file up to `next_offset` and wants the bytes from there. */
  Ack: 0,
  /** Done: the follower's log now matches the leader's up to `match_index`. */
  Installed: 1,
  /** The follower refuses this transfer (a stale term): the leader gives it up. */
  Rejected: 2,
} as const;

export type InstallSnapshotStatusNumber =
  (typeof InstallSnapshotStatus)[keyof typeof InstallSnapshotStatus];

export interface InstallSnapshotResponse {
  type: typeof MessageType.InstallSnapshotResponse;
  term: number;
  follower_id: number;
  snapshot_index: number;
  status: InstallSnapshotStatusNumber;
  /** Ack: the next byte offset the follower wants (0 after it lost or abandoned the file). */
  next_offset: number;
  /** Installed: the last index the follower now matches (the snapshot's, or its commit index). */
  match_index: number;
}

export type RaftMessage =
  | RequestVoteRequest
  | RequestVoteResponse
  | AppendEntriesRequest
  | AppendEntriesResponse
  | TimeoutNow
  | InstallSnapshotRequest
  | InstallSnapshotResponse;
