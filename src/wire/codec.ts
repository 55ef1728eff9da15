/**
 * Byte-exact codec for the Raft peer protocol. Every integer is 4 bytes
 * little-endian (int32 for terms, ids, indexes and seq; uint32 for lengths and
 * counts); a bool is one byte.
 *
 *   frame                  [type u32][payload_size u32][payload]
 *   LogEntry               [term][data_length u32][data]
 *   RequestVoteRequest  1  [term][candidate_id][last_log_index][last_log_term]      16 bytes
 *   RequestVoteResponse 2  [term][vote_granted u8]                                    5 bytes
 *   AppendEntriesRequest 3 [term][leader_id][prev_log_index][prev_log_term]
 *                          [leader_commit][seq][entry_count u32][LogEntry...]    28 + entries
 *   AppendEntriesResponse 4 [term][follower_id][log_index][success u8]
 *                          [follower_commit][ack]                                    21 bytes
 *   PreVoteRequest      5  as RequestVoteRequest
 *   PreVoteResponse     6  as RequestVoteResponse
 *   TimeoutNow          7  [term][leader_id]                                          8 bytes
 *   TransferVoteRequest 8  as RequestVoteRequest (a campaign started by TimeoutNow)
 *   (9-12: the connection handshake, server/peer_handshake.ts)
 *   InstallSnapshotRequest 13 [term][leader_id][snapshot_index][snapshot_term][offset u64]
 *                          [total_bytes u64][chunk_crc u32][data_length u32][data]   40 + data
 *   InstallSnapshotResponse 14 [term][follower_id][snapshot_index][status u8]
 *                          [next_offset u64][match_index]                            25 bytes
 *
 * u64 fields are little-endian and at most 2^53 - 1. An InstallSnapshotRequest's data is 1 to
 * snapshot_chunk_bytes_max bytes lying within [0, total_bytes), total_bytes at most
 * snapshot_install_bytes_max, snapshot_index at least 1; a response's status is 0 (ack), 1
 * (installed) or 2 (rejected).
 *
 * Every term field (message terms, last_log_term, prev_log_term, entry terms) must lie in
 * [0, raft_term_max]; a frame with any other term is malformed, so no peer can hand us a term
 * whose successor would not fit the int32 field.
 */
import { assert, AssertionFailure } from '../util/assert';
import { WireError } from '../util/errors';
import { LIMITS, type Limits } from '../util/limits';
import {
  LOG_ENTRY_HEADER_BYTES,
  MessageType,
  type AppendEntriesRequest,
  InstallSnapshotStatus,
  type InstallSnapshotRequest,
  type InstallSnapshotResponse,
  type InstallSnapshotStatusNumber,
  type LogEntry,
  type MessageTypeNumber,
  type RaftMessage,
} from '../raft/protocol';

export const FRAME_HEADER_BYTES = 8;

const REQUEST_VOTE_REQUEST_BYTES = 16;
const REQUEST_VOTE_RESPONSE_BYTES = 5;
const APPEND_ENTRIES_REQUEST_FIXED_BYTES = 28;
const APPEND_ENTRIES_RESPONSE_BYTES = 21;
const TIMEOUT_NOW_BYTES = 8;
const INSTALL_SNAPSHOT_REQUEST_FIXED_BYTES = 40;
const INSTALL_SNAPSHOT_RESPONSE_BYTES = 25;
const TWO_POW_32 = 2 ** 32;

/**
 * Asserts that the largest AppendEntries the core may build fits a frame: one largest entry alone,
 * or a full batch. Runs when this module loads.
 */
export function checkFrameLimits(limits: Limits): void {
  const entries_bytes_max = Math.max(
    LOG_ENTRY_HEADER_BYTES + limits.raft_entry_bytes_max,
    limits.raft_message_entries_bytes_max,
  );
  const payload_bytes_max = APPEND_ENTRIES_REQUEST_FIXED_BYTES + entries_bytes_max;
  assert(
    payload_bytes_max <= limits.raft_frame_payload_bytes_max,
    `largest AppendEntries payload ${payload_bytes_max} fits raft_frame_payload_bytes_max ` +
      `${limits.raft_frame_payload_bytes_max}`,
  );
}

checkFrameLimits(LIMITS);

const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const UINT32_MAX = 0xffff_ffff;

/**
 * The whole frame in one allocation. Values that do not fit their wire field
 * are bugs in the caller (the core only produces int32 terms and indexes), so
 * they fail an assertion rather than return a typed error.
 */
export function encodeMessage(message: RaftMessage): Buffer {
  const payload_bytes = payloadBytes(message);
  // A peer's decoder would reject a larger frame and drop the link, and the
  // resend would be rejected again forever: refuse it here where the bug is.
  if (payload_bytes > LIMITS.raft_frame_payload_bytes_max) {
    throw new AssertionFailure(
      `message type ${message.type} payload ${payload_bytes} bytes exceeds ` +
        `raft_frame_payload_bytes_max ${LIMITS.raft_frame_payload_bytes_max}`,
    );
  }
  // Every byte is written below, so the uninitialised (pooled) allocation is safe.
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload_bytes);
  frame.writeUInt32LE(message.type, 0);
  frame.writeUInt32LE(payload_bytes, 4);
  let at = FRAME_HEADER_BYTES;
  switch (message.type) {
    case MessageType.RequestVoteRequest:
    case MessageType.PreVoteRequest:
    case MessageType.TransferVoteRequest:
      at = writeInt32(frame, at, message.term, 'term');
      at = writeInt32(frame, at, message.candidate_id, 'candidate_id');
      at = writeInt32(frame, at, message.last_log_index, 'last_log_index');
      at = writeInt32(frame, at, message.last_log_term, 'last_log_term');
      break;
    case MessageType.RequestVoteResponse:
    case MessageType.PreVoteResponse:
      at = writeInt32(frame, at, message.term, 'term');
      at = writeBool(frame, at, message.vote_granted);
      break;
    case MessageType.AppendEntriesRequest:
      at = writeAppendEntriesRequest(frame, at, message);
      break;
    case MessageType.AppendEntriesResponse:
      at = writeInt32(frame, at, message.term, 'term');
      at = writeInt32(frame, at, message.follower_id, 'follower_id');
      at = writeInt32(frame, at, message.log_index, 'log_index');
      at = writeBool(frame, at, message.success);
      at = writeInt32(frame, at, message.follower_commit, 'follower_commit');
      at = writeInt32(frame, at, message.ack, 'ack');
      break;
    case MessageType.TimeoutNow:
      at = writeInt32(frame, at, message.term, 'term');
      at = writeInt32(frame, at, message.leader_id, 'leader_id');
      break;
    case MessageType.InstallSnapshotRequest:
      at = writeInstallSnapshotRequest(frame, at, message);
      break;
    case MessageType.InstallSnapshotResponse:
      at = writeInt32(frame, at, message.term, 'term');
      at = writeInt32(frame, at, message.follower_id, 'follower_id');
      at = writeInt32(frame, at, message.snapshot_index, 'snapshot_index');
      frame[at++] = message.status;
      at = writeUint64(frame, at, message.next_offset, 'next_offset');
      at = writeInt32(frame, at, message.match_index, 'match_index');
      break;
    default:
      return unknownMessage(message);
  }
  if (at !== frame.length)
    throw new AssertionFailure(
      `encoded ${at} of ${frame.length} frame bytes for type ${message.type}`,
    );
  return frame;
}

function payloadBytes(message: RaftMessage): number {
  switch (message.type) {
    case MessageType.RequestVoteRequest:
    case MessageType.PreVoteRequest:
    case MessageType.TransferVoteRequest:
      return REQUEST_VOTE_REQUEST_BYTES;
    case MessageType.RequestVoteResponse:
    case MessageType.PreVoteResponse:
      return REQUEST_VOTE_RESPONSE_BYTES;
    case MessageType.AppendEntriesRequest: {
      let payload_bytes = APPEND_ENTRIES_REQUEST_FIXED_BYTES;
      for (const entry of message.entries)
        payload_bytes += LOG_ENTRY_HEADER_BYTES + entry.data.length;
      return payload_bytes;
    }
    case MessageType.AppendEntriesResponse:
      return APPEND_ENTRIES_RESPONSE_BYTES;
    case MessageType.TimeoutNow:
      return TIMEOUT_NOW_BYTES;
    case MessageType.InstallSnapshotRequest:
      return INSTALL_SNAPSHOT_REQUEST_FIXED_BYTES + message.data.length;
    case MessageType.InstallSnapshotResponse:
      return INSTALL_SNAPSHOT_RESPONSE_BYTES;
    default:
      return unknownMessage(message);
  }
}

function writeAppendEntriesRequest(
  frame: Buffer,
  start: number,
  message: AppendEntriesRequest,
): number {
  let at = start;
  at = writeInt32(frame, at, message.term, 'term');
  at = writeInt32(frame, at, message.leader_id, 'leader_id');
  at = writeInt32(frame, at, message.prev_log_index, 'prev_log_index');
  at = writeInt32(frame, at, message.prev_log_term, 'prev_log_term');
  at = writeInt32(frame, at, message.leader_commit, 'leader_commit');
  at = writeInt32(frame, at, message.seq, 'seq');
  at = writeUint32(frame, at, message.entries.length, 'entry_count');
  for (const entry of message.entries) {
    at = writeInt32(frame, at, entry.term, 'entry term');
    at = writeUint32(frame, at, entry.data.length, 'data_length');
    frame.set(entry.data, at);
    at += entry.data.length;
  }
  return at;
}

function writeInstallSnapshotRequest(
  frame: Buffer,
  start: number,
  message: InstallSnapshotRequest,
): number {
  let at = start;
  at = writeInt32(frame, at, message.term, 'term');
  at = writeInt32(frame, at, message.leader_id, 'leader_id');
  at = writeInt32(frame, at, message.snapshot_index, 'snapshot_index');
  at = writeInt32(frame, at, message.snapshot_term, 'snapshot_term');
  at = writeUint64(frame, at, message.offset, 'offset');
  at = writeUint64(frame, at, message.total_bytes, 'total_bytes');
  at = writeUint32(frame, at, message.chunk_crc, 'chunk_crc');
  at = writeUint32(frame, at, message.data.length, 'data_length');
  frame.set(message.data, at);
  return at + message.data.length;
}

function writeUint64(frame: Buffer, at: number, value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new AssertionFailure(`${field} ${value} does not fit a u64 of at most 2^53 - 1`);
  }
  frame.writeUInt32LE(value % TWO_POW_32, at);
  frame.writeUInt32LE(Math.floor(value / TWO_POW_32), at + 4);
  return at + 8;
}

// The failure message is built only on failure: these run once per field on the hot path.
function writeInt32(frame: Buffer, at: number, value: number, field: string): number {
  if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
    throw new AssertionFailure(`${field} ${value} does not fit an int32`);
  }
  frame.writeInt32LE(value, at);
  return at + 4;
}

function writeUint32(frame: Buffer, at: number, value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw new AssertionFailure(`${field} ${value} does not fit a uint32`);
  }
  frame.writeUInt32LE(value, at);
  return at + 4;
}

function writeBool(frame: Buffer, at: number, value: boolean): number {
  frame[at] = value ? 1 : 0;
  return at + 1;
}

function unknownMessage(message: never): never {
  throw new AssertionFailure(
    `cannot encode unknown message type ${(message as { type: unknown }).type}`,
  );
}

/**
 * Checks everything the 8-byte header alone can tell, so that a bad or
 * oversized frame is refused before a single payload byte is buffered.
 * Returns the message type.
 */
function checkFrameHeader(
  type: number,
  payload_bytes: number,
  payload_bytes_max: number,
): MessageTypeNumber {
  let message_type: MessageTypeNumber;
  let exact_payload_bytes: number | null;
  switch (type) {
    case MessageType.RequestVoteRequest:
    case MessageType.PreVoteRequest:
    case MessageType.TransferVoteRequest:
      message_type = type;
      exact_payload_bytes = REQUEST_VOTE_REQUEST_BYTES;
      break;
    case MessageType.RequestVoteResponse:
    case MessageType.PreVoteResponse:
      message_type = type;
      exact_payload_bytes = REQUEST_VOTE_RESPONSE_BYTES;
      break;
    case MessageType.AppendEntriesRequest:
      message_type = type;
      exact_payload_bytes = null;
      break;
    case MessageType.AppendEntriesResponse:
      message_type = type;
      exact_payload_bytes = APPEND_ENTRIES_RESPONSE_BYTES;
      break;
    case MessageType.TimeoutNow:
      message_type = type;
      exact_payload_bytes = TIMEOUT_NOW_BYTES;
      break;
    case MessageType.InstallSnapshotRequest:
      message_type = type;
      exact_payload_bytes = null;
      break;
    case MessageType.InstallSnapshotResponse:
      message_type = type;
      exact_payload_bytes = INSTALL_SNAPSHOT_RESPONSE_BYTES;
      break;
    default:
      throw new WireError('WIRE_UNKNOWN_TYPE', `unknown Raft message type ${type}`);
  }
  if (payload_bytes > payload_bytes_max) {
    throw new WireError(
      'WIRE_FRAME_TOO_LARGE',
      `Raft message type ${type} payload of ${payload_bytes} bytes ` +
        `exceeds the limit of ${payload_bytes_max}`,
    );
  }
  if (exact_payload_bytes !== null && payload_bytes !== exact_payload_bytes) {
    throw new WireError(
      'WIRE_MALFORMED',
      `Raft message type ${type} payload must be ${exact_payload_bytes} bytes, ` +
        `header says ${payload_bytes}`,
    );
  }
  const fixed_bytes =
    message_type === MessageType.InstallSnapshotRequest
      ? INSTALL_SNAPSHOT_REQUEST_FIXED_BYTES
      : APPEND_ENTRIES_REQUEST_FIXED_BYTES;
  if (exact_payload_bytes === null && payload_bytes < fixed_bytes) {
    throw new WireError(
      'WIRE_MALFORMED',
      `Raft message type ${type} payload must be at least ${fixed_bytes} bytes, ` +
        `header says ${payload_bytes}`,
    );
  }
  if (
    message_type === MessageType.InstallSnapshotRequest &&
    payload_bytes > INSTALL_SNAPSHOT_REQUEST_FIXED_BYTES + LIMITS.snapshot_chunk_bytes_max
  ) {
    throw new WireError(
      'WIRE_FRAME_TOO_LARGE',
      `InstallSnapshotRequest payload of ${payload_bytes} bytes exceeds a chunk of ` +
        `snapshot_chunk_bytes_max ${LIMITS.snapshot_chunk_bytes_max}`,
    );
  }
  return message_type;
}

/** Decodes bytes[start, end), a payload whose header checkFrameHeader accepted. */
function decodePayload(
  type: MessageTypeNumber,
  bytes: Buffer,
  start: number,
  end: number,
): RaftMessage {
  switch (type) {
    case MessageType.RequestVoteRequest:
    case MessageType.PreVoteRequest:
    case MessageType.TransferVoteRequest:
      return {
        type,
        term: readTerm(bytes, start, 'term'),
        candidate_id: bytes.readInt32LE(start + 4),
        last_log_index: bytes.readInt32LE(start + 8),
        last_log_term: readTerm(bytes, start + 12, 'last_log_term'),
      };
    case MessageType.RequestVoteResponse:
    case MessageType.PreVoteResponse:
      return {
        type,
        term: readTerm(bytes, start, 'term'),
        vote_granted: readBool(bytes, start + 4, 'vote_granted'),
      };
    case MessageType.AppendEntriesRequest:
      return decodeAppendEntriesRequest(bytes, start, end);
    case MessageType.AppendEntriesResponse:
      return {
        type,
        term: readTerm(bytes, start, 'term'),
        follower_id: bytes.readInt32LE(start + 4),
        log_index: bytes.readInt32LE(start + 8),
        success: readBool(bytes, start + 12, 'success'),
        follower_commit: bytes.readInt32LE(start + 13),
        ack: bytes.readInt32LE(start + 17),
      };
    case MessageType.TimeoutNow:
      return {
        type,
        term: readTerm(bytes, start, 'term'),
        leader_id: bytes.readInt32LE(start + 4),
      };
    case MessageType.InstallSnapshotRequest:
      return decodeInstallSnapshotRequest(bytes, start, end);
    case MessageType.InstallSnapshotResponse:
      return decodeInstallSnapshotResponse(bytes, start);
  }
}

function malformed(detail: string): never {
  throw new WireError('WIRE_MALFORMED', detail);
}

/** A u64 field: at most 2^53 - 1 (a number), else malformed. */
function readUint64(bytes: Buffer, at: number, field: string): number {
  const high = bytes.readUInt32LE(at + 4);
  if (high >= 2 ** 21) malformed(`${field} is above 2^53 - 1`);
  return high * TWO_POW_32 + bytes.readUInt32LE(at);
}

function decodeInstallSnapshotRequest(
  bytes: Buffer,
  start: number,
  end: number,
): InstallSnapshotRequest {
  const snapshot_index = bytes.readInt32LE(start + 8);
  if (snapshot_index < 1) malformed(`InstallSnapshotRequest snapshot_index ${snapshot_index} < 1`);
  const offset = readUint64(bytes, start + 16, 'offset');
  const total_bytes = readUint64(bytes, start + 24, 'total_bytes');
  const data_length = bytes.readUInt32LE(start + 36);
  const data_at = start + INSTALL_SNAPSHOT_REQUEST_FIXED_BYTES;
  if (data_length !== end - data_at)
    malformed(`InstallSnapshotRequest data_length ${data_length}, payload holds ${end - data_at}`);
  if (data_length === 0) malformed('InstallSnapshotRequest carries no data');
  if (total_bytes > LIMITS.snapshot_install_bytes_max)
    malformed(
      `InstallSnapshotRequest total_bytes ${total_bytes} exceeds snapshot_install_bytes_max ` +
        `${LIMITS.snapshot_install_bytes_max}`,
    );
  if (offset + data_length > total_bytes)
    malformed(`InstallSnapshotRequest chunk [${offset}, +${data_length}) beyond ${total_bytes}`);
  // A copy: the chunk outlives the network buffer (it waits for the file write).
  const data = new Uint8Array(data_length);
  data.set(bytes.subarray(data_at, end));
  return {
    type: MessageType.InstallSnapshotRequest,
    term: readTerm(bytes, start, 'term'),
    leader_id: bytes.readInt32LE(start + 4),
    snapshot_index,
    snapshot_term: readTerm(bytes, start + 12, 'snapshot_term'),
    offset,
    total_bytes,
    chunk_crc: bytes.readUInt32LE(start + 32),
    data,
  };
}

function decodeInstallSnapshotResponse(bytes: Buffer, start: number): InstallSnapshotResponse {
  const status = bytes[start + 12];
  if (
    status !== InstallSnapshotStatus.Ack &&
    status !== InstallSnapshotStatus.Installed &&
    status !== InstallSnapshotStatus.Rejected
  )
    malformed(`InstallSnapshotResponse status ${String(status)}`);
  const next_offset = readUint64(bytes, start + 13, 'next_offset');
  if (next_offset > LIMITS.snapshot_install_bytes_max)
    malformed(`InstallSnapshotResponse next_offset ${next_offset} beyond any snapshot`);
  const snapshot_index = bytes.readInt32LE(start + 8);
  const match_index = bytes.readInt32LE(start + 21);
  if (snapshot_index < 0 || match_index < 0)
    malformed(`InstallSnapshotResponse index ${snapshot_index} / ${match_index} negative`);
  return {
    type: MessageType.InstallSnapshotResponse,
    term: readTerm(bytes, start, 'term'),
    follower_id: bytes.readInt32LE(start + 4),
    snapshot_index,
    status: status as InstallSnapshotStatusNumber,
    next_offset,
    match_index,
  };
}

/**
 * A term outside [0, raft_term_max] is malformed: nothing legitimate produces one, and accepting a
 * term near INT32_MAX would let one frame push a node to where its next campaign overflows.
 */
function readTerm(bytes: Buffer, at: number, field: string): number {
  const term = bytes.readInt32LE(at);
  if (term < 0 || term > LIMITS.raft_term_max) {
    throw new WireError(
      'WIRE_MALFORMED',
      `${field} ${term} is outside [0, raft_term_max ${LIMITS.raft_term_max}]`,
    );
  }
  return term;
}

/**
 * Strict: only 0 and 1 are booleans. The C++ peers write exactly these, so any
 * other byte means the stream is out of step and nothing after it can be trusted.
 */
function readBool(bytes: Buffer, at: number, field: string): boolean {
  const value = bytes[at];
  if (value === 0) return false;
  if (value === 1) return true;
  throw new WireError('WIRE_MALFORMED', `${field} byte is ${String(value)}, expected 0 or 1`);
}

function decodeAppendEntriesRequest(
  bytes: Buffer,
  start: number,
  end: number,
): AppendEntriesRequest {
  const entry_count = bytes.readUInt32LE(start + 24);
  let at = start + APPEND_ENTRIES_REQUEST_FIXED_BYTES;
  // Each entry takes at least its header, so a count the payload cannot hold is
  // refused before looping over it.
  if (entry_count > (end - at) / LOG_ENTRY_HEADER_BYTES) {
    throw new WireError(
      'WIRE_MALFORMED',
      `AppendEntriesRequest claims ${entry_count} entries in ${end - at} bytes`,
    );
  }
  const entries: LogEntry[] = [];
  for (let index = 0; index < entry_count; index++) {
    if (end - at < LOG_ENTRY_HEADER_BYTES) {
      throw new WireError(
        'WIRE_MALFORMED',
        `AppendEntriesRequest entry ${index} of ${entry_count} starts past the payload`,
      );
    }
    const term = readTerm(bytes, at, 'entry term');
    const data_bytes = bytes.readUInt32LE(at + 4);
    at += LOG_ENTRY_HEADER_BYTES;
    if (data_bytes > end - at) {
      throw new WireError(
        'WIRE_MALFORMED',
        `AppendEntriesRequest entry ${index} data_length ${data_bytes} overruns the payload`,
      );
    }
    // A copy with its own ArrayBuffer: entries live in the log for long, and a
    // view would keep the whole network chunk or frame alive with them.
    const data = new Uint8Array(data_bytes);
    data.set(bytes.subarray(at, at + data_bytes));
    entries.push({ term, data });
    at += data_bytes;
  }
  if (at !== end) {
    throw new WireError(
      'WIRE_MALFORMED',
      `AppendEntriesRequest has ${end - at} bytes after its ${entry_count} entries`,
    );
  }
  return {
    type: MessageType.AppendEntriesRequest,
    term: readTerm(bytes, start, 'term'),
    leader_id: bytes.readInt32LE(start + 4),
    prev_log_index: bytes.readInt32LE(start + 8),
    prev_log_term: readTerm(bytes, start + 12, 'prev_log_term'),
    leader_commit: bytes.readInt32LE(start + 16),
    seq: bytes.readInt32LE(start + 20),
    entries,
  };
}

/** Chunks below this size are copied together rather than kept as separate views. */
const SMALL_CHUNK_BYTES = 1024;
const COALESCE_BUFFER_BYTES = 16 * 1024;

/**
 * The received bytes of one incomplete frame. Chunks are kept as they came and
 * concatenated once, when the frame is whole, so a large frame arriving in many
 * chunks costs one copy, not one per chunk. Small chunks are copied into a
 * shared buffer instead: a peer trickling single bytes must not make us hold
 * one Buffer object (about a hundred bytes of heap) per byte received.
 */
class IncompleteFrame {
  private chunks: Buffer[] = [];
  private bytes_total = 0;
  private coalesce: Buffer | null = null;
  private coalesce_start = 0;
  private coalesce_end = 0;

  get bytes(): number {
    return this.bytes_total;
  }

  append(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.bytes_total += chunk.length;
    if (chunk.length >= SMALL_CHUNK_BYTES) {
      this.sealCoalesced();
      this.chunks.push(chunk);
      return;
    }
    if (this.coalesce === null || this.coalesce.length - this.coalesce_end < chunk.length) {
      this.sealCoalesced();
      this.coalesce = Buffer.allocUnsafe(COALESCE_BUFFER_BYTES);
      this.coalesce_start = 0;
      this.coalesce_end = 0;
    }
    chunk.copy(this.coalesce, this.coalesce_end);
    this.coalesce_end += chunk.length;
  }

  /** Removes and returns all buffered bytes followed by `last`, as one new buffer. */
  take(last: Buffer): Buffer {
    this.sealCoalesced();
    this.chunks.push(last);
    const bytes = Buffer.concat(this.chunks, this.bytes_total + last.length);
    this.chunks = [];
    this.bytes_total = 0;
    // Every view into the coalescing buffer was just copied out, so it can be refilled from the
    // start.
    this.coalesce_start = 0;
    this.coalesce_end = 0;
    return bytes;
  }

  private sealCoalesced(): void {
    if (this.coalesce === null || this.coalesce_end === this.coalesce_start) return;
    this.chunks.push(this.coalesce.subarray(this.coalesce_start, this.coalesce_end));
    this.coalesce_start = this.coalesce_end;
  }
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; a header claiming more is rejected at once. */
  payload_bytes_max?: number;
}

/**
 * Push decoder for one peer connection's byte stream. Frames lying wholly in a
 * pushed chunk are decoded in place; only a frame split across chunks is
 * buffered (as views of the chunks, so callers must not reuse a chunk's memory
 * after pushing it; a socket's chunks are fresh unless it was
 * created with the reusable-buffer `onread` option).
 */
export class FrameDecoder {
  private readonly payload_bytes_max: number;
  private readonly incomplete = new IncompleteFrame();
  /**
   * Type and total size of the incomplete frame once its header is in; frame_bytes is 0 until then.
   */
  private incomplete_type: MessageTypeNumber = MessageType.RequestVoteRequest;
  private incomplete_frame_bytes = 0;
  private failure: unknown = null;

  constructor(options: FrameDecoderOptions = {}) {
    const payload_bytes_max = options.payload_bytes_max ?? LIMITS.raft_frame_payload_bytes_max;
    if (
      !Number.isInteger(payload_bytes_max) ||
      payload_bytes_max < 0 ||
      payload_bytes_max > UINT32_MAX
    ) {
      throw new AssertionFailure(
        `payload_bytes_max ${payload_bytes_max} must be an integer in [0, ${UINT32_MAX}]`,
      );
    }
    this.payload_bytes_max = payload_bytes_max;
  }

  /** Bytes buffered but not yet decoded. */
  get buffered_bytes(): number {
    return this.incomplete.bytes;
  }

  /**
   * Feed bytes; returns every complete message. Throws WireError (codes
   * WIRE_UNKNOWN_TYPE, WIRE_MALFORMED, WIRE_FRAME_TOO_LARGE) on malformed
   * input; after a throw the decoder is unusable (the caller closes the
   * connection). Messages decoded from the same chunk before the bad frame are
   * dropped with it, which Raft tolerates like any lost message.
   */
  push(chunk: Buffer): RaftMessage[] {
    if (this.failure !== null) throw this.failure;
    try {
      return this.decode(chunk);
    } catch (error) {
      this.failure = error;
      throw error;
    }
  }

  private decode(chunk: Buffer): RaftMessage[] {
    const messages: RaftMessage[] = [];
    let at = 0;
    if (this.incomplete.bytes > 0) {
      at = this.completeFrame(chunk, messages);
      if (at < 0) return messages;
    }
    while (chunk.length - at >= FRAME_HEADER_BYTES) {
      const payload_bytes = chunk.readUInt32LE(at + 4);
      const type = checkFrameHeader(chunk.readUInt32LE(at), payload_bytes, this.payload_bytes_max);
      const frame_end = at + FRAME_HEADER_BYTES + payload_bytes;
      if (frame_end > chunk.length) {
        this.incomplete_type = type;
        this.incomplete_frame_bytes = FRAME_HEADER_BYTES + payload_bytes;
        break;
      }
      messages.push(decodePayload(type, chunk, at + FRAME_HEADER_BYTES, frame_end));
      at = frame_end;
    }
    if (at < chunk.length) this.incomplete.append(chunk.subarray(at));
    return messages;
  }

  /**
   * Adds the start of `chunk` to the incomplete frame. Returns the offset in
   * `chunk` just past that frame once it is complete and decoded, or -1 if the
   * whole chunk was absorbed and the frame is still incomplete.
   */
  private completeFrame(chunk: Buffer, messages: RaftMessage[]): number {
    let at = 0;
    if (this.incomplete_frame_bytes === 0) {
      at = FRAME_HEADER_BYTES - this.incomplete.bytes;
      if (chunk.length < at) {
        this.incomplete.append(chunk);
        return -1;
      }
      const header = this.incomplete.take(chunk.subarray(0, at));
      this.incomplete.append(header);
      const payload_bytes = header.readUInt32LE(4);
      this.incomplete_type = checkFrameHeader(
        header.readUInt32LE(0),
        payload_bytes,
        this.payload_bytes_max,
      );
      this.incomplete_frame_bytes = FRAME_HEADER_BYTES + payload_bytes;
    }
    const bytes_missing = this.incomplete_frame_bytes - this.incomplete.bytes;
    if (chunk.length - at < bytes_missing) {
      this.incomplete.append(chunk.subarray(at));
      return -1;
    }
    const frame = this.incomplete.take(chunk.subarray(at, at + bytes_missing));
    this.incomplete_frame_bytes = 0;
    messages.push(decodePayload(this.incomplete_type, frame, FRAME_HEADER_BYTES, frame.length));
    return at + bytes_missing;
  }
}
